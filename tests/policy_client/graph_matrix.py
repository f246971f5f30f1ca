"""The exact matrix on the graph backend (run in a process of its own by test_equivalence_graph.py: Keras models
built in a TF1 graph invalidate the Keras models other tests built outside one): every TF case of the matrix built in a TF1 graph, as a `PyTFPolicy`
with its session (what TF-Agents' graph-mode code runs), against the same policy served by GraphBackend.

The served backend builds its own placeholders (a None batch dimension) in the policy's graph and runs them
in the local policy's session, so both read the same variables. Answers are compared bit for bit, leaf
types included (docs/exactly-like-local.md's differences), unbatched and batched, stochastic cases too: in
a graph, a sampling op draws the same values for the same call sequence. A case that cannot be built in a
graph is listed with the error TF raises, and a test keeps that list true.
"""

from __future__ import annotations

import json
import re
import sys
import traceback

import tensorflow as tf
from tf_agents.policies import py_tf_policy

from policy_client import RemotePolicy
from policy_server.backends.graph import GraphBackend
from policy_server.server import BackgroundServer
from tests.support import equivalence_matrix_cases as cases
from tests.support.same import assert_same

TF_CASES = [c for c in cases.CASES if not c.py]
# Cases whose builder needs eager execution (case -> the error it raises in a graph).
NOT_IN_A_GRAPH = {"sac_collect": "numpy\\(\\) is only available when eager execution is enabled"}
STEPS, BATCH = 6, 3


def _in_graph(case):
    """(graph, the policy built in it, local PyTFPolicies by batch size sharing one session)."""
    graph = tf.Graph()
    with graph.as_default():
        policy = case.build()
        session = tf.compat.v1.Session(graph=graph)
        locals_ = {}
        for batch_size in (None, BATCH):
            local = py_tf_policy.PyTFPolicy(policy)
            local.session = session
            local.initialize(batch_size)
            locals_[batch_size] = local
    return graph, policy, locals_


def check(case) -> None:
    """Raises AssertionError unless the graph backend answers as the local PyTFPolicy for `case`."""
    if case.name in NOT_IN_A_GRAPH:
        try:
            _in_graph(case)
        except Exception as e:  # pylint: disable=broad-except
            assert re.search(NOT_IN_A_GRAPH[case.name], str(e)), f"another error than the listed one: {e}"
            return
        raise AssertionError(f"{case.name} builds in a graph now: remove it from NOT_IN_A_GRAPH")
    graph, policy, locals_ = _in_graph(case)
    session = locals_[None].session
    with BackgroundServer({case.name: GraphBackend(locals_[None], graph, session=session)}) as server, \
            RemotePolicy(server.address, case.name, timeout=60) as remote:
        for name in ("time_step_spec", "action_spec", "policy_state_spec", "info_spec", "policy_step_spec",
                     "trajectory_spec", "collect_data_spec"):
            assert getattr(remote, name) == getattr(locals_[None], name), name
        for batch_size, local in locals_.items():
            stateful = bool(remote.policy_state_spec)
            with session.as_default():
                local_state = local.get_initial_state(batch_size) if stateful else ()
            remote_state = remote.get_initial_state(batch_size) if stateful else ()
            assert_same(local_state, remote_state)
            allow = {"tf_batched_step"} if batch_size else set()
            for time_step in cases.time_step_stream(local.time_step_spec, batch_size, 7, STEPS):
                with session.as_default():
                    expected = local.action(time_step, local_state)
                got = remote.action(time_step, remote_state)
                if case.seeded:  # the served sampling op is another op than the local one's: its own draws
                    for value, spec in zip(tf.nest.flatten(got.action), tf.nest.flatten(remote.action_spec)):
                        outer = () if batch_size is None else (batch_size,)
                        assert value.dtype == spec.dtype and value.shape == outer + spec.shape
                    assert_same(expected.state, got.state, allow)  # an RNN's state follows the observations
                else:
                    for part in ("action", "state", "info"):
                        assert_same(getattr(expected, part), getattr(got, part), allow)
                local_state, remote_state = expected.state, got.state


def main() -> int:
    """Checks every TF case; prints {case: "ok" or the failure} as JSON on the last line."""
    outcomes = {}
    for case in TF_CASES:
        try:
            check(case)
            outcomes[case.name] = "ok"
        except Exception:  # pylint: disable=broad-except  # reported per case
            outcomes[case.name] = traceback.format_exc()[-3000:]
    print(json.dumps(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
