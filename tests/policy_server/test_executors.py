"""Which TensorFlow executor runs a policy's function (policy_server/backends/executors.py).

Both executors give the same answers; the trial alternates them over the
first calls and keeps the one with less time per row; a graph the
single-threaded executor refuses runs on the default one; the environment
variable forces either.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.eager import context  # pylint: disable=g-direct-tensorflow-import

from examples.cartpole import cartpole_q_policy
from policy_server.backends import executors
from policy_server.backends.eager import EagerBackend, FlatCall, batched_signature
from tests.support import equivalence_matrix_cases as cases
from tf_agents.policies import random_tf_policy


def _executor() -> str:
    return context.context().function_call_options.executor_type or ""


def _leaves(rows: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.ones(rows, np.int32), np.zeros(rows, np.float32), np.ones(rows, np.float32),
            rng.normal(size=(rows, 4)).astype(np.float32)]


@pytest.mark.parametrize("forced", ["default", "single_threaded"])
def test_both_executors_give_the_same_floats_and_actions(monkeypatch, forced):
    monkeypatch.setenv(executors.ENV, forced)
    policy = cartpole_q_policy(seed=3)
    network = policy.wrapped_policy._q_network  # pylint: disable=protected-access
    signature = (batched_signature(policy.time_step_spec), batched_signature(policy.policy_state_spec))
    q_values = FlatCall(tf.function(lambda time_step, _: network(time_step.observation)[0],
                                    input_signature=signature, autograph=False), *signature)
    backend = EagerBackend(policy)
    for rows in (1, 5, 16):
        leaves = _leaves(rows, rows)
        local = network(tf.constant(leaves[3]))[0].numpy()
        np.testing.assert_array_equal(q_values.call_flat(leaves).numpy(), local)
        np.testing.assert_array_equal(backend.action_flat(leaves).action, np.argmax(local, axis=1))
    assert q_values.executor.chosen == backend._action_fn.executor.chosen == executors._CHOICES[forced]  # pylint: disable=protected-access


def test_the_trial_alternates_then_keeps_the_faster(monkeypatch, caplog):
    monkeypatch.delenv(executors.ENV, raising=False)
    caplog.set_level(logging.INFO, logger=executors.__name__)
    clock = [0.0]
    trial = executors.ExecutorTrial("probe", calls=4, skip=1, clock=lambda: clock[0])
    seen = []

    def step() -> str:  # the single-threaded executor takes half the time per call
        seen.append(_executor())
        clock[0] += 1.0 if _executor() == executors.SINGLE_THREADED else 2.0
        return _executor()

    while trial.chosen is None:
        trial.call(step, rows=8)
    assert seen[:4] == [executors.SINGLE_THREADED, executors.DEFAULT] * 2 and len(seen) == 10
    assert trial.chosen == executors.SINGLE_THREADED and trial.call(step, 8) == executors.SINGLE_THREADED
    assert _executor() == executors.DEFAULT  # the thread's own setting is back after each call
    assert "probe runs on TensorFlow's single-threaded executor (125000.0 us per row" in caplog.text


def test_the_default_is_kept_without_a_clear_gain(monkeypatch):
    monkeypatch.delenv(executors.ENV, raising=False)
    clock = [0.0]
    trial = executors.ExecutorTrial("probe", calls=3, skip=0, clock=lambda: clock[0])

    def step() -> None:  # 3% faster: within the margin
        clock[0] += 0.97 if _executor() == executors.SINGLE_THREADED else 1.0

    while trial.chosen is None:
        trial.call(step, rows=1)
    assert trial.chosen == executors.DEFAULT


def test_a_graph_the_single_threaded_executor_refuses_runs_on_the_default(monkeypatch, caplog):
    monkeypatch.delenv(executors.ENV, raising=False)
    caplog.set_level(logging.INFO, logger=executors.__name__)
    trial = executors.ExecutorTrial("probe")
    calls = []

    def step() -> str:
        calls.append(_executor())
        if _executor() == executors.SINGLE_THREADED:
            raise tf.errors.FailedPreconditionError(None, None, "Graph execution error:\n\nSingle-threaded "
                                                    "executor does not support low level control flow, but saw")
        return "answer"

    assert trial.call(step, rows=1) == "answer" and calls == [executors.SINGLE_THREADED, executors.DEFAULT]
    assert trial.chosen == executors.DEFAULT and "cannot run it" in caplog.text
    again = executors.ExecutorTrial("again")
    assert again.call(lambda: "fine", 1) == "fine"  # the single-threaded turn
    with pytest.raises(tf.errors.UnimplementedError):  # on the default executor, the error is the caller's
        again.call(lambda: _raise(tf.errors.UnimplementedError(None, None, "the policy's own")), 1)
    with pytest.raises(tf.errors.InvalidArgumentError):  # and on the single-threaded one, any other error
        again.call(lambda: _raise(tf.errors.InvalidArgumentError(None, None, "the policy's own")), 1)
    assert again.chosen is None


def test_a_real_v1_control_flow_graph_falls_back(monkeypatch, caplog):
    """LinUCB's graph has v1 while loops: the single-threaded executor refuses it, and it is served all the same."""
    monkeypatch.setenv(executors.ENV, "single_threaded")
    caplog.set_level(logging.INFO, logger=executors.__name__)
    policy = cases._lin_ucb()  # pylint: disable=protected-access
    backend = EagerBackend(policy)
    observation = np.random.default_rng(0).normal(size=(3,) + cases.BANDIT_OBS.shape).astype(np.float32)
    leaves = [np.ones(3, np.int32), np.zeros(3, np.float32), np.ones(3, np.float32), observation]
    served = backend.action_flat(leaves)
    time_step = tf.nest.pack_sequence_as(policy.time_step_spec, [tf.constant(x) for x in leaves])
    np.testing.assert_array_equal(served.action, policy.action(time_step).action.numpy())
    assert backend._action_fn.executor.chosen == executors.DEFAULT  # pylint: disable=protected-access
    assert "cannot run it (Single-threaded executor does not support low level control flow" in caplog.text


def _raise(error: Exception) -> None:
    raise error


def test_a_random_policy_runs_under_the_trial(monkeypatch):
    """A stochastic policy's draws stay in bounds and vary on both executors (unseeded calls)."""
    monkeypatch.delenv(executors.ENV, raising=False)
    policy = cartpole_q_policy()
    backend = EagerBackend(random_tf_policy.RandomTFPolicy(policy.time_step_spec, policy.action_spec))
    actions = np.concatenate([backend.action_flat(_leaves(4, i)).action for i in range(40)])
    assert set(actions.tolist()) == {0, 1}


def test_a_bad_setting_is_refused(monkeypatch):
    monkeypatch.setenv(executors.ENV, "fastest")
    with pytest.raises(ValueError, match="TFA_POLICY_TF_EXECUTOR must be auto, default or single_threaded"):
        executors.ExecutorTrial()
