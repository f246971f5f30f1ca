"""Every "not applicable" reason in expected.py is true of its test: what the reason says the test does is in
the test's source (its method, and the class's setUp). A reason no rule here can check fails too, so that a
new entry comes with its evidence."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

from tests.compat import expected

# (what a reason says, what the test's source must then hold).
EVIDENCE = [
    (r"MagicMock as the time step", r"time_step = mock\.MagicMock\(\)"),
    (r"asserts on the mock", r"\.assert_called|call_count"),
    (r"MagicMock policies", r"mock\.MagicMock\(\)"),
    (r"private attribute (\w+)", r"\.{0}\b"),
    (r"assigns a tf\.compat\.v1\.Session to the policy object", r"\.session = tf\.compat\.v1\.Session\("),
    (r"calls its initialize, save and restore", r"\.initialize\([\s\S]*\.save\([\s\S]*\.restore\("),
    (r"AttributeError of a PyTFPolicy that has no session", r"assertRaises\w*\(\s*AttributeError,\s*\"No TensorFlow session"),
    (r"self\.evaluate on the action", r"self\.evaluate\(action_step\.action\)"),
    (r"object ndarray of TimeSteps", r"dtype=object"),
    (r"call counter (\w+)", r"\b{0}\b"),
    (r"object identity \(list ==", r"assertEqual\(action_script"),
]


def _source(test_id: str) -> str:
    stub, class_name, method = test_id.split("::")
    module = importlib.import_module(f"tests.compat.{stub.removesuffix('.py')}")
    cls = getattr(module, class_name)
    name = re.sub(r"\d+$", "", method) if not hasattr(cls, method) or method not in vars(cls) else method
    for klass in cls.__mro__:  # parameterized tests are generated: their body is the base method's
        body = vars(klass).get(method) or vars(klass).get(name)
        if body is not None:
            break
    setup = vars(cls).get("setUp")
    return inspect.getsource(inspect.unwrap(body)) + (inspect.getsource(setup) if setup else "")


NOT_APPLICABLE = sorted(t for t, e in expected.EXPECTED.items() if expected.parse(e)[0] == "not_applicable")


@pytest.mark.parametrize("test_id", NOT_APPLICABLE)
def test_a_not_applicable_reason_is_true_of_its_test(test_id):
    reason = expected.parse(expected.EXPECTED[test_id])[1]
    source = _source(test_id)
    checked = 0
    for said, holds in EVIDENCE:
        match = re.search(said, reason)
        if match:
            pattern = holds.format(*match.groups())
            assert re.search(pattern, source), f"{test_id}: the reason says {match.group(0)!r}, the source lacks " \
                                               f"/{pattern}/"
            checked += 1
    assert checked, f"{test_id}: no rule checks the reason {reason!r}; add its evidence to EVIDENCE"
