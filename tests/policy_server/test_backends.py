"""Every backend kind answers like its local policy, batched and unbatched.

Greedy policies make the comparison exact: the same observations go to the
local policy and to the server, and the actions must be identical.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.networks import q_rnn_network
from tf_agents.policies import (epsilon_greedy_policy, greedy_policy, policy_saver, py_policy, py_tf_eager_policy,
                                py_tf_policy, q_policy, random_py_policy)
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts
from tf_agents.utils import common

from policy_client.wire import errors as client_errors
from examples import cartpole as demo_policy
from policy_server.backends.py_policy import PyPolicyBackend
from policy_server.config import BatchingConfig
from policy_server.backends.eager import EagerBackend
from policy_server.backends.graph import GraphBackend
from policy_server.backends.saved_model import SavedModelBackend
from tests.support.servers import WAIT

pytestmark = pytest.mark.timeout(180)

BATCHING = BatchingConfig(max_batch_size=16, max_batch_delay=0.005)
N_OBS = 24


@pytest.fixture(scope="module")
def observations() -> np.ndarray:
    """CartPole observations inside the spec bounds."""
    rng = np.random.default_rng(0)
    return (rng.uniform(-1, 1, (N_OBS, 4)) * [2.0, 2.0, 0.2, 2.0]).astype(np.float32)


def time_step(obs: np.ndarray, first: bool = True) -> ts.TimeStep:
    """A CartPole time step for one observation (4,) or a batch (n, 4)."""
    outer = obs.shape[:-1]
    return ts.TimeStep(step_type=np.full(outer, 0 if first else 1, np.int32),
                       reward=np.zeros(outer, np.float32), discount=np.ones(outer, np.float32),
                       observation=obs)


def remote_actions(client, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(actions of one request per observation, sent concurrently; actions of one batched request)."""
    futures = [client.action_async(time_step(o)) for o in obs]
    unbatched = np.array([f.result(WAIT).policy_step.action for f in futures])
    batched = client.action(time_step(obs), batch_size=len(obs)).policy_step.action
    return unbatched, batched


def assert_like_local(client, obs: np.ndarray, expected: np.ndarray) -> None:
    assert len(set(expected.tolist())) > 1, "the reference actions do not discriminate"
    unbatched, batched = remote_actions(client, obs)
    assert unbatched.dtype == expected.dtype and unbatched.shape == expected.shape
    np.testing.assert_array_equal(unbatched, expected)
    np.testing.assert_array_equal(batched, expected)


# ----------------------------------------------------------------- eager


def test_eager_backend_matches_local_py_tf_eager_policy(servers, cartpole_tf_policy, observations):
    local = py_tf_eager_policy.PyTFEagerPolicy(cartpole_tf_policy)
    expected = np.array([local.action(time_step(o)).action for o in observations])
    backend = EagerBackend(cartpole_tf_policy, version=5)
    server = servers.serve({"cartpole": backend}, batching=BATCHING)
    client = servers.client(server.address, "cartpole")
    assert_like_local(client, observations, expected)
    stats = client.stats()[0]
    assert stats["requests"] == N_OBS + 1 and stats["rows"] == 2 * N_OBS and stats["errors"] == 0
    info = client.list_policies()[0]
    assert (info.name, info.backend, info.version, info.stateful) == ("cartpole", "tf_eager", 5, False)
    specs, version = client.get_specs()
    assert version == 5 and specs.action_spec == tensor_spec.to_array_spec(demo_policy.ACTION_SPEC)


