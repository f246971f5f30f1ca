"""The exposure warning on real servers: bound to 0.0.0.0 (port 0), reached on 127.0.0.1.

A server listening beyond loopback without TLS, without tokens or without
both logs exactly one WARNING line that names what is missing and the flags
that fix it; with both, or bound to a loopback address, it logs none.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from policy_client import PolicyClient
from policy_server import security
from tests.security.test_cli_security import ECHO, start, stop
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT

pytestmark = pytest.mark.timeout(180)


def act(client: PolicyClient) -> None:
    step = client.action(echo_time_step([1, 2, 3]), {"count": np.array(0, np.int64)}).policy_step
    np.testing.assert_array_equal(step.action, np.array([2, 4, 6], np.float32))


def warnings_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("policy_server")]


@pytest.mark.parametrize("tls, with_tokens, missing, fix", [
    (False, False, "TLS or tokens", "(add --tls-cert and --tls-key, and --tokens-file or $TFA_POLICY_SERVER_TOKENS)"),
    (False, True, "TLS", "(add --tls-cert and --tls-key)"),
    (True, False, "tokens", "(add --tokens-file or $TFA_POLICY_SERVER_TOKENS)"),
    (True, True, None, None),
], ids=["plaintext-open", "plaintext-tokens", "tls-open", "tls-tokens"])
def test_a_server_on_every_interface_warns_once(servers, certs, tokens, caplog, tls, with_tokens, missing, fix):
    caplog.set_level(logging.INFO, logger="policy_server")
    credentials = security.server_credentials(str(certs.server_cert), str(certs.server_key)) if tls else None
    server = servers.serve({"echo": EchoBackend()}, address="0.0.0.0:0", credentials=credentials,
                           auth=tokens.auth() if with_tokens else None)
    assert server.address == f"0.0.0.0:{server.port}"
    scheme = f"grpcs://127.0.0.1:{server.port}/echo?ca={certs.ca}" if tls else f"127.0.0.1:{server.port}"
    act(servers.client(scheme, "echo", token=tokens.actor if with_tokens else None, transport="unary"))
    found = warnings_logged(caplog)
    if missing is None:
        assert found == []
        return
    assert len(found) == 1, found
    (line,) = found
    assert line.startswith(f"listening on 0.0.0.0:{server.port}, beyond loopback, without {missing}: ")
    assert line.endswith(fix)
    for secret in tokens.all:
        assert secret not in caplog.text


def test_a_loopback_server_warns_about_nothing(servers, caplog):
    caplog.set_level(logging.INFO, logger="policy_server")
    server = servers.serve({"echo": EchoBackend()}, address="127.0.0.1:0")
    act(servers.client(server.address, "echo", transport="unary"))
    assert "listening on 127.0.0.1:" in caplog.text
    assert warnings_logged(caplog) == []


def test_the_cli_logs_one_warning_line(tmp_path):
    stderr = tmp_path / "stderr"
    proc, address = start([*ECHO, "--host", "0.0.0.0"], stderr)
    try:
        assert address is not None and address.startswith("0.0.0.0:"), stderr.read_text()[-3000:]
        with PolicyClient(f"127.0.0.1:{address.rsplit(':', 1)[1]}", "echo", timeout=WAIT) as client:
            act(client)
    finally:
        code = stop(proc)
    log = stderr.read_text()
    assert code == 0, log[-3000:]
    warnings = [line for line in log.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, log[-3000:]
    assert f"listening on {address}, beyond loopback, without TLS or tokens: " in warnings[0]
    assert "--tls-cert and --tls-key, and --tokens-file" in warnings[0]
