"""`policy-server` as a process: help, what to serve (--policy, --factory, --demo), SIGTERM.

Servers are started with `--port 0` (examples.serving_demo.start_server reads
the bound port from the process's output).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tf_agents.policies import py_tf_eager_policy
from tf_agents.trajectories import time_step as ts

from policy_client import PolicyClient
from policy_client.wire import errors as client_errors
from policy_client.wire.generated import policy_service_pb2_grpc as service_grpc
from examples.serving_demo import start_server, stop_server

pytestmark = pytest.mark.timeout(180)

VENV_BIN = Path(sys.executable).parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def cartpole_step(obs: np.ndarray) -> ts.TimeStep:
    return ts.TimeStep(np.array(0, np.int32), np.array(0, np.float32), np.array(1, np.float32), obs)


def test_help_exits_zero_without_loading_tensorflow():
    result = subprocess.run([str(VENV_BIN / "policy-server"), "--help"], capture_output=True, text=True,
                            timeout=60, env=ENV)
    assert result.returncode == 0, result.stderr
    assert "usage: policy-server" in result.stdout
    for flag in ("--policy", "--port", "--max-batch-size", "--max-queue-size", "--allowed-batch-sizes"):
        assert flag in result.stdout
    check = ("import sys\nfrom policy_server import cli\n"
             "try:\n    cli.main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
             "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60, env=ENV)
    assert result.returncode == 0, result.stderr


def test_nothing_to_serve_is_a_clear_error():
    result = subprocess.run([str(VENV_BIN / "policy-server"), "--port", "0"], capture_output=True, text=True,
                            timeout=60, env=ENV)
    assert result.returncode != 0
    assert "nothing to serve; give --policy NAME=SAVED_MODEL_DIR, --factory NAME=MODULE:CALLABLE, or --demo" \
        in result.stderr


@pytest.mark.parametrize("flags, match", [
    (["--factory", "echo"], "--factory wants NAME=VALUE"),
    (["--factory", "echo=tests.support.fakes"], "--factory wants NAME=MODULE:CALLABLE"),
    (["--policy", "a=/x", "--policy", "a=/y"], "--policy 'a' is given twice"),
    (["--demo", "--factory", "cartpole=tests.support.fakes:EchoBackend"], "'cartpole' is given twice"),
])
def test_bad_policy_flags_are_clear_errors(flags, match):
    with pytest.raises(SystemExit, match=match):
        from policy_server.cli import command as cli  # pylint: disable=import-outside-toplevel

        cli.policy_configs(cli.parse_args(flags))


ECHO_FACTORY = ["--factory", "echo=tests.support.fakes:EchoBackend"]


def check_echo_served(flags: list[str]) -> str:
    """Starts policy-server with `flags` (serving the echo factory), checks one action, stops it; its address."""
    proc, address = start_server(flags)
    try:
        with PolicyClient(address, "echo", timeout=30) as client:
            assert [p.name for p in client.list_policies()] == ["echo"]
            obs = np.array([1, 2, 3], np.float32)
            step = client.action(ts.restart(obs), {"count": np.array(4, np.int64)}).policy_step
            np.testing.assert_array_equal(step.action, 2 * obs)
            assert step.state["count"] == 5
        assert stop_server(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return address


def test_factory_serves_what_a_callable_returns():
    check_echo_served(ECHO_FACTORY)


def test_demo_policy_is_served_and_sigterm_exits_zero(cartpole_tf_policy):
    proc, address = start_server(["--demo"])
    try:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", address) and not address.endswith(":0")
        with PolicyClient(address, timeout=30) as client:  # default policy, action stream
            policies = {p.name: p for p in client.list_policies()}
            assert "cartpole" in policies and policies["cartpole"].backend == "tf_eager"
            specs, _ = client.get_specs()
            assert specs.time_step_spec.observation.shape == (4,)
            local = py_tf_eager_policy.PyTFEagerPolicy(cartpole_tf_policy)  # the same seed-0 demo policy
            rng = np.random.default_rng(1)
            for _ in range(8):
                obs = (rng.uniform(-1, 1, 4) * [2, 2, 0.2, 2]).astype(np.float32)
                action = client.action(cartpole_step(obs)).policy_step.action
                assert action.dtype == np.int64 and action.shape == ()
                assert action == local.action(cartpole_step(obs)).action
            assert client.stats()[0]["requests"] >= 8
            # An ActionStream open (answered once, then idle) when SIGTERM comes: the server must end it
            # itself (UNAVAILABLE "shutting down"), not wait out its 10 s grace period for it.
            first = client.encode_request(cartpole_step(np.zeros(4, np.float32)))
            more = threading.Event()

            def requests():
                yield first
                more.wait(60)

            with grpc.insecure_channel(address) as channel:
                stream = service_grpc.PolicyServiceStub(channel).ActionStream(requests(), timeout=60)
                assert not next(stream).HasField("error")  # the stream is open and answering
                started = time.monotonic()
                code = stop_server(proc)
                elapsed = time.monotonic() - started
                with pytest.raises(grpc.RpcError) as ended:
                    next(stream)
                more.set()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in ended.value.details(), \
        "the server ended the open stream itself"
    assert elapsed < 9.0, f"SIGTERM took {elapsed:.1f}s: the open stream held the 10 s grace period"


SLOW_LOADING_SERVER = """
import sys, time
from examples import cartpole as demo_policy
from policy_server.cli import command as cli
_build = demo_policy.cartpole_q_policy
def slow_build(*args, **kwargs):
    time.sleep(5)  # a policy that takes a while to load
    return _build(*args, **kwargs)
demo_policy.cartpole_q_policy = slow_build
sys.exit(cli.main(["--demo", "--port", "0", "--stats-interval", "0", "--log-level", "WARNING"]))
"""


def test_sigterm_while_loading_exits_zero():
    proc = subprocess.Popen([sys.executable, "-c", SLOW_LOADING_SERVER], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = proc.stdout.readline()
        match = re.search(r"listening on (\S+):(\d+) \(loading policies\)", line)
        assert match, f"unexpected first line {line!r}"
        address = f"{match.group(1)}:{match.group(2)}"
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING
        with PolicyClient(address, "cartpole", transport="unary", timeout=1) as client:
            # The call waits for the policy within its deadline, which ends first here.
            with pytest.raises((client_errors.DeadlineExceededError, client_errors.UnavailableError)):
                client.action(cartpole_step(np.zeros(4, np.float32)))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "serving" not in out


def test_serves_on_a_unix_socket(tmp_path):
    socket = tmp_path / "policy.sock"
    assert check_echo_served([*ECHO_FACTORY, "--address", f"unix:{socket}"]) == f"unix:{socket}"
