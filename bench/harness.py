"""Benchmark plumbing: actor pools, server and echo processes, one measured point, the TorchRL peer."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Sequence

import numpy as np

from bench import processes, workloads

ROOT = pathlib.Path(__file__).resolve().parent.parent
PEER_PYTHON = ROOT / ".venv-torchrl" / "bin" / "python"
PEER_SCRIPT = ROOT / "bench" / "peers" / "torchrl_peer.py"


class Pool:
    """Persistent actor processes (one kind of caller each), started with one multiprocessing context."""

    def __init__(self, ctx: Any, size: int, name: str):
        self.name = name
        self.results = ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(size)]
        self.procs = [ctx.Process(target=processes.actor, args=(i, q, self.results), daemon=True,
                                  name=f"bench-{name}-{i}") for i, q in enumerate(self.commands)]
        for proc in self.procs:
            proc.start()

    @property
    def size(self) -> int:
        return len(self.procs)

    def _collect(self, n: int, tag: str, timeout: float) -> list[dict[str, Any]]:
        deadline, replies = time.monotonic() + timeout, {}
        while len(replies) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"pool {self.name}: {len(replies)}/{n} '{tag}' replies in {timeout:.0f}s")
            try:
                got, index, payload = self.results.get(timeout=min(remaining, 5.0))
            except Exception:  # queue.Empty  pylint: disable=broad-except
                dead = [p.name for p in self.procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"pool {self.name}: actor processes died: {dead}") from None
                continue
            if got == "error":
                raise RuntimeError(f"pool {self.name}, actor {index}:\n{payload['traceback']}")
            if got == tag:
                replies[index] = payload
        return [replies[i] for i in sorted(replies)]

    def prepare(self, key: Any, n: int, kind: str, workload: str, address: str, rows: int = 0,
                timeout: float = 600.0) -> list[dict[str, Any]]:
        """Builds (once) and warms the caller `key` in the first `n` actors."""
        for q in self.commands[:n]:
            q.put(("prepare", key, kind, workload, address, rows))
        return self._collect(n, "ready", timeout)

    def start_run(self, key: Any, n: int, start_at: float, warmup: float, seconds: float) -> None:
        for q in self.commands[:n]:
            q.put(("run", key, start_at, warmup, seconds))

    def finish_run(self, n: int, timeout: float) -> list[dict[str, Any]]:
        return self._collect(n, "done", timeout)

    def release(self, key: Any, n: int) -> None:
        """Closes the caller `key` in the first `n` actors (e.g. before its server stops)."""
        for q in self.commands[:n]:
            q.put(("close", key))
        self._collect(n, "closed", 60.0)

    def close(self) -> None:
        for q in self.commands:
            try:
                q.put(None)
            except Exception:  # pylint: disable=broad-except
                pass
        for proc in self.procs:
            proc.join(timeout=10)
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        self.procs, self.commands = [], []


# ------------------------------------------------------------------ servers


_HELP: list[str] = []


def server_flags() -> str:
    """`policy-server --help` (cached), to see which optional flags this checkout has."""
    if not _HELP:
        _HELP.append(subprocess.run([sys.executable, "-m", "policy_server.cli", "--help"], capture_output=True,
                                    text=True, timeout=120, cwd=ROOT, check=False).stdout)
    return _HELP[0]


def has_flag(flag: str) -> bool:
    return re.search(rf"(^|\s|\[){re.escape(flag)}(\s|=|\]|$)", server_flags(), re.M) is not None


class Server:
    """A `policy-server` subprocess serving one workload (TCP on a free port, or `unix:PATH`).

    The constructor starts it; `ready()` waits for its "serving" line (so several start at once)."""

    def __init__(self, workload: str, extra: Sequence[str] = (), unix_path: str | None = None):
        self.workload, self.unix_path, self.address = workload, unix_path, ""
        bind = ["--address", f"unix:{unix_path}"] if unix_path else ["--host", "127.0.0.1", "--port", "0"]
        self.cmd = [sys.executable, "-m", "policy_server.cli", "--factory", workloads.factory_arg(workload), *bind,
                    "--stats-interval", "0", "--log-level", "WARNING", *extra]
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                     env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path})
        self.pid = self.proc.pid

    def ready(self, timeout: float = 300.0) -> "Server":
        """Waits until the server serves its policy (it prints a line, or exits)."""
        assert self.proc.stdout is not None
        timer = threading.Timer(timeout, self.proc.kill)  # readline blocks: a hung server is killed
        timer.start()
        try:
            for line in self.proc.stdout:
                match = re.search(r"policy-server serving .* on (\S+)\s*$", line)
                if match:
                    self.address = f"unix:{self.unix_path}" if self.unix_path else match.group(1)
                    return self
        finally:
            timer.cancel()
        self.stop()
        raise RuntimeError(f"policy server {self.cmd} did not start (exit code {self.proc.poll()})")

    def stats(self) -> dict[str, Any]:
        from policy_client import PolicyClient  # pylint: disable=import-outside-toplevel

        with PolicyClient(self.address, self.workload, timeout=30) as client:
            return client.stats()[0]

    def response_bytes(self) -> bytes:
        """One real ActionResponse (serialized) to an unbatched request: what the echo server replays."""
        from policy_client import PolicyClient, make_channel  # pylint: disable=import-outside-toplevel
        from policy_client.wire.generated import policy_service_pb2_grpc  # pylint: disable=import-outside-toplevel
        from policy_client.wire.standins import TimeStep  # pylint: disable=import-outside-toplevel

        encoder = PolicyClient("127.0.0.1:1", self.workload)  # encode_request only; never connects
        request = encoder.encode_request(TimeStep(**workloads.step_fields(workloads.Observations(self.workload)())))
        encoder.close()
        channel = make_channel(self.address)
        try:
            stub = policy_service_pb2_grpc.PolicyServiceStub(channel)
            return stub.Action(request, timeout=30, wait_for_ready=True).SerializeToString()
        finally:
            channel.close()

    def stop(self) -> None:
        from examples.serving_demo import stop_server  # pylint: disable=import-outside-toplevel

        stop_server(self.proc)


class EchoServer:
    """The raw bidi-stream echo server in its own process, replaying a fixed ActionResponse."""

    def __init__(self, ctx: Any, response: bytes, unix_path: str | None = None):
        self.stop_event, ports = ctx.Event(), ctx.Queue()
        bind = f"unix:{unix_path}" if unix_path else "127.0.0.1:0"
        self.proc = ctx.Process(target=processes.serve_echo, args=(bind, response, ports, self.stop_event),
                                daemon=True, name="bench-echo-server")
        self.proc.start()
        self.pid = self.proc.pid
        try:
            self.address = ports.get(timeout=60)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        self.stop_event.set()
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)


# ------------------------------------------------------------------ one measured point


def measure(pool: Pool, key: Any, n: int, warmup: float, seconds: float, server: Any = None,
            rows: int = 0) -> dict[str, Any]:
    """Runs `n` actors of `pool` in a closed loop; returns the point's numbers (server side too if given)."""
    start_at = time.time() + 0.3
    pool.start_run(key, n, start_at, warmup, seconds)
    time.sleep(max(0.0, start_at + warmup - time.time()))
    cpu0, machine0 = processes.cpu_seconds(server.pid) if server else 0.0, processes.machine_ticks()
    stats0 = server.stats() if isinstance(server, Server) else None
    time.sleep(max(0.0, start_at + warmup + seconds - time.time()))
    cpu1, machine1 = processes.cpu_seconds(server.pid) if server else 0.0, processes.machine_ticks()
    stats1 = server.stats() if isinstance(server, Server) else None
    outcomes = pool.finish_run(n, timeout=warmup + seconds + 120)
    latencies = np.concatenate([o["latencies"] for o in outcomes]).astype(np.float64)
    actions = len(latencies) * max(rows, 1)
    rss = [o["rss_mb"] for o in outcomes]
    point = {"actors": n, "rows_per_call": max(rows, 1), "actions_per_s": actions / seconds,
             "calls_per_s": len(latencies) / seconds,
             "p50_ms": float(np.percentile(latencies, 50) * 1e3) if actions else None,
             "p99_ms": float(np.percentile(latencies, 99) * 1e3) if actions else None,
             "client_cpu_us_per_action": sum(o["cpu_s"] for o in outcomes) / max(actions, 1) * 1e6,
             "actor_rss_mb": float(np.mean(rss)), "actor_rss_mb_max": float(np.max(rss)),
             "tensorflow_imported": any(o["tensorflow_imported"] for o in outcomes)}
    # Everything else the machine ran in the window (other users, this harness): > 0.05 is a contended point.
    busy, total = ((a - b) / processes.TICKS for a, b in zip(machine1, machine0))
    ours = sum(o["cpu_s"] for o in outcomes) + (cpu1 - cpu0)
    point["foreign_cpu_share"] = max(0.0, busy - ours) / total if total > 0 else None
    if server:
        point["server_cpu_us_per_action"] = (cpu1 - cpu0) / max(actions, 1) * 1e6
        point["server_rss_mb"] = processes.peak_rss_mb(server.pid)
    if stats1 is not None:
        batches = stats1["batches"] - stats0["batches"]
        point["mean_batch_size"] = (stats1["rows"] - stats0["rows"]) / batches if batches else None
        point["inference_ms_p50"] = stats1["inference_ms_p50"]
        point["queue_wait_ms_p50"] = stats1["queue_wait_ms_p50"]
    return point


