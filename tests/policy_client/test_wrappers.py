"""TF-Agents' Python wrappers around a RemotePolicy answer as the same wrappers around the local policy.

EpsilonGreedyPolicy (py_epsilon_greedy_policy), BatchedPyPolicy (three policies
acting on the rows of one batch, on its thread pool) and a wrapper of the kind
users write (a PyPolicy subclass that transforms the observation and delegates)
are built once around local policies and once around RemotePolicies to a
server hosting the same policies, and stepped through real CartPole time
steps: every answer must be equal. `make test` runs this file again with each
data plane forced (TFA_POLICY_DATA_PLANE), like the rest of the equivalence
suites.
"""

from __future__ import annotations

import numpy as np
import pytest
from tf_agents.environments import suite_gym
from tf_agents.policies import batched_py_policy, py_epsilon_greedy_policy, py_policy, py_tf_eager_policy
from tf_agents.trajectories import time_step as ts

from policy_client import RemotePolicy
from policy_server.server import BackgroundServer
from tests.oip.conftest import rnn_policy  # noqa: F401  (the recurrent CartPole policy fixture)
from tests.support.same import assert_same

STEPS = 60


@pytest.fixture(scope="module")
def served(cartpole_tf_policy, rnn_policy):  # noqa: F811
    with BackgroundServer({"greedy": cartpole_tf_policy, "rnn": rnn_policy}) as server:
        yield server, {"greedy": cartpole_tf_policy, "rnn": rnn_policy}


def _time_steps(seed: int, count: int = STEPS) -> list:
    """Real CartPole time steps (an episode restarted whenever it ends), driven by a fixed action sequence."""
    env = suite_gym.load("CartPole-v0")
    env.seed(seed)
    rng = np.random.default_rng(seed)
    steps, step = [], env.reset()
    for _ in range(count):
        steps.append(step)
        step = env.reset() if step.is_last() else env.step(np.int64(rng.integers(0, 2)))
    return steps


class ScaledObservation(py_policy.PyPolicy):
    """A wrapper as users write them: the inner policy acts on the observation times `scale`."""

    def __init__(self, inner: py_policy.PyPolicy, scale: float):
        super().__init__(inner.time_step_spec, inner.action_spec, inner.policy_state_spec, inner.info_spec)
        self._inner, self._scale = inner, np.float32(scale)

    def _get_initial_state(self, batch_size):
        return self._inner.get_initial_state(batch_size)

    def _action(self, time_step, policy_state):
        scaled = time_step._replace(observation=(time_step.observation * self._scale).astype(np.float32))
        return self._inner.action(scaled, policy_state)


def test_epsilon_greedy_around_a_remote_policy_takes_the_same_actions(served):
    server, policies = served
    local_greedy = py_tf_eager_policy.PyTFEagerPolicy(policies["greedy"])
    with RemotePolicy(server.address, "greedy", timeout=30) as remote_greedy:
        for decay in (None, 40):
            kwargs = {"epsilon_decay_end_count": decay, "epsilon_decay_end_value": 0.05} if decay else {}
            local = py_epsilon_greedy_policy.EpsilonGreedyPolicy(local_greedy, 0.4, random_seed=5, **kwargs)
            remote = py_epsilon_greedy_policy.EpsilonGreedyPolicy(remote_greedy, 0.4, random_seed=5, **kwargs)
            greedy_differs = 0
            for step in _time_steps(1):
                expected, got = local.action(step), remote.action(step)
                assert_same(expected.action, got.action)
                greedy_differs += int(expected.action) != int(local_greedy.action(step).action)
            assert greedy_differs > 0, "the random branch never changed an action: the test shows nothing"


def test_batched_py_policy_of_remote_recurrent_policies_acts_as_of_local_ones(served):
    server, policies = served
    rows = 3
    local_parts = [py_tf_eager_policy.PyTFEagerPolicy(policies["rnn"]) for _ in range(rows)]
    remotes = [RemotePolicy(server.address, "rnn", timeout=30) for _ in range(rows)]
    try:
        local = batched_py_policy.BatchedPyPolicy(local_parts, multithreading=True)
        remote = batched_py_policy.BatchedPyPolicy(remotes, multithreading=True)
        local_state, remote_state = local.get_initial_state(rows), remote.get_initial_state(rows)
        assert_same(local_state, remote_state, {"tf_state"})
        streams = [_time_steps(seed, 25) for seed in range(rows)]
        for t in range(25):
            batch = ts.TimeStep(*[np.stack([np.asarray(getattr(streams[r][t], f)) for r in range(rows)])
                                  for f in ts.TimeStep._fields])
            expected, got = local.action(batch, local_state), remote.action(batch, remote_state)
            assert_same(expected.action, got.action)
            assert_same(expected.state, got.state, {"tf_state"})
            local_state, remote_state = expected.state, got.state
    finally:
        for policy in remotes:
            policy.close()


def test_a_users_wrapper_around_a_remote_policy_answers_as_around_the_local_one(served):
    server, policies = served
    with RemotePolicy(server.address, "greedy", timeout=30) as remote_inner:
        local = ScaledObservation(py_tf_eager_policy.PyTFEagerPolicy(policies["greedy"]), 3.0)
        remote = ScaledObservation(remote_inner, 3.0)
        assert remote.time_step_spec == local.time_step_spec and remote.action_spec == local.action_spec
        actions = []
        for step in _time_steps(2):
            expected, got = local.action(step), remote.action(step)
            assert_same(expected.action, got.action)
            actions.append(int(got.action))
        assert set(actions) == {0, 1}, "both actions taken"
