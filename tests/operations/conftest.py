"""Fixtures of the operations tests: servers cleaned up after each test, no token from the environment."""

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


@pytest.fixture(autouse=True)
def no_token_in_environment(monkeypatch):
    """These tests say which token each client sends: none comes from the environment."""
    for name in ("TFA_POLICY_TOKEN", "TFA_POLICY_TOKEN_FILE", "TFA_POLICY_SERVER_TOKENS"):
        monkeypatch.delenv(name, raising=False)