def probe_rss(ctx: Any, probes: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str], float]:
    """Peak RSS (MiB) of a fresh actor process for each (kind, workload, address), after its first calls.

    Each runs in a process of its own from `ctx` (the forkserver that imported only gRPC and numpy), so
    that every library its caller maps counts, as for an actor started on its own. (The measured actors
    of the TF rows fork from a forkserver that imported TensorFlow, and share its pages.)"""
    pool = Pool(ctx, len(probes), "rss-probe")
    try:
        for q, (kind, workload, address) in zip(pool.commands, probes):
            q.put(("prepare", (kind, workload), kind, workload, address, 0))
        replies = pool._collect(len(probes), "ready", 600.0)  # pylint: disable=protected-access
    finally:
        pool.close()
    return {(kind, workload): reply["rss_mb"] for (kind, workload, _), reply in zip(probes, replies)}


class RssFloor:
    """A process that imports only tensorflow and tf_agents; `result()` is its peak RSS (MiB)."""

    def __init__(self, ctx: Any):
        self.results = ctx.Queue()
        self.proc = ctx.Process(target=processes.rss_floor, args=(self.results,), daemon=True, name="bench-rss-floor")
        self.proc.start()
        self.value: float | None = None

    def result(self, timeout: float = 300.0) -> float:
        if self.value is None:
            self.value = self.results.get(timeout=timeout)[2]["rss_mb"]
            self.stop()
        return self.value

    def stop(self) -> None:
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)