def test_eager_backend_seeds_make_a_stochastic_policy_repeat(servers, cartpole_tf_policy, observations):
    stochastic = epsilon_greedy_policy.EpsilonGreedyPolicy(cartpole_tf_policy, epsilon=0.5)
    server = servers.serve({"eps": EagerBackend(stochastic)}, batching=BATCHING)
    client = servers.client(server.address, "eps")
    noise = servers.client(server.address, "eps")
    step = time_step(observations)

    def seeded(seed: int) -> np.ndarray:
        return client.action(step, batch_size=N_OBS, seed=seed).policy_step.action

    first = seeded(7)
    # Unseeded traffic from another client around the seeded calls changes nothing.
    background = [noise.action_async(time_step(o)) for o in observations]
    for _ in range(3):
        np.testing.assert_array_equal(seeded(7), first)
    for f in background:
        f.result(WAIT)
    assert not np.array_equal(seeded(8), first), "another seed gave the same actions"
    unseeded = [client.action(step, batch_size=N_OBS).policy_step.action for _ in range(3)]
    assert any(not np.array_equal(u, unseeded[0]) for u in unseeded[1:]), "the policy is not stochastic"
    single = [client.action(time_step(observations[0]), seed=11).policy_step.action for _ in range(3)]
    assert single[0].shape == () and single.count(single[0]) == 3


# ----------------------------------------------------------------- SavedModel


@pytest.fixture(scope="module")
def saved_model_dir(tmp_path_factory, cartpole_tf_policy) -> str:
    path = str(tmp_path_factory.mktemp("saved_policy"))
    train_step = tf.Variable(42, dtype=tf.int64)
    policy_saver.PolicySaver(cartpole_tf_policy, batch_size=None, train_step=train_step).save(path)
    return path


def test_saved_model_backend_matches_local_saved_model_policy(servers, saved_model_dir, observations):
    local = py_tf_eager_policy.SavedModelPyTFEagerPolicy(saved_model_dir, load_specs_from_pbtxt=True)
    expected = np.array([local.action(time_step(o)).action for o in observations])
    server = servers.serve({"saved": SavedModelBackend(saved_model_dir)}, batching=BATCHING)
    client = servers.client(server.address, "saved")
    assert_like_local(client, observations, expected)
    info = client.list_policies()[0]
    assert (info.backend, info.version) == ("saved_model", 42)
    assert client.action(time_step(observations[0])).version == 42
    assert client.get_specs()[0].time_step_spec == local.time_step_spec


def test_saved_model_and_graph_backends_refuse_seeds(servers, saved_model_dir, graph_checkpoint, observations):
    policy_dir, _ = graph_checkpoint
    graph = tf.Graph()
    with graph.as_default():
        tf_policy = demo_policy.cartpole_q_policy(seed=3)
    server = servers.serve({"saved": SavedModelBackend(saved_model_dir),
                            "graph": GraphBackend(tf_policy, graph, policy_dir=policy_dir)})
    for name, kind in (("saved", "saved_model"), ("graph", "py_tf_policy")):
        for transport in ("unary", "stream"):
            client = servers.client(server.address, name, transport=transport)
            with pytest.raises(client_errors.InvalidArgumentError, match=f"seed.*{kind}"):
                client.action(time_step(observations[0]), seed=3)
            assert client.action(time_step(observations[0])).policy_step.action.shape == ()
        assert client.stats()[0]["errors"] == 2


# ----------------------------------------------------------------- graph (PyTFPolicy)


@pytest.fixture(scope="module")
def graph_checkpoint(tmp_path_factory, observations) -> tuple[str, np.ndarray]:
    """A PyTFPolicy checkpoint (global step 7) and the saved policy's actions on `observations`."""
    policy_dir = str(tmp_path_factory.mktemp("py_tf_policy"))
    graph = tf.Graph()
    with graph.as_default():
        tf_policy = demo_policy.cartpole_q_policy(seed=1)
        policy = py_tf_policy.PyTFPolicy(tf_policy)
        with tf.compat.v1.Session(graph=graph) as session:
            policy.session = session
            policy.initialize(None)
            policy.save(policy_dir)
            # Save again at global step 7 (PyTFPolicy.save writes the current step: 0).
            global_step = tf.compat.v1.train.get_or_create_global_step()
            checkpointer = common.Checkpointer(ckpt_dir=policy_dir, policy=tf_policy, global_step=global_step)
            checkpointer.initialize_or_restore(session)
            session.run(global_step.assign(7))
            with session.as_default():
                checkpointer.save(global_step)
            expected = np.array([policy.action(time_step(o)).action for o in observations])
    return policy_dir, expected


