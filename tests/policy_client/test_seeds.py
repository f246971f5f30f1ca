"""Seeds without side effects, on every backend that takes them (issue 18, item 2).

- Two actors of one sampling policy, unseeded, draw independently (as two
  local policies would), whether their calls alternate or run at once.
- A seeded call answers what the local policy answers for that seed, and
  leaves the process-global TF seed, the caller's numpy RNG and Python's
  `random` as they were (the servers here run in the caller's process).
- Unseeded calls after a seeded one are not a replay of the ones after the
  previous seeded call.

Backends: a TF policy (EagerBackend; the local one is PyTFEagerPolicy), and a
Python policy whose `_action` takes a seed (PyPolicyBackend, called as it is).
SavedModel and graph policies refuse seeds, as locally (test_backends.py).
"""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import py_policy, py_tf_eager_policy
from tf_agents.specs import array_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

from policy_client import RemotePolicy
from policy_server.server import BackgroundServer
from tests.support.equivalence_cases import CASES, sample_time_step

STEPS = 50
BY_NAME = {c.name: c for c in CASES}
PY_TIME_STEP_SPEC = ts.time_step_spec(array_spec.ArraySpec((2,), np.float32))
PY_ACTION_SPEC = array_spec.BoundedArraySpec((3,), np.float32, -1, 1)


class SeededPyPolicy(py_policy.PyPolicy):
    """A Python policy that takes a per-call seed: seeded, a fresh generator; unseeded, its own."""

    def __init__(self):
        super().__init__(PY_TIME_STEP_SPEC, PY_ACTION_SPEC)
        self._rng = np.random.default_rng()

    def _action(self, time_step, policy_state, seed=None):
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        return policy_step.PolicyStep(rng.uniform(-1, 1, size=(3,)).astype(np.float32), (), ())


def _eager():
    """(hosted policy, a fresh local one, time step): SAC-style actor, Normal actions (no ties)."""
    tf_policy = BY_NAME["sac_actor_stochastic"].build()
    return tf_policy, lambda: py_tf_eager_policy.PyTFEagerPolicy(tf_policy), \
        sample_time_step(tf_policy.time_step_spec, None, seed=3)


def _py():
    return SeededPyPolicy(), SeededPyPolicy, ts.restart(np.zeros(2, np.float32))


BACKENDS = {"eager": _eager, "py": _py}


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def served(request):
    """(remote, second remote of the same policy, make_local, time step, server) for a backend."""
    hosted, make_local, time_step = BACKENDS[request.param]()
    with BackgroundServer({"p": hosted}) as server, RemotePolicy(server.address, "p") as first, \
            RemotePolicy(server.address, "p") as second:
        yield first, second, make_local, time_step


def _actions(policy, time_step, steps=STEPS):
    """`steps` unseeded actions, stacked."""
    return np.stack([np.asarray(policy.action(time_step).action) for _ in range(steps)])


def test_two_actors_sample_independently(served):
    first, second, make_local, time_step = served
    local_a, local_b = make_local(), make_local()
    assert not np.array_equal(_actions(local_a, time_step), _actions(local_b, time_step)), "local baseline"
    a, b = [], []
    for _ in range(STEPS):  # alternating calls
        a.append(first.action(time_step).action)
        b.append(second.action(time_step).action)
    assert not np.array_equal(np.stack(a), np.stack(b))
    assert len({np.asarray(x).tobytes() for x in a + b}) == 2 * STEPS, "no draw repeats"


def test_two_actors_sample_independently_at_once(served):
    """Concurrent calls share batches on the server: each row still draws its own sample."""
    first, second, _, time_step = served
    runs = {}
    threads = [threading.Thread(target=lambda p=p, k=k: runs.__setitem__(k, _actions(p, time_step)))
               for k, p in (("a", first), ("b", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not np.array_equal(runs["a"], runs["b"])
    assert len({row.tobytes() for run in runs.values() for row in run}) == 2 * STEPS


def test_a_seeded_call_answers_the_local_seeded_answer(served):
    first, second, make_local, time_step = served
    local = make_local()
    tf.random.set_seed(11)
    expected = local.action(time_step, seed=11).action
    for remote in (first, second, first):
        tf.random.set_seed(11)
        np.testing.assert_array_equal(remote.action(time_step, seed=11).action, expected)


def test_a_seeded_call_leaves_the_global_seed_and_the_callers_rngs_alone(served):
    from tensorflow.python.eager import context  # pylint: disable=import-outside-toplevel,g-direct-tensorflow-import

    first, _, _, time_step = served
    tf.random.set_seed(1234)
    np.random.seed(99)
    random.seed(7)
    seed_before, numpy_before, python_before = context.context()._seed, np.random.get_state(), random.getstate()  # pylint: disable=protected-access
    first.action(time_step, seed=42)
    assert context.context()._seed == seed_before == 1234  # pylint: disable=protected-access
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_before))
    assert random.getstate() == python_before
    # The global TF stream goes on where it was: the same draws as without the seeded call.
    tf.random.set_seed(1234)
    without = tf.random.uniform((4,)).numpy()
    tf.random.set_seed(1234)
    first.action(time_step, seed=42)
    np.testing.assert_array_equal(tf.random.uniform((4,)).numpy(), without)


def test_unseeded_calls_after_a_seeded_one_are_not_replays(served):
    first, _, _, time_step = served
    runs, seeded = [], []
    for _ in range(2):
        seeded.append(first.action(time_step, seed=7).action)
        runs.append(_actions(first, time_step, steps=4))
    np.testing.assert_array_equal(seeded[0], seeded[1])
    assert not np.array_equal(runs[0], runs[1])


def test_unseeded_remote_calls_do_not_follow_the_callers_global_seed():
    """A documented difference: locally, tf.random.set_seed(s) then unseeded calls repeat the same
    draws; the server's unseeded draws are its own, even in-process (pass seed= to reproduce)."""
    hosted, make_local, time_step = _eager()
    local = make_local()
    with BackgroundServer({"p": hosted}) as server, RemotePolicy(server.address, "p") as remote:
        for policy, replays in ((local, True), (remote, False)):
            runs = []
            for _ in range(2):
                tf.random.set_seed(5)
                runs.append(_actions(policy, time_step, steps=3))
            assert np.array_equal(runs[0], runs[1]) == replays, type(policy).__name__
