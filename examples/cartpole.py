"""A built-in policy with CartPole's specs, created on the fly (no files needed)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tf_agents.networks import q_network
from tf_agents.policies import epsilon_greedy_policy, greedy_policy, q_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

# CartPole-v0's specs, exactly as suite_gym.load("CartPole-v0") reports them.
_HIGH = np.array([4.8, np.finfo(np.float32).max, 0.41887903, np.finfo(np.float32).max], np.float32)
OBSERVATION_SPEC = tensor_spec.BoundedTensorSpec((4,), tf.float32, -_HIGH, _HIGH, name="observation")
ACTION_SPEC = tensor_spec.BoundedTensorSpec((), tf.int64, 0, 1, name="action")


def cartpole_time_step_spec() -> ts.TimeStep:
    """CartPole's TimeStep spec (as TensorSpecs)."""
    return ts.time_step_spec(OBSERVATION_SPEC, tensor_spec.TensorSpec((), tf.float32, name="reward"))


def cartpole_q_network(fc_layer_params: tuple[int, ...] = (64, 64)) -> q_network.QNetwork:
    """The Q network DQN uses for CartPole."""
    return q_network.QNetwork(OBSERVATION_SPEC, ACTION_SPEC, fc_layer_params=fc_layer_params)


def cartpole_q_policy(seed: int = 0, fc_layer_params: tuple[int, ...] = (64, 64), *,
                      greedy: bool = True) -> greedy_policy.GreedyPolicy | q_policy.QPolicy:
    """A QPolicy for CartPole with a (64, 64) MLP, randomly initialised from `seed`.

    A bare QPolicy samples its action from softmax(Q); with `greedy` (default)
    it is wrapped in a GreedyPolicy, which takes the argmax (as DqnAgent.policy).
    """
    tf.random.set_seed(seed)
    network = cartpole_q_network(fc_layer_params)
    network.create_variables(OBSERVATION_SPEC)
    policy = q_policy.QPolicy(cartpole_time_step_spec(), ACTION_SPEC, q_network=network)
    return greedy_policy.GreedyPolicy(policy) if greedy else policy


def cartpole_collect_policy(seed: int = 0, epsilon: float = 0.1,
                            fc_layer_params: tuple[int, ...] = (64, 64)) -> epsilon_greedy_policy.EpsilonGreedyPolicy:
    """DQN's collect policy for CartPole: epsilon-greedy over a QPolicy (same network shape)."""
    tf.random.set_seed(seed)
    network = cartpole_q_network(fc_layer_params)
    network.create_variables(OBSERVATION_SPEC)
    return epsilon_greedy_policy.EpsilonGreedyPolicy(
        q_policy.QPolicy(cartpole_time_step_spec(), ACTION_SPEC, q_network=network), epsilon=epsilon)
