"""`policy-server` security flags: --help, errors at startup, and a TLS + mTLS + tokens server as a process."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from policy_client import PolicyClient, RemoteError, VariablePublisher
from policy_server.cli import command as cli
from tests.support.fakes import echo_time_step

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
ECHO = ["--factory", "echo=tests.support.fakes:EchoBackend"]
SECURITY_FLAGS = ("--tls-cert", "--tls-key", "--tls-client-ca", "--tokens-file")


def test_help_documents_the_security_flags(capsys):
    with pytest.raises(SystemExit) as info:
        cli.parse_args(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in SECURITY_FLAGS:
        assert flag in text
    for words in ("mTLS", "$TFA_POLICY_SERVER_TOKENS", "never from the command line", "'ROLE TOKEN' per line",
                  "Health checking stays open to everyone, and so does reflection unless --no-reflection"):
        assert words in text


def settings(*flags: str):
    return cli.security_settings(cli.parse_args([*ECHO, *flags]))


def test_no_security_flags_serve_open_plaintext():
    assert settings() == (None, None)


@pytest.mark.parametrize("flags, match", [
    (["--tls-cert", "{cert}"], "--tls-cert and --tls-key go together"),
    (["--tls-key", "{key}"], "--tls-cert and --tls-key go together"),
    (["--tls-client-ca", "{ca}"], "--tls-client-ca needs --tls-cert and --tls-key"),
    (["--tls-cert", "{missing}", "--tls-key", "{key}"], "--tls-cert: cannot read .*: No such file"),
    (["--tls-cert", "{cert}", "--tls-key", "{cert}"], "--tls-key: .* holds no PEM private key"),
    (["--tokens-file", "{missing}"], "cannot read the tokens file .*: No such file"),
    (["--tokens-file", "{empty}"], "tokens file .*: no tokens given"),
])
def test_bad_security_flags_fail_at_startup(flags, match, certs, tmp_path):
    (tmp_path / "empty").write_text("# nothing yet\n")
    paths = {"cert": certs.server_cert, "key": certs.server_key, "ca": certs.ca, "missing": tmp_path / "missing",
             "empty": tmp_path / "empty"}
    with pytest.raises(SystemExit, match=f"policy-server: {match}"):
        settings(*(f.format(**paths) for f in flags))


def test_tokens_from_the_environment(monkeypatch, tokens):
    monkeypatch.setenv("TFA_POLICY_SERVER_TOKENS", f"actor {tokens.actor},learner {tokens.learner}")
    assert settings()[1].counts() == {"actor": 1, "learner": 1}
    with pytest.raises(SystemExit, match="from --tokens-file or \\$TFA_POLICY_SERVER_TOKENS, not both"):
        settings("--tokens-file", str(tokens.server_file))


def start(flags: list[str], stderr_path: Path, timeout: float = 120.0) -> tuple[subprocess.Popen, str | None]:
    """Starts policy-server with `flags` on a free port: (process, address once serving, or None if it exited).

    The process is killed when it neither serves nor exits within `timeout`.
    """
    cmd = [sys.executable, "-m", "policy_server.cli", "--port", "0", "--stats-interval", "0", *flags]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=ROOT)
    lines: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout] and None, daemon=True).start()
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            match = re.search(r"policy-server serving .* on (\S+)$", lines.get(timeout=0.1).strip())
        except queue.Empty:
            continue
        if match:
            return proc, match.group(1)
    stop(proc)
    return proc, None


def stop(proc: subprocess.Popen) -> int:
    """SIGTERM, then SIGKILL if it has not exited 30 s later."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def test_a_tls_mtls_tokens_server_as_a_process(certs, tokens, tmp_path):
    flags = [*ECHO, "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
             "--tls-client-ca", str(certs.ca), "--tokens-file", str(tokens.server_file)]
    proc, address = start(flags, tmp_path / "stderr")
    try:
        assert address is not None, (tmp_path / "stderr").read_text()[-3000:]
        port = address.rsplit(":", 1)[1]
        uri = f"grpcs://localhost:{port}/echo?ca={certs.ca}&cert={certs.client_cert}&key={certs.client_key}"
        with PolicyClient(uri, token_file=str(tokens.actor_file), timeout=30) as actor:
            assert actor.action(echo_time_step([1, 2, 3]), {"count": np.array(0, np.int64)}).version == 0
            with pytest.raises(RemoteError, match="UNAUTHENTICATED"):
                PolicyClient(uri, token="an-unknown-token-0123456789", timeout=30).list_policies()
            with VariablePublisher(uri, token_file=str(tokens.actor_file), timeout=30) as publisher:
                with pytest.raises(RemoteError, match="PERMISSION_DENIED"):
                    publisher.push([np.float32(1)], 2)
            with VariablePublisher(uri, token_file=str(tokens.learner_file), timeout=30) as publisher:
                assert publisher.push([np.float32(1)], 2) == 2
            assert actor.action(echo_time_step([1, 2, 3]), {"count": np.array(0, np.int64)}).version == 2
    finally:
        code = stop(proc)
    log = (tmp_path / "stderr").read_text()
    assert code == 0, log[-3000:]
    assert "(TLS, tokens for actor: 1, learner: 1)" in log and "refused" in log
    for secret in tokens.all:
        assert secret not in log


def test_a_key_that_is_not_the_certificates_fails_at_startup(certs, tmp_path):
    with pytest.raises(SystemExit, match="--tls-key .* does not go with --tls-cert .*KEY_VALUES_MISMATCH"):
        settings("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.client_key))
    damaged = tmp_path / "ca.pem"
    damaged.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    with pytest.raises(SystemExit, match="--tls-client-ca .*: not CA certificates"):
        settings("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
                 "--tls-client-ca", str(damaged))
