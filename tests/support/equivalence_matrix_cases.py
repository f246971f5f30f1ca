"""The wider local-vs-remote equivalence matrix: policies, time-step streams and input variations.

Used by tests/policy_client/test_equivalence_matrix.py. Every policy is built
by its test module's own fixture (Keras models made before another test builds
layers in a tf.compat.v1.Graph become invalid), with a fixed TF seed.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Callable

import numpy as np
import tensorflow as tf
import tree
from tf_agents.agents.categorical_dqn import categorical_dqn_agent
from tf_agents.agents.ddpg import actor_network as ddpg_actor_network
from tf_agents.agents.ddpg import critic_network as ddpg_critic_network
from tf_agents.agents.ddpg import ddpg_agent
from tf_agents.agents.dqn import dqn_agent
from tf_agents.agents.ppo import ppo_agent, ppo_clip_agent
from tf_agents.agents.sac import sac_agent, tanh_normal_projection_network
from tf_agents.bandits.agents import lin_ucb_agent, neural_epsilon_greedy_agent
from tf_agents.bandits.networks import global_and_arm_feature_network
from tf_agents.environments import py_environment
from tf_agents.networks import actor_distribution_network, actor_distribution_rnn_network, categorical_q_network
from tf_agents.networks import q_network, value_network, value_rnn_network
from tf_agents.policies import actor_policy, greedy_policy, random_py_policy, scripted_py_policy
from tf_agents.specs import array_spec, bandit_spec_utils, tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

# ---------------------------------------------------------------- specs

VECTOR_OBS = tensor_spec.BoundedTensorSpec((6,), tf.float32, -1.0, 1.0, name="observation")
VECTOR_TS = ts.time_step_spec(VECTOR_OBS)
DISCRETE = tensor_spec.BoundedTensorSpec((), tf.int32, 0, 3, name="action")
DISCRETE64 = tensor_spec.BoundedTensorSpec((), tf.int64, 0, 4, name="action")
CONTINUOUS = tensor_spec.BoundedTensorSpec((2,), tf.float32, -2.0, 1.0, name="action")
IMAGE_OBS = tensor_spec.BoundedTensorSpec((12, 12, 3), tf.uint8, 0, 255, name="pixels")
IMAGE_TS = ts.time_step_spec(IMAGE_OBS)
STRING_OBS = tensor_spec.TensorSpec((), tf.string, name="word")
STRING_TS = ts.time_step_spec(STRING_OBS)
WORDS = [b"north", b"south", b"east", b"west", b"up", b"down", b"", "caf\u00e9".encode()]
BANDIT_OBS = tensor_spec.BoundedTensorSpec((4,), tf.float32, -1.0, 1.0, name="context")
BANDIT_TS = ts.time_step_spec(BANDIT_OBS)
BANDIT_ACTION = tensor_spec.BoundedTensorSpec((), tf.int32, 0, 4, name="arm")
PER_ARM_OBS = bandit_spec_utils.create_per_arm_observation_spec(3, 2, max_num_actions=5)
PER_ARM_TS = ts.time_step_spec(PER_ARM_OBS)


@dataclasses.dataclass
class MatrixCase:
    """One policy of the matrix.

    Attributes:
      name: the test id and the name it is hosted under.
      time_step_spec: the policy's (known before it is built: which variations apply).
      build: () -> the policy to host (a TFPolicy or a PyPolicy).
      seeded: stochastic: every call takes a seed (local after tf.random.set_seed).
      py: a PyPolicy (the local policy is itself, not a PyTFEagerPolicy).
      stateful: it takes a policy state (a declared one, or ScriptedPyPolicy's).
      twin: the policy keeps state of its own between calls (a py policy's RNG,
        an OU process's variables): `build` runs twice, one instance is called
        locally and an identical one is hosted, and both see the same calls.
    """

    name: str
    time_step_spec: Any
    build: Callable[[], Any]
    seeded: bool = False
    py: bool = False
    twin: bool = False
    stateful: bool = False


def _seeded(seed: int, make: Callable[[], Any]) -> Callable[[], Any]:
    """`make` after seeding TF, numpy and Python's `random` (unseeded Keras initializers draw from it).

    So two builds are identical (twins); the callers' numpy and Python RNG states are put back.
    """
    def build() -> Any:
        saved = random.getstate(), np.random.get_state()
        tf.keras.utils.set_random_seed(seed)
        try:
            return make()
        finally:
            random.setstate(saved[0])
            np.random.set_state(saved[1])

    return build


def _ppo_ff(collect: bool) -> Callable[[], Any]:
    def make() -> Any:
        actor = actor_distribution_network.ActorDistributionNetwork(VECTOR_OBS, CONTINUOUS, fc_layer_params=(16,))
        value = value_network.ValueNetwork(VECTOR_OBS, fc_layer_params=(16,))
        agent = ppo_agent.PPOAgent(VECTOR_TS, CONTINUOUS, optimizer=tf.keras.optimizers.Adam(1e-3),
                                   actor_net=actor, value_net=value, num_epochs=1)
        return agent.collect_policy if collect else agent.policy

    return make


def _ppo_rnn(collect: bool) -> Callable[[], Any]:
    def make() -> Any:
        actor = actor_distribution_rnn_network.ActorDistributionRnnNetwork(
            VECTOR_OBS, DISCRETE, input_fc_layer_params=(16,), lstm_size=(8,), output_fc_layer_params=(16,))
        value = value_rnn_network.ValueRnnNetwork(VECTOR_OBS, input_fc_layer_params=(16,), lstm_size=(8,),
                                                  output_fc_layer_params=(16,))
        agent = ppo_clip_agent.PPOClipAgent(VECTOR_TS, DISCRETE, optimizer=tf.keras.optimizers.Adam(1e-3),
                                            actor_net=actor, value_net=value, num_epochs=1)
        return agent.collect_policy if collect else agent.policy

    return make


def _dqn(collect: bool) -> Callable[[], Any]:
    def make() -> Any:
        network = q_network.QNetwork(VECTOR_OBS, DISCRETE, fc_layer_params=(32,))
        agent = dqn_agent.DqnAgent(VECTOR_TS, DISCRETE, q_network=network, optimizer=tf.keras.optimizers.Adam(1e-3),
                                   epsilon_greedy=0.3)
        return agent.collect_policy if collect else agent.policy

    return make


def _categorical_dqn(collect: bool) -> Callable[[], Any]:
    def make() -> Any:
        network = categorical_q_network.CategoricalQNetwork(VECTOR_OBS, DISCRETE64, num_atoms=11,
                                                            fc_layer_params=(32,))
        agent = categorical_dqn_agent.CategoricalDqnAgent(
            VECTOR_TS, DISCRETE64, categorical_q_network=network, optimizer=tf.keras.optimizers.Adam(1e-3),
            min_q_value=-5.0, max_q_value=5.0, epsilon_greedy=0.3)
        return agent.collect_policy if collect else agent.policy

    return make


def _sac() -> Any:
    actor = actor_distribution_network.ActorDistributionNetwork(
        VECTOR_OBS, CONTINUOUS, fc_layer_params=(16,),
        continuous_projection_net=tanh_normal_projection_network.TanhNormalProjectionNetwork)
    critic = ddpg_critic_network.CriticNetwork((VECTOR_OBS, CONTINUOUS), joint_fc_layer_params=(16,))
    agent = sac_agent.SacAgent(VECTOR_TS, CONTINUOUS, critic_network=critic, actor_network=actor,
                               actor_optimizer=tf.keras.optimizers.Adam(1e-3),
                               critic_optimizer=tf.keras.optimizers.Adam(1e-3),
                               alpha_optimizer=tf.keras.optimizers.Adam(1e-3))
    return agent.collect_policy


def _ddpg(collect: bool) -> Callable[[], Any]:
    def make() -> Any:
        actor = ddpg_actor_network.ActorNetwork(VECTOR_OBS, CONTINUOUS, fc_layer_params=(16,))
        critic = ddpg_critic_network.CriticNetwork((VECTOR_OBS, CONTINUOUS), joint_fc_layer_params=(16,))
        agent = ddpg_agent.DdpgAgent(VECTOR_TS, CONTINUOUS, actor_network=actor, critic_network=critic,
                                     actor_optimizer=tf.keras.optimizers.Adam(1e-3),
                                     critic_optimizer=tf.keras.optimizers.Adam(1e-3), ou_stddev=0.2)
        return agent.collect_policy if collect else agent.policy

    return make


def _bandit_experience(agent: Any, rows: int, seed: int) -> trajectory.Trajectory:
    """A [rows, 1] batch of random bandit experience for one training step of `agent`."""
    rng = np.random.default_rng(seed)
    spec = agent.training_data_spec
    observation_spec, action_spec = spec.observation, spec.action
    observation = tree.map_structure(
        lambda s: tf.constant(sample_leaf(tensor_spec.to_array_spec(s), rng, (rows, 1))), observation_spec)
    action = tf.constant(rng.integers(action_spec.minimum, action_spec.maximum + 1, (rows, 1)),
                         action_spec.dtype)
    reward = tf.constant(rng.normal(size=(rows, 1)), tf.float32)
    step_type = tf.fill((rows, 1), ts.StepType.FIRST)
    policy_info = tree.map_structure(
        lambda s: tf.constant(sample_leaf(tensor_spec.to_array_spec(s), rng, (rows, 1))), spec.policy_info)
    return trajectory.Trajectory(step_type=step_type, observation=observation, action=action, policy_info=policy_info,
                                 next_step_type=tf.fill((rows, 1), ts.StepType.LAST), reward=reward,
                                 discount=tf.ones((rows, 1)))


def _lin_ucb() -> Any:
    agent = lin_ucb_agent.LinearUCBAgent(BANDIT_TS, BANDIT_ACTION, alpha=1.0,
                                         emit_policy_info=("predicted_rewards_mean",))
    agent.train(_bandit_experience(agent, 32, seed=1))
    return agent.policy


def _neural_epsilon_greedy() -> Any:
    network = q_network.QNetwork(BANDIT_OBS, BANDIT_ACTION, fc_layer_params=(16,))
    agent = neural_epsilon_greedy_agent.NeuralEpsilonGreedyAgent(
        BANDIT_TS, BANDIT_ACTION, reward_network=network, optimizer=tf.keras.optimizers.Adam(1e-2), epsilon=0.3,
        emit_policy_info=("predicted_rewards_mean",))
    return agent.policy


def _per_arm_epsilon_greedy() -> Any:
    network = global_and_arm_feature_network.create_feed_forward_common_tower_network(
        PER_ARM_OBS, global_layers=(8,), arm_layers=(8,), common_layers=(8,))
    agent = neural_epsilon_greedy_agent.NeuralEpsilonGreedyAgent(
        PER_ARM_TS, BANDIT_ACTION, reward_network=network, optimizer=tf.keras.optimizers.Adam(1e-2), epsilon=0.3,
        accepts_per_arm_features=True, emit_policy_info=("predicted_rewards_mean",))
    return agent.policy


def _per_arm_lin_ucb() -> Any:
    agent = lin_ucb_agent.LinearUCBAgent(PER_ARM_TS, BANDIT_ACTION, alpha=1.0, accepts_per_arm_features=True,
                                         emit_policy_info=("predicted_rewards_mean",))
    agent.train(_bandit_experience(agent, 32, seed=2))
    return agent.policy


def _image_q(collect: bool) -> Callable[[], Any]:
    def make() -> Any:
        network = q_network.QNetwork(
            IMAGE_OBS, DISCRETE, preprocessing_layers=tf.keras.layers.Lambda(lambda x: tf.cast(x, tf.float32) / 255),
            conv_layer_params=((4, 3, 2),), fc_layer_params=(16,))
        agent = dqn_agent.DqnAgent(IMAGE_TS, DISCRETE, q_network=network, optimizer=tf.keras.optimizers.Adam(1e-3),
                                   epsilon_greedy=0.3)
        return agent.collect_policy if collect else agent.policy

    return make


def _hash_words(words: tf.Tensor) -> tf.Tensor:
    return tf.one_hot(tf.strings.to_hash_bucket_fast(words, 16), 16)


def _string_q(collect: bool) -> Callable[[], Any]:
    def make() -> Any:
        network = q_network.QNetwork(STRING_OBS, DISCRETE, preprocessing_layers=tf.keras.layers.Lambda(_hash_words),
                                     fc_layer_params=(16,))
        agent = dqn_agent.DqnAgent(STRING_TS, DISCRETE, q_network=network, optimizer=tf.keras.optimizers.Adam(1e-3),
                                   epsilon_greedy=0.3)
        return agent.collect_policy if collect else agent.policy

    return make


# Dict observations and actions whose keys are not in sorted order.
DICT_OBS = {"velocity": tensor_spec.BoundedTensorSpec((2,), tf.float32, -1.0, 1.0, name="velocity"),
            "position": tensor_spec.BoundedTensorSpec((3,), tf.float32, -1.0, 1.0, name="position")}
DICT_TS = ts.time_step_spec(DICT_OBS)
DICT_ACTION = {"steer": tensor_spec.BoundedTensorSpec((), tf.int32, 0, 2, name="steer"),
               "force": tensor_spec.BoundedTensorSpec((2,), tf.float32, -1.0, 1.0, name="force")}


def _concat(observation: dict) -> tf.Tensor:
    return tf.concat(tf.nest.flatten(observation), axis=-1)


def _dict_actor(greedy: bool) -> Callable[[], Any]:
    def make() -> Any:
        network = actor_distribution_network.ActorDistributionNetwork(
            DICT_OBS, DICT_ACTION, preprocessing_combiner=tf.keras.layers.Lambda(_concat), fc_layer_params=(16,))
        policy = actor_policy.ActorPolicy(DICT_TS, DICT_ACTION, actor_network=network)
        return greedy_policy.GreedyPolicy(policy) if greedy else policy

    return make


PY_OBS = {"pixels": array_spec.BoundedArraySpec((4, 4), np.uint8, 0, 255, name="pixels"),
          "word": array_spec.ArraySpec((), np.object_, name="word"),
          "position": array_spec.BoundedArraySpec((3,), np.float32, -1.0, 1.0, name="position")}
PY_ACTION = {"move": array_spec.BoundedArraySpec((), np.int32, 0, 4, name="move"),
             "force": array_spec.BoundedArraySpec((2,), np.float32, -1.0, 1.0, name="force")}


PY_TS = ts.time_step_spec(PY_OBS)


def _random_py() -> Any:
    return random_py_policy.RandomPyPolicy(PY_TS, PY_ACTION, seed=11)


SCRIPT_ACTION = array_spec.BoundedArraySpec((2,), np.int32, 0, 9, name="action")


def _scripted_py() -> Any:
    rng = np.random.default_rng(5)
    script = [(int(rng.integers(1, 4)), rng.integers(0, 10, 2).astype(np.int32)) for _ in range(400)]
    script.insert(3, (0, np.array([9, 9], np.int32)))  # zero repeats: skipped
    return scripted_py_policy.ScriptedPyPolicy(PY_TS, SCRIPT_ACTION, script)


CASES = [
    MatrixCase("ppo_ff_greedy", VECTOR_TS, _seeded(21, _ppo_ff(False))),
    MatrixCase("ppo_ff_collect", VECTOR_TS, _seeded(21, _ppo_ff(True)), seeded=True),
    MatrixCase("ppo_rnn_greedy", VECTOR_TS, _seeded(22, _ppo_rnn(False)), stateful=True),
    MatrixCase("ppo_rnn_collect", VECTOR_TS, _seeded(22, _ppo_rnn(True)), seeded=True, stateful=True),
    MatrixCase("dqn_greedy", VECTOR_TS, _seeded(23, _dqn(False))),
    MatrixCase("dqn_collect", VECTOR_TS, _seeded(23, _dqn(True)), seeded=True),
    MatrixCase("categorical_dqn_greedy", VECTOR_TS, _seeded(24, _categorical_dqn(False))),
    MatrixCase("categorical_dqn_collect", VECTOR_TS, _seeded(24, _categorical_dqn(True)), seeded=True),
    MatrixCase("sac_collect", VECTOR_TS, _seeded(25, _sac), seeded=True),
    MatrixCase("ddpg_greedy", VECTOR_TS, _seeded(26, _ddpg(False))),
    MatrixCase("ddpg_ou_collect", VECTOR_TS, _seeded(26, _ddpg(True)), seeded=True, twin=True),
    MatrixCase("lin_ucb", BANDIT_TS, _seeded(27, _lin_ucb)),
    MatrixCase("neural_epsilon_greedy", BANDIT_TS, _seeded(28, _neural_epsilon_greedy), seeded=True),
    MatrixCase("per_arm_epsilon_greedy", PER_ARM_TS, _seeded(29, _per_arm_epsilon_greedy), seeded=True),
    MatrixCase("per_arm_lin_ucb", PER_ARM_TS, _seeded(30, _per_arm_lin_ucb)),
    MatrixCase("image_q_greedy", IMAGE_TS, _seeded(31, _image_q(False))),
    MatrixCase("image_q_collect", IMAGE_TS, _seeded(31, _image_q(True)), seeded=True),
    MatrixCase("string_q_greedy", STRING_TS, _seeded(32, _string_q(False))),
    MatrixCase("string_q_collect", STRING_TS, _seeded(32, _string_q(True)), seeded=True),
    MatrixCase("dict_actor_greedy", DICT_TS, _seeded(33, _dict_actor(True))),
    MatrixCase("dict_actor_stochastic", DICT_TS, _seeded(33, _dict_actor(False)), seeded=True),
    MatrixCase("random_py", PY_TS, _random_py, py=True, twin=True),
    MatrixCase("scripted_py", PY_TS, _scripted_py, py=True, twin=True, stateful=True),
]

# ---------------------------------------------------------------- sampling


def sample_leaf(spec: array_spec.ArraySpec, rng: np.random.Generator, outer: tuple[int, ...]) -> np.ndarray:
    """A random array of the spec (bounded specs within their bounds, floats within [-1, 1])."""
    shape = outer + tuple(spec.shape)
    dtype = np.dtype(spec.dtype)
    if dtype == np.object_ or dtype.kind in "SU":
        return np.array([WORDS[i] for i in rng.integers(0, len(WORDS), int(np.prod(shape)))],
                        np.object_).reshape(shape)
    if dtype == np.bool_:
        return rng.integers(0, 2, shape).astype(np.bool_)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        low = int(max(getattr(spec, "minimum", info.min), info.min, -1000))
        high = int(min(getattr(spec, "maximum", info.max), info.max, 1000))
        return rng.integers(low, high + 1, shape).astype(dtype)
    low = np.maximum(getattr(spec, "minimum", -1.0), -1.0)
    high = np.minimum(getattr(spec, "maximum", 1.0), 1.0)
    return rng.uniform(low, high, shape).astype(dtype)


def time_step_stream(time_step_spec: Any, batch_size: int | None, seed: int, steps: int):
    """`steps` time steps of the spec: episodes of FIRST, MID..., LAST (each row its own episodes)."""
    rng = np.random.default_rng(seed)
    spec = tensor_spec.to_nest_array_spec(time_step_spec)
    outer = () if batch_size is None else (batch_size,)
    step_type = np.full(outer, ts.StepType.FIRST, np.int32)
    for _ in range(steps):
        observation = tree.map_structure(lambda s: sample_leaf(s, rng, outer), spec.observation)
        last = step_type == ts.StepType.LAST
        reward = np.where(step_type == ts.StepType.FIRST, 0.0, rng.normal(size=outer)).astype(np.float32)
        yield ts.TimeStep(step_type=np.asarray(step_type, np.int32), reward=np.asarray(reward, np.float32),
                          discount=np.asarray(np.where(last, 0.0, 0.99), np.float32), observation=observation)
        ends = rng.random(outer) < 0.15
        step_type = np.where(last, ts.StepType.FIRST,
                             np.where(ends, ts.StepType.LAST, ts.StepType.MID)).astype(np.int32)


class SampledEnvironment(py_environment.PyEnvironment):
    """Episodes of 3 to 15 random observations of any spec (strings too); checks every action."""

    def __init__(self, observation_spec: Any, action_spec: Any, seed: int):
        super().__init__()
        self._observation_spec, self._action_spec = observation_spec, action_spec
        self._rng = np.random.default_rng(seed)
        self._left = 0

    def observation_spec(self) -> Any:
        return self._observation_spec

    def action_spec(self) -> Any:
        return self._action_spec

    def _observe(self) -> Any:
        return tree.map_structure(lambda s: sample_leaf(s, self._rng, ()), self._observation_spec)

    def _reset(self) -> ts.TimeStep:
        self._left = int(self._rng.integers(3, 16))
        return ts.restart(self._observe())

    def _step(self, action: Any) -> ts.TimeStep:
        if self.current_time_step() is None or self.current_time_step().is_last():
            return self.reset()
        array_spec.check_arrays_nest(action, self._action_spec)
        self._left -= 1
        reward = np.float32(self._rng.normal())
        return ts.termination(self._observe(), reward) if self._left <= 0 else \
            ts.transition(self._observe(), reward, 0.99)

# ---------------------------------------------------------------- input variations
#
# Each variation turns a conforming (time_step, policy_state) into what a caller
# might pass instead; None when it does not apply to the policy. The test calls
# the local policy first, then the remote one, with the same values.

Inputs = tuple[Any, Any]


def _map_obs(fn: Callable[[np.ndarray], Any]) -> Callable[[Inputs], Inputs | None]:
    def vary(inputs: Inputs) -> Inputs:
        time_step, state = inputs
        return time_step._replace(observation=tree.map_structure(fn, time_step.observation)), state

    return vary


def _map_leaves_of(kinds: str, fn: Callable[[np.ndarray], Any]) -> Callable[[Inputs], Inputs | None]:
    """Applies fn to the observation leaves of these dtype kinds; None when there are none."""
    def vary(inputs: Inputs) -> Inputs | None:
        time_step, state = inputs
        if not any(np.asarray(x).dtype.kind in kinds for x in tree.flatten(time_step.observation)):
            return None
        observation = tree.map_structure(lambda x: fn(x) if np.asarray(x).dtype.kind in kinds else x,
                                         time_step.observation)
        return time_step._replace(observation=observation), state

    return vary


def _fields(**fns: Callable[[Any], Any]) -> Callable[[Inputs], Inputs]:
    def vary(inputs: Inputs) -> Inputs:
        time_step, state = inputs
        return time_step._replace(**{k: fn(getattr(time_step, k)) for k, fn in fns.items()}), state

    return vary


def _all_leaves(fn: Callable[[np.ndarray], Any]) -> Callable[[Inputs], Inputs]:
    def vary(inputs: Inputs) -> Inputs:
        time_step, state = inputs
        return ts.TimeStep(*(tree.map_structure(fn, field) for field in time_step)), state

    return vary


def _wider(x: np.ndarray) -> np.ndarray:
    kind = x.dtype.kind
    return x.astype({"f": np.float64, "i": np.int64, "u": np.int64}[kind]) if kind in "fiu" else x


def _dict_only(fn: Callable[[dict], dict | None]) -> Callable[[Inputs], Inputs | None]:
    def vary(inputs: Inputs) -> Inputs | None:
        time_step, state = inputs
        if not isinstance(time_step.observation, dict):
            return None
        observation = fn(dict(time_step.observation))
        return (time_step._replace(observation=observation), state) if observation is not None else None

    return vary


def _drop_first_key(observation: dict) -> dict:
    del observation[min(observation)]
    return observation


def _state(fn: Callable[[Any], Any]) -> Callable[[Inputs], Inputs | None]:
    def vary(inputs: Inputs) -> Inputs | None:
        time_step, state = inputs
        if not tree.flatten(state):
            return None
        return time_step, fn(state)

    return vary


def _batched_only(fn: Callable[[Inputs], Inputs | None]) -> Callable[[Inputs], Inputs | None]:
    def vary(inputs: Inputs) -> Inputs | None:
        return fn(inputs) if np.ndim(inputs[0].step_type) == 1 else None

    return vary


def _unbatched_only(fn: Callable[[Inputs], Inputs | None]) -> Callable[[Inputs], Inputs | None]:
    def vary(inputs: Inputs) -> Inputs | None:
        return fn(inputs) if np.ndim(inputs[0].step_type) == 0 else None

    return vary


def _rows(n: int) -> Callable[[Any], Any]:
    return lambda x: tree.map_structure(lambda v: np.asarray(v)[:n], x)


def _array_state(fn: Callable[[Any], Any]) -> Callable[[Inputs], Inputs | None]:
    """A change to a state of arrays with a batch dimension (not ScriptedPyPolicy's [index, repeats])."""
    def vary(inputs: Inputs) -> Inputs | None:
        leaves = tree.flatten(inputs[1])
        if not leaves or not all(isinstance(x, np.ndarray) and x.ndim for x in leaves):
            return None
        return inputs[0], fn(inputs[1])

    return vary


def _as_unicode(x: np.ndarray) -> np.ndarray:
    return np.vectorize(lambda b: b.decode("utf-8"), otypes=[np.str_])(x) if x.size else x.astype(np.str_)


VARIATIONS: dict[str, Callable[[Inputs], Inputs | None]] = {
    # dtypes: wider, narrower, another kind
    "obs float64 (wider)": _map_leaves_of("f", lambda x: x.astype(np.float64)),
    "obs float16 (narrower)": _map_leaves_of("f", lambda x: x.astype(np.float16)),
    "obs int64 for float (other kind)": _map_leaves_of("f", lambda x: np.round(x).astype(np.int64)),
    "obs int64 for ints (wider)": _map_leaves_of("iu", lambda x: x.astype(np.int64)),
    "obs int16 for ints (narrower)": _map_leaves_of("iu", lambda x: x.astype(np.int16)),
    "obs float32 for ints (other kind)": _map_leaves_of("iu", lambda x: x.astype(np.float32)),
    "obs str_ for bytes (unicode)": _map_leaves_of("OSU", _as_unicode),
    "obs bytes_ for object (S dtype)": _map_leaves_of("O", lambda x: x.astype(np.bytes_)),
    "every leaf wider": _all_leaves(lambda x: _wider(np.asarray(x))),
    "step_type int64, reward float64": _fields(step_type=lambda x: np.asarray(x, np.int64),
                                              reward=lambda x: np.asarray(x, np.float64)),
    # Python values
    "python scalars and lists": _all_leaves(lambda x: np.asarray(x).tolist()),
    "python step fields, numpy obs": _fields(step_type=lambda x: np.asarray(x).tolist(),
                                             reward=lambda x: np.asarray(x).tolist(),
                                             discount=lambda x: np.asarray(x).tolist()),
    "numpy scalars (np.int32, np.float32)": _unbatched_only(_fields(step_type=lambda x: np.int32(x),
                                                                    reward=lambda x: np.float32(x),
                                                                    discount=lambda x: np.float32(x))),
    # tensors
    "tf.Tensor leaves": _all_leaves(tf.constant),
    "tf.Tensor observation": _map_obs(tf.constant),
    # dict keys
    "extra observation key": _dict_only(lambda o: {**o, "zzz_extra": np.zeros(2, np.float32)}),
    "missing observation key": _dict_only(_drop_first_key),
    "observation wrapped in a dict": lambda i: None if isinstance(i[0].observation, dict) else
    (i[0]._replace(observation={"observation": i[0].observation}), i[1]),
    "time step as a plain tuple": lambda i: (tuple(i[0]), i[1]),
    # ranks
    "obs with an extra outer dim": _map_obs(lambda x: np.asarray(x)[None]),
    "obs with an extra inner dim": _map_obs(lambda x: np.asarray(x)[..., None]),
    "obs missing its last dim": _map_obs(lambda x: np.asarray(x)[..., 0] if np.ndim(x) else x),
    "step_type with one row more": _fields(step_type=lambda x: np.asarray(x)[None]),
    # rows that disagree (batched)
    "step_type with fewer rows": _batched_only(_fields(step_type=_rows(2))),
    "observation with fewer rows": _batched_only(_map_obs(lambda x: np.asarray(x)[:2])),
    "reward with fewer rows": _batched_only(_fields(reward=_rows(1))),
    # step types out of range
    "step_type 7": _fields(step_type=lambda x: np.full_like(np.asarray(x), 7)),
    "step_type -1": _fields(step_type=lambda x: np.full_like(np.asarray(x), -1)),
    "step_type float": _fields(step_type=lambda x: np.asarray(x, np.float32)),
    "obs out of its bounds": _map_leaves_of("f", lambda x: (x * 0 + 7.5).astype(x.dtype)),
    # policy state
    "state None": lambda i: (i[0], None),
    "state () for a stateful policy": _state(lambda s: ()),
    "state float64": _state(lambda s: tree.map_structure(lambda x: np.asarray(x, np.float64), s)),
    "state as tf.Tensors": _state(lambda s: tree.map_structure(tf.constant, s)),
    "state as Python lists": _state(lambda s: tree.map_structure(lambda x: np.asarray(x).tolist(), s)),
    "state with one row fewer": _batched_only(_array_state(_rows(2))),
    "state without its batch dim": _unbatched_only(_array_state(lambda s: tree.map_structure(lambda x: x[0], s))),
    "state given to a stateless policy": lambda i: None if tree.flatten(i[1]) else (i[0], [np.zeros(3, np.float32)]),
}

# Seeds a caller might pass (applied to a conforming input).
SEED_VARIATIONS: dict[str, Any] = {
    "seed np.int64": np.int64(77),
    "seed 2**40": 2 ** 40,
    "seed -3": -3,
    "seed 0": 0,
}


def applies(case: MatrixCase, variation: str, batch_size: int | None) -> bool:
    """Whether a variation changes anything for this case (decided from its specs, before building it)."""
    time_step = next(time_step_stream(case.time_step_spec, batch_size, seed=0, steps=1))
    state = [0, 0] if case.name == "scripted_py" else [np.zeros((batch_size or 1, 2), np.float32)] if case.stateful \
        else ()
    return VARIATIONS[variation]((time_step, state)) is not None