def test_graph_backend_serves_the_restored_checkpoint(servers, graph_checkpoint, observations):
    policy_dir, expected = graph_checkpoint
    graph = tf.Graph()
    with graph.as_default():  # another instance, initialised differently
        fresh = py_tf_policy.PyTFPolicy(demo_policy.cartpole_q_policy(seed=2))
    backend = GraphBackend(fresh, graph, policy_dir=policy_dir)
    assert backend.version == 7
    server = servers.serve({"graph": backend}, batching=BATCHING)
    client = servers.client(server.address, "graph")
    assert_like_local(client, observations, expected)
    info = client.list_policies()[0]
    assert (info.backend, info.version) == ("py_tf_policy", 7)
    assert client.action(time_step(observations[0])).version == 7
    # Sanity: without the checkpoint, the same construction acts differently.
    other_graph = tf.Graph()
    with other_graph.as_default():
        unrestored = GraphBackend(demo_policy.cartpole_q_policy(seed=2), other_graph)
    assert unrestored.version == 0
    assert not np.array_equal(unrestored.action(time_step(observations), ()).action, expected)


# ----------------------------------------------------------------- plain py_policy


class ThresholdPolicy(py_policy.PyPolicy):
    """Pushes right when the pole leans right; records the observation shapes it is called with.

    Its `_action` takes no seed, as many hand-written policies.
    """

    def __init__(self):
        spec = tensor_spec.to_nest_array_spec
        super().__init__(spec(demo_policy.cartpole_time_step_spec()), spec(demo_policy.ACTION_SPEC))
        self.shapes: list[tuple[int, ...]] = []

    def _action(self, time_step: ts.TimeStep, policy_state: Any) -> policy_step.PolicyStep:
        obs = time_step.observation
        self.shapes.append(obs.shape)
        return policy_step.PolicyStep((obs[..., 2] + 0.1 * obs[..., 3] > 0).astype(np.int64), (), ())


@pytest.mark.parametrize("batched", [False, True])
def test_py_policy_backend_matches_local(servers, observations, batched):
    local = ThresholdPolicy()
    expected = np.array([local.action(time_step(o)).action for o in observations])
    policy = ThresholdPolicy()
    server = servers.serve({"py": PyPolicyBackend(policy, batched=batched)}, batching=BATCHING)
    client = servers.client(server.address, "py")
    assert_like_local(client, observations, expected)
    assert client.list_policies()[0].backend == "py_policy"
    if batched:  # rows stacked: always an outer dimension, several requests per call
        assert all(len(s) == 2 for s in policy.shapes)
        assert sum(s[0] for s in policy.shapes) == 2 * N_OBS
        assert len(policy.shapes) < N_OBS + 1
    else:  # one call per request, values exactly as sent
        assert policy.shapes == [(4,)] * N_OBS + [(N_OBS, 4)]
    # The policy's _action takes no seed: refused up front, as a local call would fail.
    with pytest.raises(client_errors.InvalidArgumentError, match="seed"):
        client.action(time_step(observations[0]), seed=1)


def test_py_policy_backend_calls_a_random_policy_once_per_request(servers):
    spec = tensor_spec.to_nest_array_spec
    make = lambda: random_py_policy.RandomPyPolicy(  # noqa: E731
        spec(demo_policy.cartpole_time_step_spec()), spec(demo_policy.ACTION_SPEC), seed=3)
    local, remote = make(), make()
    obs = np.zeros(4, np.float32)
    expected = [int(local.action(time_step(obs)).action) for _ in range(30)]
    server = servers.serve({"random": PyPolicyBackend(remote)})
    client = servers.client(server.address, "random")
    got = [int(client.action(time_step(obs)).policy_step.action) for _ in range(30)]
    assert got == expected and len(set(expected)) == 2
    # RandomPyPolicy's _action accepts (and ignores) a seed.
    assert client.action(time_step(obs), seed=5).policy_step.action.shape == ()


