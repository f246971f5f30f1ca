"""Fixtures of the fault suite: in-process servers and clients cleaned up after each test."""

from __future__ import annotations

import pytest

from tests.support.servers import Servers


@pytest.fixture
def servers():
    """Servers and clients cleaned up after the test (gates opened first)."""
    pool = Servers()
    try:
        yield pool
    finally:
        pool.close()
