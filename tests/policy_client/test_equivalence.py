"""RemotePolicy behaves exactly like the local policy: specs, actions, states, driver runs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.drivers import py_driver
from tf_agents.policies import py_tf_eager_policy
from tf_agents.trajectories import policy_step

from policy_client import RemotePolicy
from policy_server.server import BackgroundServer
from policy_server.backends.eager import EagerBackend
from tests.support.equivalence_cases import CASES, Case, sample_time_step

SPEC_PROPERTIES = ["time_step_spec", "action_spec", "policy_state_spec", "info_spec",
                   "policy_step_spec", "trajectory_spec", "collect_data_spec"]
BATCH = 5


def assert_nests_close(local, remote, ulps: int = 0) -> None:
    """Same structure, dtypes and shapes, and the same values: bit for bit, or within `ulps` units in the last
    place (DDPG's actor: TF's graph optimizer fuses its tanh output layer on the server, see
    test_equivalence_matrix.ULPS and docs/exactly-like-local.md)."""
    tf.nest.assert_same_structure(local, remote)
    for a, b in zip(tf.nest.flatten(local), tf.nest.flatten(remote)):
        a = np.asarray(a)
        assert isinstance(b, np.ndarray), f"remote leaf is {type(b).__name__}, not an ndarray"
        assert a.dtype == b.dtype and a.shape == b.shape, f"{a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if np.issubdtype(a.dtype, np.floating):
            if ulps:
                np.testing.assert_array_max_ulp(b, a, maxulp=ulps)
            else:
                np.testing.assert_array_equal(b, a)
        else:
            np.testing.assert_array_equal(b, a)


@pytest.fixture(scope="module")
def policies():
    """name -> TF policy for every case."""
    return {case.name: case.build() for case in CASES}


@pytest.fixture(scope="module")
def server(policies):
    with BackgroundServer({name: EagerBackend(p) for name, p in policies.items()}) as srv:
        yield srv


@pytest.fixture(scope="module")
def remotes(server, policies):
    made = {name: RemotePolicy(server.address, name) for name in policies}
    yield made
    for remote in made.values():
        remote.close()


def _locals(tf_policy):
    """(unbatched, batched) local py policies, as a TF-Agents user builds them."""
    return (py_tf_eager_policy.PyTFEagerPolicy(tf_policy, use_tf_function=False),
            py_tf_eager_policy.PyTFEagerPolicy(tf_policy, use_tf_function=False, batch_time_steps=False))


def _act(policy, time_step, state, seed):
    if seed is None:
        return policy.action(time_step, state)
    tf.random.set_seed(seed)
    return policy.action(time_step, state, seed=seed)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_specs_equal(case: Case, policies, remotes):
    local, _ = _locals(policies[case.name])
    remote = remotes[case.name]
    for prop in SPEC_PROPERTIES:
        assert getattr(remote, prop) == getattr(local, prop), prop
        tf.nest.assert_same_structure(getattr(remote, prop), getattr(local, prop))


@pytest.mark.parametrize("batched", [False, True], ids=["unbatched", "batched"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_actions_equal(case: Case, batched: bool, policies, remotes):
    unbatched_local, batched_local = _locals(policies[case.name])
    local = batched_local if batched else unbatched_local
    remote = remotes[case.name]
    batch_size = BATCH if batched else None
    # PyDriver's convention: get_initial_state(batch size or 1).
    local_state = local.get_initial_state(batch_size or 1)
    remote_state = remote.get_initial_state(batch_size or 1)
    assert_nests_close(local_state, remote_state)
    seed = None if case.greedy else 1234
    for step in range(3):
        time_step = sample_time_step(local.time_step_spec, batch_size, seed=step)
        expected = _act(local, time_step, local_state, seed)
        got = _act(remote, time_step, remote_state, seed)
        assert type(got) is policy_step.PolicyStep
        assert_nests_close(expected, got, ulps=1 if case.name.startswith("ddpg") else 0)
        local_state, remote_state = expected.state, got.state


@pytest.mark.parametrize("case", [c for c in CASES if not c.greedy], ids=[c.name for c in CASES if not c.greedy])
def test_seeded_calls_repeat(case: Case, remotes):
    remote = remotes[case.name]
    state = remote.get_initial_state(BATCH)
    time_step = sample_time_step(remote.time_step_spec, BATCH, seed=99)
    first = remote.action(time_step, state, seed=42)
    for _ in range(3):
        assert_nests_close(first, remote.action(time_step, state, seed=42))


@pytest.mark.parametrize("case", [c for c in CASES if c.greedy], ids=[c.name for c in CASES if c.greedy])
def test_driver_trajectories_equal(case: Case, policies, remotes):
    local, _ = _locals(policies[case.name])
    runs = []
    for policy in (local, remotes[case.name]):
        env, trajectories = case.make_env(7), []
        driver = py_driver.PyDriver(env, policy, observers=[trajectories.append], max_episodes=3)
        driver.run(env.reset(), policy.get_initial_state(1) if policy.policy_state_spec else ())
        runs.append(trajectories)
    assert len(runs[0]) == len(runs[1]) > 3
    for expected, got in zip(*runs):
        assert_nests_close(expected, got, ulps=1 if case.name.startswith("ddpg") else 0)


RECURRENT = [c for c in CASES if c.name.startswith("rnn")]


@pytest.mark.parametrize("batch_size", [None, 0, 1, BATCH])
@pytest.mark.parametrize("case", RECURRENT, ids=[c.name for c in RECURRENT])
def test_initial_state_is_the_local_one_for_every_batch_size(case: Case, batch_size, policies, remotes):
    """PyTFEagerPolicy.get_initial_state(None) has zero rows (it asks for 0): so does the remote one."""
    local, _ = _locals(policies[case.name])
    assert_nests_close(local.get_initial_state(batch_size), remotes[case.name].get_initial_state(batch_size))


STOCHASTIC = "log_prob_info"


def test_a_seeded_call_leaves_the_global_seed_and_the_callers_rng_alone(remotes):
    from tensorflow.python.eager import context  # pylint: disable=import-outside-toplevel,g-direct-tensorflow-import

    remote = remotes[STOCHASTIC]
    seed_before, rng_before = context.context()._seed, np.random.get_state()  # pylint: disable=protected-access
    remote.action(sample_time_step(remote.time_step_spec, BATCH, seed=1), seed=42)
    assert context.context()._seed == seed_before  # pylint: disable=protected-access
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), rng_before))


def test_unseeded_calls_after_a_seeded_one_are_not_replays(remotes):
    """Were the global seed left set, the unseeded draws after each seeded call would repeat."""
    remote = remotes[STOCHASTIC]
    time_step = sample_time_step(remote.time_step_spec, 16, seed=2)
    runs = []
    for _ in range(2):
        seeded = remote.action(time_step, seed=7).action
        runs.append(np.stack([remote.action(time_step).action for _ in range(4)]))
        np.testing.assert_array_equal(seeded, remote.action(time_step, seed=7).action)
    assert not np.array_equal(runs[0], runs[1])
