"""expected.py stays in step with the suite: every entry names a collected test and parses."""

import importlib

import pytest

from tests.compat import expected


@pytest.mark.parametrize("test_id", sorted(expected.EXPECTED))
def test_entry_names_a_test_and_parses(test_id):
    stub, class_name, method = test_id.split("::")
    module = importlib.import_module(f"tests.compat.{stub.removesuffix('.py')}")
    assert hasattr(getattr(module, class_name), method), f"{test_id} is not a test of the suite"
    expected.parse(expected.EXPECTED[test_id])
