"""Shared fixtures: real servers on free loopback ports, and test policies."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from policy_server.config import BatchingConfig  # noqa: E402
from policy_server.server import BackgroundServer  # noqa: E402
from tests.support.fakes import EchoBackend  # noqa: E402
from tests.support.servers import Servers  # noqa: E402


@pytest.fixture
def echo_backend() -> EchoBackend:
    return EchoBackend()


@pytest.fixture
def echo_server(echo_backend):
    """A server hosting one EchoBackend as 'echo' on a free 127.0.0.1 port."""
    with BackgroundServer({"echo": echo_backend},
                          batching=BatchingConfig(max_batch_size=64, max_batch_delay=0.002)) as server:
        yield server


@pytest.fixture(scope="module")
def cartpole_tf_policy():
    """The demo CartPole QPolicy (64x64 MLP, fixed seed); built per module: a module that builds Keras models
    in a TF1 graph (test_graph_equivalence.py) invalidates the Keras models built before it in the process."""
    from examples.cartpole import cartpole_q_policy  # pylint: disable=import-outside-toplevel

    return cartpole_q_policy(seed=0)


@pytest.fixture
def servers():
    """Servers and clients cleaned up after the test (gates opened first; see tests/support/servers.py)."""
    pool = Servers()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(autouse=True)
def no_token_in_environment(monkeypatch):
    """Tests say which token each client sends: none comes from the developer's environment."""
    for name in ("TFA_POLICY_TOKEN", "TFA_POLICY_TOKEN_FILE", "TFA_POLICY_SERVER_TOKENS"):
        monkeypatch.delenv(name, raising=False)


def pytest_sessionfinish(session, exitstatus):
    """With a forced data plane (TFA_POLICY_DATA_PLANE, make test's second and third passes), the calls took it.

    "grpc": no action went through a shared-memory slot. "shm": slots carried
    actions (inputs a slot cannot carry, such as an as-local call with inputs
    off the spec, still go over gRPC, as the client documents).
    """
    from policy_client.transport import ACTIONS_SENT  # pylint: disable=import-outside-toplevel

    plane = os.environ.get("TFA_POLICY_DATA_PLANE")
    if plane not in ("grpc", "shm") or exitstatus != 0 or session.testscollected == 0:
        return
    sent = dict(ACTIONS_SENT)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(f"TFA_POLICY_DATA_PLANE={plane}: actions sent over gRPC {sent['grpc']:,}, "
                            f"through shared-memory slots {sent['shm']:,}")
    wrong = sent["shm"] != 0 if plane == "grpc" else sent["shm"] == 0
    if wrong or sent["grpc"] + sent["shm"] == 0:
        if reporter is not None:
            reporter.write_line(f"FAILED: the forced {plane} plane was not the plane the calls took", red=True)
        session.exitstatus = 1