# ------------------------------------------------------------------ the TorchRL peer


def peer_available() -> str | None:
    """None if the TorchRL peer can run, else why not."""
    if not PEER_PYTHON.exists():
        return "not available (.venv-torchrl missing)"
    if not PEER_SCRIPT.exists():
        return "not available (bench/peers/torchrl_peer.py missing)"
    return None


def run_peer(workload: str, actors: int, seconds: float, warmup: float, start_method: str) -> dict[str, Any]:
    """One TorchRL peer point, from the JSON its script writes (or {"unavailable": reason})."""
    reason = peer_available()
    if reason:
        return {"actors": actors, "unavailable": reason}
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        out = pathlib.Path(tmp) / "peer.json"
        cmd = [str(PEER_PYTHON), str(PEER_SCRIPT), "--workload", workload, "--actors", str(actors),
               "--seconds", str(seconds), "--warmup", str(warmup), "--start-method", start_method,
               "--json", str(out)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)  # its own process group: a timeout stops its actors too
        try:
            stdout, stderr = proc.communicate(timeout=240 + warmup + seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return {"actors": actors, "unavailable": "not available (peer timed out)"}
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        done = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return {"actors": actors, "unavailable": f"not available (peer failed: {tail[0][:120]})"}
        point = json.loads(out.read_text())
    point.setdefault("actors", actors)
    point.setdefault("actor_rss_mb", (point.get("peak_rss_mb_per_actor") or {}).get("mean"))
    point.setdefault("server_rss_mb", point.get("peak_rss_mb_server"))
    return point
