"""`policy-server --workers N`: N processes on one port, one supervisor (policy_server/cli/supervisor.py).

The main test runs one supervisor of 2 workers on loopback and checks, in
order: the two stdout lines come once; fresh connections are answered by
both worker processes (each worker's metrics endpoint says its pid and how
many calls it answered); a SIGKILLed worker is restarted while actors go on
acting without a failed, lost, duplicated or crossed answer; SIGTERM drains
every worker and the supervisor exits 0.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from policy_client import PolicyClient
from policy_server.cli import command as cli
from policy_server.cli import config_file
from policy_server.cli import supervisor as workers
from tests.operations.processes import ECHO, ROOT, policy_server
from tests.reliability.actors import Actors
from tests.support.fakes import echo_time_step

pytestmark = pytest.mark.timeout(300)

FACTORIES = ["--factory", "echo=tests.reliability.backends:echo",
             "--factory", "stateless=tests.reliability.backends:stateless_echo"]
START = 180.0  # two workers load at once on a shared 2-core machine
DEADLINE = 60.0


def free_port_pair() -> int:
    """A port P with P and P + 1 free on 127.0.0.1 now."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two adjacent free ports")


def children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except FileNotFoundError:
        return set()


def scrape(port: int, method: str = "Action") -> tuple[int, float]:
    """(pid, `method` calls of "stateless" answered OK) from the metrics endpoint of one worker."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    pid = int(re.search(r'^tfa_policy_worker_info\{pid="(\d+)"', text, re.M).group(1))
    calls = sum(float(m) for m in re.findall(rf'^tfa_policy_requests_total\{{code="OK",method="{method}",'
                                             r'policy="stateless"\} (\S+)', text, re.M))
    return pid, calls


def fresh_calls(address: str, n: int, data_plane: str = "grpc", calls: int = 1) -> None:
    """`n` clients making `calls` calls each, each on a new channel (a new connection: the kernel picks its
    worker); with data_plane="shm", through a slot of that worker."""
    for i in range(n):
        with PolicyClient(address, "stateless", transport="unary", data_plane=data_plane, timeout=DEADLINE) as client:
            for j in range(calls):
                answer = client.action(echo_time_step(np.full(3, i + j, np.float32)))
                np.testing.assert_array_equal(answer.policy_step.action, np.full(3, 2 * (i + j), np.float32))


def wait_until(predicate, what: str, timeout: float = START) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_two_workers_share_a_port_survive_a_sigkill_and_drain_on_sigterm(tmp_path):
    metrics = free_port_pair()
    flags = [*FACTORIES, "--workers", "2", "--metrics-port", str(metrics), "--stats-interval", "0"]
    with policy_server(flags, tmp_path) as server:
        listening = server.wait_for(r"^policy-server listening on (\S+) \(loading policies\); metrics on (.*)$",
                                    START)
        address = listening.group(1)
        assert listening.group(2) == f"http://127.0.0.1:{metrics}/metrics, http://127.0.0.1:{metrics + 1}/metrics"
        server.wait_for(rf"^policy-server serving echo, stateless on {re.escape(address)}$", START)
        pids = {scrape(metrics)[0], scrape(metrics + 1)[0]}
        assert len(pids) == 2 and pids == children(server.proc.pid), (pids, children(server.proc.pid))

        fresh_calls(address, 40)
        calls = [scrape(metrics)[1], scrape(metrics + 1)[1]]
        assert sum(calls) == 40 and min(calls) > 0, calls  # both processes answered
        fresh_calls(address, 10, data_plane="shm", calls=3)  # each worker offers its own shared-memory plane
        slots = [scrape(metrics, "SharedMemoryAction")[1], scrape(metrics + 1, "SharedMemoryAction")[1]]
        grpc_calls = scrape(metrics)[1] + scrape(metrics + 1)[1] - 40  # a client's first call, while it attaches
        assert min(slots) > 0 and sum(slots) + grpc_calls == 30, (slots, grpc_calls)

        actors = Actors(address, ["stream", "unary"] * 2, timeout=DEADLINE).start()
        try:
            assert actors.wait_for_version(0, DEADLINE)
            killed, _ = scrape(metrics)
            os.kill(killed, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_until(lambda: len(children(server.proc.pid) - {killed}) == 2, "the worker's restart")
            wait_until(lambda: _pid_or_none(metrics) not in (None, killed), "the restarted worker's metrics")
            for actor in actors.actors:  # every actor is answered after the restart, too
                actor.answered.clear()
            assert actors.wait_for_version(0, DEADLINE)
            restarted_in = time.monotonic() - killed_at
        finally:
            tally = actors.finish()
        assert tally.failed == 0 and tally.lost == 0 and tally.wrong == 0, tally.samples
        assert tally.ok > 0
        before = scrape(metrics)[1]
        wait_until(lambda: (fresh_calls(address, 10), scrape(metrics)[1] > before)[1],
                   "a fresh connection reaching the restarted worker", DEADLINE)

        serving = set(children(server.proc.pid))
        assert server.stop(timeout=DEADLINE) == 0, server.stderr[-3000:]
        assert not any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in serving)
        log = server.stderr
        assert "[worker 0]: server stopped" in log and "[worker 1]: server stopped" in log, log[-3000:]
        assert "policy_server.cli.supervisor: every worker stopped" in log
        assert re.search(r"worker 0 \(pid \d+\) ended with signal SIGKILL; restarting it", log)
        # The two stdout lines came once: a restarted worker says so on stderr only.
        assert [line for line in server.stdout if line.startswith("policy-server")] == \
            [listening.group(0), f"policy-server serving echo, stateless on {address}"]
    print(f"\nworkers: {tally.calls} calls across a SIGKILL, 0 failed; worker back in {restarted_in:.1f} s; "
          f"longest pause {tally.longest_pause * 1e3:.0f} ms")


def _pid_or_none(port: int) -> int | None:
    try:
        return scrape(port)[0]
    except (OSError, AttributeError):
        return None


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def test_a_worker_that_cannot_load_stops_the_server_with_exit_code_1(tmp_path):
    flags = ["--factory", "echo=tests.support.fakes:NoSuchBackend", "--workers", "2"]
    with policy_server(flags, tmp_path) as server:
        assert server.proc.wait(START) == 1
        log = server.stderr
    assert "policy 'echo' failed to load" in log and "before the server served: stopping" in log, log[-3000:]
    assert "policy-server serving" not in "\n".join(server.stdout)


@pytest.mark.parametrize("flags, match", [
    (["--workers", "2", "--address", "unix:/tmp/policy.sock"], "--workers needs a TCP address HOST:PORT"),
    (["--workers", "0"], "--workers must be >= 1, got 0"),
    (["--workers", "2", "--metrics-port", "65535"], "passes 65535"),
    (["--workers", "2", "--factory", "echo"], "--factory wants NAME=VALUE"),  # checked once, by the supervisor
])
def test_bad_worker_settings_are_clear_errors(flags, match):
    result = subprocess.run([sys.executable, "-m", "policy_server.cli", "--port", "0", *ECHO, *flags],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0 and match in result.stderr, result.stderr
    assert "starting 2 workers" not in result.stderr


def test_a_port_held_by_a_process_that_does_not_share_it_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=rf"--workers cannot bind 127.0.0.1:{port}: Address already in use"):
            workers.reserve_port("127.0.0.1", port)
    first = workers.reserve_port("127.0.0.1", 0)  # a reservation shares with the workers' SO_REUSEPORT binds
    try:
        second = workers.reserve_port("127.0.0.1", first.getsockname()[1])
        second.close()
    finally:
        first.close()


def test_workers_is_a_config_file_key(tmp_path):
    path = tmp_path / "serving.toml"
    path.write_text('[server]\nworkers = 4\nport = 50051\n'
                    '[policies.echo]\nfactory = "tests.support.fakes:EchoBackend"\n')
    assert config_file.load(path).settings["workers"] == 4
    args = cli.parse_args(["--config", str(path)])
    assert args.workers == 4 and workers.tcp_address(args) == ("127.0.0.1", 50051)
    assert cli.parse_args(["--config", str(path), "--workers", "1"]).workers == 1


def test_workers_drain_when_their_supervisor_is_killed_and_json_lines_come_once(tmp_path):
    flags = [*FACTORIES, "--workers", "2", "--log-format", "json"]
    with policy_server(flags, tmp_path) as server:
        listening = json.loads(server.wait_for(r'"event": "listening"', START).string)
        ready = json.loads(server.wait_for(r'"event": "ready"', START).string)
        assert listening["workers"] == ready["workers"] == 2 and ready["policies"] == "echo,stateless"
        assert ready["message"] == f"policy-server serving echo, stateless on {ready['address']}"
        fresh_calls(ready["address"], 2)
        pids = children(server.proc.pid)
        assert len(pids) == 2
        server.proc.kill()
        server.proc.wait(30)
        wait_until(lambda: all(_state(pid) in ("Z", "gone") for pid in pids), "the workers' exit", DEADLINE)
    lines = [json.loads(line) for line in server.stderr.splitlines() if line.startswith("{")]
    stopped = sorted(entry.get("worker") for entry in lines if entry.get("event") == "stopped")
    assert stopped == [0, 1], server.stderr[-3000:]  # each drained (SIGTERM from PR_SET_PDEATHSIG)