# ----------------------------------------------------------------- recurrent TF policies


@pytest.fixture(scope="module")
def rnn_policy():
    network = q_rnn_network.QRnnNetwork(demo_policy.OBSERVATION_SPEC, demo_policy.ACTION_SPEC,
                                        input_fc_layer_params=(16,), lstm_size=(8,), output_fc_layer_params=(16,))
    network.create_variables()
    # Keras' LSTM initializers ignore tf.random.set_seed: set every weight from a seeded generator.
    rng = np.random.default_rng(5)
    for variable in network.variables:
        variable.assign(rng.normal(0, 0.5, variable.shape).astype(variable.dtype.as_numpy_dtype))
    return greedy_policy.GreedyPolicy(q_policy.QPolicy(demo_policy.cartpole_time_step_spec(),
                                                       demo_policy.ACTION_SPEC, q_network=network))


@pytest.fixture(scope="module")
def rnn_saved_model_dir(tmp_path_factory, rnn_policy) -> str:
    path = str(tmp_path_factory.mktemp("saved_rnn"))
    policy_saver.PolicySaver(rnn_policy, batch_size=None).save(path)
    return path


def _local_rollout(policy, observations: np.ndarray, steps: int) -> list[np.ndarray]:
    """Greedy actions of a local batched rollout (first step FIRST, then MID)."""
    local = py_tf_eager_policy.PyTFEagerPolicy(policy, batch_time_steps=False)
    state = local.get_initial_state(len(observations))
    actions = []
    for t in range(steps):
        step = local.action(time_step(observations * (t + 1) / steps, first=t == 0), state)
        actions.append(np.asarray(step.action))
        state = step.state
    return actions


@pytest.mark.parametrize("kind", ["eager", "saved_model"])
def test_recurrent_policy_state_round_trips(servers, rnn_policy, rnn_saved_model_dir, observations, kind):
    backend = EagerBackend(rnn_policy) if kind == "eager" else SavedModelBackend(rnn_saved_model_dir)
    server = servers.serve({"rnn": backend}, batching=BATCHING)
    client = servers.client(server.address, "rnn")
    assert client.list_policies()[0].stateful
    spec_shapes = [s.shape for s in tf.nest.flatten(tensor_spec.to_nest_array_spec(rnn_policy.policy_state_spec))]
    unbatched = client.get_initial_state(None)
    assert [x.shape for x in tf.nest.flatten(unbatched)] == spec_shapes
    assert all(not x.any() for x in tf.nest.flatten(unbatched))
    batched = client.get_initial_state(3)
    assert [x.shape for x in tf.nest.flatten(batched)] == [(3,) + s for s in spec_shapes]

    rows, steps = 6, 4
    obs = observations[:rows]
    expected = _local_rollout(rnn_policy, obs, steps)
    # Batched: one request of all rows per step.
    state = client.get_initial_state(rows)
    for t in range(steps):
        step = client.action(time_step(obs * (t + 1) / steps, first=t == 0), state, batch_size=rows).policy_step
        np.testing.assert_array_equal(step.action, expected[t], err_msg=f"batched step {t}")
        state = step.state
    # Unbatched: one actor per row, each threading its own state, concurrently.
    def actor(row: int) -> list[int]:
        state, out = client.get_initial_state(None), []
        for t in range(steps):
            step = client.action(time_step(obs[row] * (t + 1) / steps, first=t == 0), state).policy_step
            out.append(int(step.action))
            state = step.state
            assert [x.shape for x in tf.nest.flatten(state)] == spec_shapes
        return out

    with concurrent.futures.ThreadPoolExecutor(rows) as pool:
        per_row = list(pool.map(actor, range(rows)))
    np.testing.assert_array_equal(np.array(per_row).T, np.array(expected))
    assert len({a for e in expected for a in e.tolist()}) == 2
