"""TF-Agents' own tests with every PyPolicy swapped for a RemotePolicy (see README.md in this folder).

- Sets up what the wheel's test mains would (absl flags, TF-Agents
  multiprocessing), so the tests pass locally under pytest.
- Marks every test here `compat`; applies `expected.EXPECTED` (skip for
  not_applicable and local_failure, strict xfail for divergence).
- Runs each test inside a `swap.Swap`, which stops every server it started
  at the end of the test. With TFA_COMPAT_LOCAL=1 nothing is swapped and only
  local_failure entries apply: the local baseline.
- Prints a per-file summary (local vs remote outcome counts, RemotePolicies built).
"""

from __future__ import annotations

import collections
import os
import pathlib
import shutil
import sys
import tempfile
import threading
import time
import unittest
import unittest.mock

import pytest

HERE = pathlib.Path(__file__).parent
LOCAL = os.environ.get("TFA_COMPAT_LOCAL", "") not in ("", "0")

# reverb_utils_test imports the `mock` backport; the standard library has the same API.
sys.modules.setdefault("mock", unittest.mock)

from absl import flags
from tf_agents.system import multiprocessing as tfa_multiprocessing

from tests.compat import expected
from tests.compat.swap import Swap

_TMPDIR = tempfile.mkdtemp(prefix="tfa-compat-")
# Warnings TensorFlow and TF-Agents raise in their own code, the same without the swap (SyntaxWarning:
# code autograph generates and compiles while a test runs).
_QUIET = ("ignore:::tensorflow", "ignore:::tf_agents", "ignore::SyntaxWarning")


def pytest_configure(config):
    # What absltest.main and tf_agents' handle_test_main do before running tests.
    if not flags.FLAGS.is_parsed():
        flags.FLAGS([sys.argv[0], f"--test_tmpdir={_TMPDIR}"], known_only=True)
    if not tfa_multiprocessing.multiprocessing_core.initialized():
        tfa_multiprocessing.enable_interactive_mode()


def pytest_unconfigure(config):
    shutil.rmtree(_TMPDIR, ignore_errors=True)


def _compat_id(item) -> str | None:
    """'test_file.py::Class::test' for the TF-Agents tests in this folder, else None."""
    cls = getattr(item, "cls", None)
    if pathlib.Path(str(item.path)).parent != HERE or cls is None or not issubclass(cls, unittest.TestCase):
        return None
    return item.nodeid.split("/")[-1]


def pytest_collection_modifyitems(config, items):
    kept, deselected = [], []
    for item in items:
        test_id = _compat_id(item)
        if test_id is None:
            kept.append(item)
            continue
        if item.name == "test_session":  # tf.test.TestCase's deprecated helper, not a test
            deselected.append(item)
            continue
        kept.append(item)
        item.add_marker(pytest.mark.compat)
        for quiet in _QUIET:
            item.add_marker(pytest.mark.filterwarnings(quiet))
        entry = expected.EXPECTED.get(test_id)
        if entry is None:
            continue
        kind, detail = expected.parse(entry)
        if kind == "local_failure":
            item.add_marker(pytest.mark.skip(reason=f"fails without the swap too: {detail}"))
        elif LOCAL:
            continue
        elif kind == "not_applicable":
            item.add_marker(pytest.mark.skip(reason=f"not applicable: {detail}"))
        else:
            summary = expected.FAMILIES[detail][0]
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"divergence {detail}: {summary}"))
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


# stub file -> outcome -> count, for the summary.
_RESULTS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


@pytest.fixture(autouse=True)
def remote_policies(request):
    """Every PyPolicy the test builds (setUp included) is a RemotePolicy; servers stop at the end."""
    if _compat_id(request.node) is None or LOCAL:
        yield None
        return
    before = set(threading.enumerate())
    with Swap() as swap:
        yield swap
    if swap.remotes:
        _RESULTS[pathlib.Path(str(request.node.path)).name]["remote"] += 1
    _assert_threads_end(before)


def _assert_threads_end(before: set[threading.Thread], wait: float = 5.0) -> None:
    """Every server or client thread started during the test ends within `wait` seconds of its end."""
    deadline = time.monotonic() + wait
    while True:
        left = [t for t in threading.enumerate() if t not in before and _ours(t)]
        if not left or time.monotonic() > deadline:
            break
        left[0].join(timeout=0.1)
    assert not left, f"threads left running after the test: {sorted(t.name for t in left)}"


def _ours(thread: threading.Thread) -> bool:
    """Threads of the servers, schedulers, RemotePolicy streams and their gRPC calls.

    Not gRPC's one process-wide poller, nor the threads TF-Agents' tests leave
    (thread pools of batched environments and policies).
    """
    target = getattr(thread, "_target", None)  # threading keeps the target here
    module = getattr(target, "__module__", None) or ""
    return (thread.name.startswith(("policy-server", "inference_"))
            or module.startswith(("policy_client", "policy_server", "grpc._cython")))


def pytest_runtest_logreport(report):
    name = report.nodeid.split("::")[0].split("/")[-1]
    if not report.nodeid.startswith("tests/compat/") or name == "test_expected.py":
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _RESULTS[name][_outcome(report)] += 1
    elif report.when == "teardown" and report.failed:
        _RESULTS[name]["error"] += 1


def _outcome(report) -> str:
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.skipped and isinstance(report.longrepr, tuple) and "not applicable:" in report.longrepr[2]:
        return "n/a"
    return report.outcome


def pytest_terminal_summary(terminalreporter):
    if not _RESULTS:
        return
    columns = ["passed", "failed", "skipped", "n/a", "xfailed", "xpassed", "error", "remote"]
    mode = "local baseline, TFA_COMPAT_LOCAL=1" if LOCAL else "every PyPolicy served remotely"
    terminalreporter.section(f"TF-Agents compatibility suite ({mode})")
    terminalreporter.write_line(f"{'file':54}" + "".join(f"{c:>8}" for c in columns))
    for name in sorted(_RESULTS):
        terminalreporter.write_line(f"{name:54}" + "".join(f"{_RESULTS[name][c]:>8}" for c in columns))
