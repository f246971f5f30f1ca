"""Tests of the compatibility suite that do not pass with the swap, and why.

EXPECTED maps a test id ('test_file.py::Class::test', the pytest node id
under tests/compat/) to one of:

  "not_applicable: <reason>"  the test depends on the local object itself
                              (mock counters, graph sessions, saved function
                              attributes, object identity, outputs that are
                              not numpy); skipped, for good.
  "divergence: <family>"      RemotePolicy behaves differently through the
                              public API; a strict xfail: once the product is
                              fixed the test XPASSes, which fails the run, and
                              the entry must be removed.
  "local_failure: <reason>"   fails without the swap too; skipped in both modes.

FAMILIES gives each divergence family's root cause and a one-line repro
(README.md in this folder has the analysis).
"""

from __future__ import annotations

# family -> (what diverges, one-line repro). README.md in this folder has the analysis.
FAMILIES: dict[str, tuple[str, str]] = {
}

_SESSION = ("not_applicable: assigns a tf.compat.v1.Session to the policy object, then calls its initialize, "
            "save and restore, and runs the TF policy's variables in that session: a remote policy has no "
            "client-side session or graph (the server's graph backend holds them)")

EXPECTED: dict[str, str] = {
    # policies/batched_py_policy_test.py
    **{f"test_batched_py_policy.py::BatchedPyPolicyTest::test_action{i}":
       "not_applicable: its time step is an object ndarray of TimeSteps, not data" for i in range(4)},
    # drivers/py_driver_test.py
    "test_py_driver.py::PyDriverTest::testPolicyStateReset":
        "not_applicable: reads the mock's call counter get_initial_state_call_count",
    # policies/py_tf_policy_test.py, eager and graph mode
    **{f"{stub}::PyTFPolicyTest::{test}": _SESSION
       for stub in ("test_py_tf_policy.py", "test_py_tf_policy_graph.py")
       for test in ("testSaveRestore0", "testSaveRestore1", "testSaveWrappedPolicyRestoreOuterCheckAssertConsumed")},
    "test_py_tf_policy_graph.py::PyTFPolicyTest::testRaiseValueErrorWithoutSession":
        "not_applicable: expects the AttributeError of a PyTFPolicy that has no session; a served one runs in "
        "the server's session (GraphBackend opens one), as it must to answer",
    # policies/py_epsilon_greedy_policy_test.py: the wrapper over two MagicMock policies
    **{f"test_py_epsilon_greedy_policy.py::EpsilonGreedyPolicyTest::{test}":
       "not_applicable: passes a MagicMock as the time step (nothing a client can send: RemotePolicy raises "
       "NotANestError, a ValueError, TypeError and AttributeError) and asserts on the mock policies' calls"
       for test in ("testActionAlwaysGreedy", "testActionAlwaysRandom", "testActionSelection",
                    "testActionSelectionWithEpsilonDecay")},
    "test_py_epsilon_greedy_policy.py::EpsilonGreedyPolicyTest::testCtorAutoRandomPolicy":
        "not_applicable: reads the wrapper's private attribute _random_policy",
    "test_py_epsilon_greedy_policy.py::EpsilonGreedyPolicyTest::testZeroState":
        "not_applicable: its MagicMock policies return a MagicMock as the initial state (nothing a server can "
        "send) and it asserts on the mocks' calls",
    # policies/random_py_policy_test.py
    "test_random_py_policy.py::RandomPyPolicyTest::testMasking":
        "not_applicable: calls self.evaluate on the action, which takes tensors only: locally RandomPyPolicy's "
        "masked path returns a tf.Tensor, remotely the numpy array of its value (a documented leaf-type "
        "difference)",
    # policies/scripted_py_policy_test.py
    **{f"test_scripted_py_policy.py::ScriptedPyPolicyTest::{test}":
       "not_applicable: passes by object identity (list == of the script's own arrays)"
       for test in ("testFollowsScript", "testEpisodeLength")},
}


def parse(entry: str) -> tuple[str, str]:
    """("not_applicable" | "divergence" | "local_failure", detail) of an EXPECTED value."""
    kind, _, detail = entry.partition(":")
    kind, detail = kind.strip(), detail.strip()
    if kind not in ("not_applicable", "divergence", "local_failure") or not detail:
        raise ValueError(f"bad expected entry {entry!r}")
    if kind == "divergence" and detail not in FAMILIES:
        raise ValueError(f"unknown divergence family {detail!r}")
    return kind, detail
