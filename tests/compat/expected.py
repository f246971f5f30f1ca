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

_SESSION = "not_applicable: uses PyTFPolicy's session API (session, initialize, save, restore)"

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
        "not_applicable: expects the AttributeError of a PyTFPolicy that has no session",
    # policies/random_py_policy_test.py
    "test_random_py_policy.py::RandomPyPolicyTest::testMasking":
        "not_applicable: needs the tf.Tensor action of the masked path (self.evaluate); PyPolicies return numpy",
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
