"""Fixtures of the security tests: certificates made at run time, token files."""

from __future__ import annotations

import secrets

import pytest

from policy_server.security import TokenAuth
from tests.security.certs import Certs, make_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certs:
    """A CA, a server certificate (localhost, 127.0.0.1, ::1, policy.test), client certificates."""
    return make_certs(tmp_path_factory.mktemp("certs"))


class Tokens:
    """One actor and one learner token, each also in a file (mode 600)."""

    def __init__(self, directory):
        self.actor = secrets.token_urlsafe(32)
        self.learner = secrets.token_urlsafe(32)
        self.actor_file = directory / "actor.token"
        self.learner_file = directory / "learner.token"
        self.server_file = directory / "tokens"
        for path, text in ((self.actor_file, self.actor + "\n"), (self.learner_file, self.learner + "\n"),
                           (self.server_file, f"# role token\nactor {self.actor}\nlearner {self.learner}\n")):
            path.write_text(text)
            path.chmod(0o600)

    @property
    def all(self) -> tuple[str, str]:
        return self.actor, self.learner

    def auth(self) -> TokenAuth:
        return TokenAuth({"actor": self.actor, "learner": self.learner})


@pytest.fixture
def tokens(tmp_path) -> Tokens:
    return Tokens(tmp_path)
