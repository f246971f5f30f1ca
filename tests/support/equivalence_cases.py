"""Real TF-Agents policies for the local-vs-remote equivalence suite."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import tensorflow as tf
from tf_agents.agents.ddpg import actor_network as ddpg_actor_network
from tf_agents.agents.dqn import dqn_agent
from tf_agents.environments import random_py_environment, suite_gym
from tf_agents.networks import actor_distribution_network, actor_distribution_rnn_network, q_network
from tf_agents.policies import actor_policy, epsilon_greedy_policy, greedy_policy, q_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from examples.cartpole import ACTION_SPEC as CARTPOLE_ACTION, OBSERVATION_SPEC as CARTPOLE_OBS
from examples.cartpole import cartpole_time_step_spec


@dataclasses.dataclass
class Case:
    """One policy to compare: how to build it and an environment that fits its specs."""

    name: str
    build: Callable[[], Any]  # -> tf_policy.TFPolicy
    greedy: bool  # deterministic: compare unseeded actions and whole driver runs
    make_env: Callable[[int], Any]  # seed -> py environment with the policy's specs


def _random_env(time_step_spec: ts.TimeStep, action_spec: Any) -> Callable[[int], Any]:
    obs_spec = tensor_spec.to_nest_array_spec(time_step_spec.observation)
    act_spec = tensor_spec.to_nest_array_spec(action_spec)

    def make(seed: int) -> Any:
        return random_py_environment.RandomPyEnvironment(
            obs_spec, act_spec, episode_end_probability=0.1, min_duration=3, max_duration=15, seed=seed)

    return make


def _cartpole_env(seed: int) -> Any:
    env = suite_gym.load("CartPole-v0")
    env.seed(seed)
    return env


def _dqn_agent() -> dqn_agent.DqnAgent:
    tf.random.set_seed(1)
    network = q_network.QNetwork(CARTPOLE_OBS, CARTPOLE_ACTION, fc_layer_params=(64, 64))
    return dqn_agent.DqnAgent(cartpole_time_step_spec(), CARTPOLE_ACTION, q_network=network,
                              optimizer=tf.keras.optimizers.Adam(1e-3), epsilon_greedy=0.3)


DICT_OBS = {"position": tensor_spec.BoundedTensorSpec((3,), tf.float32, -1, 1, name="position"),
            "velocity": tensor_spec.BoundedTensorSpec((2,), tf.float32, -1, 1, name="velocity")}
DICT_TS = ts.time_step_spec(DICT_OBS)
DISCRETE = tensor_spec.BoundedTensorSpec((), tf.int32, 0, 3, name="discrete")
CONTINUOUS = tensor_spec.BoundedTensorSpec((2,), tf.float32, -2.0, 1.0, name="continuous")
VECTOR_TS = ts.time_step_spec(tensor_spec.BoundedTensorSpec((5,), tf.float32, -1, 1, name="observation"))


def _concat_dict(observation: dict) -> tf.Tensor:
    return tf.concat(tf.nest.flatten(observation), axis=-1)


def _rnn_actor() -> actor_policy.ActorPolicy:
    tf.random.set_seed(2)
    network = actor_distribution_rnn_network.ActorDistributionRnnNetwork(
        DICT_OBS, DISCRETE, preprocessing_combiner=tf.keras.layers.Lambda(_concat_dict),
        input_fc_layer_params=(16,), lstm_size=(8,), output_fc_layer_params=(16,))
    return actor_policy.ActorPolicy(DICT_TS, DISCRETE, actor_network=network)


def _sac_actor() -> actor_policy.ActorPolicy:
    """A SAC-style tanh-squashed Normal actor for bounded continuous actions."""
    tf.random.set_seed(3)
    network = actor_distribution_network.ActorDistributionNetwork(
        VECTOR_TS.observation, CONTINUOUS, fc_layer_params=(32, 32))
    return actor_policy.ActorPolicy(VECTOR_TS, CONTINUOUS, actor_network=network, training=False)


def _ddpg_actor() -> actor_policy.ActorPolicy:
    tf.random.set_seed(4)
    network = ddpg_actor_network.ActorNetwork(VECTOR_TS.observation, CONTINUOUS, fc_layer_params=(32,))
    return actor_policy.ActorPolicy(VECTOR_TS, CONTINUOUS, actor_network=network, clip=True)


def _log_prob_policy() -> epsilon_greedy_policy.EpsilonGreedyPolicy:
    """Epsilon-greedy over a QPolicy that emits log probabilities in its info."""
    tf.random.set_seed(5)
    network = q_network.QNetwork(VECTOR_TS.observation, DISCRETE, fc_layer_params=(16,))
    greedy = q_policy.QPolicy(VECTOR_TS, DISCRETE, q_network=network, emit_log_probability=True)
    return epsilon_greedy_policy.EpsilonGreedyPolicy(greedy, epsilon=0.5)


MASKED_OBS = {"observation": tensor_spec.BoundedTensorSpec((4,), tf.float32, -1, 1, name="observation"),
              "mask": tensor_spec.BoundedTensorSpec((4,), tf.int32, 0, 1, name="mask")}
MASKED_ACTION = tensor_spec.BoundedTensorSpec((), tf.int64, 0, 3, name="action")


def _masked_q_policy() -> q_policy.QPolicy:
    tf.random.set_seed(6)
    network = q_network.QNetwork(MASKED_OBS["observation"], MASKED_ACTION, fc_layer_params=(16,))
    return q_policy.QPolicy(ts.time_step_spec(MASKED_OBS), MASKED_ACTION, q_network=network,
                            observation_and_action_constraint_splitter=lambda o: (o["observation"], o["mask"]))


NESTED_DICT_ACTION = {"discrete": DISCRETE, "continuous": CONTINUOUS}
NESTED_TUPLE_ACTION = (DISCRETE, CONTINUOUS)


def _nested_actor(action_spec: Any, seed: int) -> Callable[[], actor_policy.ActorPolicy]:
    def build() -> actor_policy.ActorPolicy:
        tf.random.set_seed(seed)
        network = actor_distribution_network.ActorDistributionNetwork(VECTOR_TS.observation, action_spec,
                                                                      fc_layer_params=(16,))
        return actor_policy.ActorPolicy(VECTOR_TS, action_spec, actor_network=network)

    return build


def _greedy(build: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: greedy_policy.GreedyPolicy(build())


CASES = [
    Case("dqn_greedy", lambda: _dqn_agent().policy, True, _cartpole_env),
    Case("dqn_epsilon_greedy", lambda: _dqn_agent().collect_policy, False, _cartpole_env),
    Case("rnn_dict_obs_greedy", _greedy(_rnn_actor), True, _random_env(DICT_TS, DISCRETE)),
    Case("rnn_dict_obs_stochastic", _rnn_actor, False, _random_env(DICT_TS, DISCRETE)),
    Case("sac_actor_greedy", _greedy(_sac_actor), True, _random_env(VECTOR_TS, CONTINUOUS)),
    Case("sac_actor_stochastic", _sac_actor, False, _random_env(VECTOR_TS, CONTINUOUS)),
    Case("ddpg_actor", _ddpg_actor, True, _random_env(VECTOR_TS, CONTINUOUS)),
    Case("log_prob_info", _log_prob_policy, False, _random_env(VECTOR_TS, DISCRETE)),
    Case("action_mask", _greedy(_masked_q_policy), True, _random_env(ts.time_step_spec(MASKED_OBS), MASKED_ACTION)),
    Case("nested_dict_actions", _greedy(_nested_actor(NESTED_DICT_ACTION, 7)), True,
         _random_env(VECTOR_TS, NESTED_DICT_ACTION)),
    Case("nested_tuple_actions_stochastic", _nested_actor(NESTED_TUPLE_ACTION, 8), False,
         _random_env(VECTOR_TS, NESTED_TUPLE_ACTION)),
]


def sample_time_step(time_step_spec: Any, batch_size: int | None, seed: int) -> ts.TimeStep:
    """A random MID time step of the spec (unbatched when batch_size is None)."""
    rng = np.random.default_rng(seed)
    spec = tensor_spec.to_nest_array_spec(time_step_spec)
    outer = () if batch_size is None else (batch_size,)

    def sample(s: Any) -> np.ndarray:
        if np.issubdtype(s.dtype, np.integer):
            return rng.integers(s.minimum, s.maximum + 1, size=outer + s.shape).astype(s.dtype)
        low = np.maximum(getattr(s, "minimum", -1.0), -1.0)
        high = np.minimum(getattr(s, "maximum", 1.0), 1.0)
        return rng.uniform(low, high, size=outer + s.shape).astype(s.dtype)

    observation = tf.nest.map_structure(sample, spec.observation)
    return ts.TimeStep(step_type=np.full(outer, ts.StepType.MID, np.int32),
                       reward=np.asarray(rng.normal(size=outer), np.float32),
                       discount=np.ones(outer, np.float32), observation=observation)
