"""OIP test fixtures: the tritonclient peer, CartPole, and a recurrent CartPole policy."""

from __future__ import annotations

import numpy as np
import pytest

from tests.oip.peer import TritonPeer


@pytest.fixture
def peers():
    """Starts tritonclient peers (`peers(address)`); closes them after the test."""
    started: list[TritonPeer] = []

    def start(address: str) -> TritonPeer:
        peer = TritonPeer(address)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.close()


@pytest.fixture(scope="module")  # per module: see tests/conftest.py's cartpole_tf_policy
def cartpole_policy():
    """The demo CartPole QPolicy with seed 5: untrained, but it pushes both ways within one episode."""
    from examples.cartpole import cartpole_q_policy  # pylint: disable=import-outside-toplevel

    return cartpole_q_policy(seed=5)


@pytest.fixture(scope="module")  # per module: see tests/conftest.py's cartpole_tf_policy
def rnn_policy():
    """A greedy recurrent CartPole policy (QRnnNetwork, LSTM 8) whose actions depend on its state.

    Its weights come from a seeded generator (seed 6: both actions within an
    episode, and several steps that a fresh state would answer otherwise).
    """
    from tf_agents.networks import q_rnn_network  # pylint: disable=import-outside-toplevel
    from tf_agents.policies import greedy_policy, q_policy  # pylint: disable=import-outside-toplevel

    from examples import cartpole  # pylint: disable=import-outside-toplevel

    network = q_rnn_network.QRnnNetwork(cartpole.OBSERVATION_SPEC, cartpole.ACTION_SPEC,
                                        input_fc_layer_params=(16,), lstm_size=(8,), output_fc_layer_params=(16,))
    network.create_variables()
    rng = np.random.default_rng(6)  # Keras' LSTM initializers ignore tf.random.set_seed
    for variable in network.variables:
        variable.assign(rng.normal(0, 0.5, variable.shape).astype(variable.dtype.as_numpy_dtype))
    return greedy_policy.GreedyPolicy(q_policy.QPolicy(cartpole.cartpole_time_step_spec(), cartpole.ACTION_SPEC,
                                                       q_network=network))


@pytest.fixture
def cartpole_env():
    from tf_agents.environments import suite_gym  # pylint: disable=import-outside-toplevel

    env = suite_gym.load("CartPole-v0")
    env.seed(3)
    yield env
    env.close()
