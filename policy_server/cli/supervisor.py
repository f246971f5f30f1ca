"""`policy-server --workers N`: N server processes sharing one port (SO_REUSEPORT), and their supervisor.

One Python process serves with about one core (its interpreter lock), so a
host with more cores runs several. As in gRPC's Python multiprocessing
example, every worker binds the same port with SO_REUSEPORT and the kernel
spreads new connections across them; a connection, with every call and
stream on it (and a shared-memory slot opened through it), stays on its
worker.

The process started as `policy-server --workers N` is the supervisor. It
loads no policy and imports no TensorFlow:

- It reserves the port: a socket bound (never listening) with SO_REUSEPORT on
  HOST:PORT, held while it runs, so that the port stays the workers' across
  restarts. Port 0 picks a free one for all of them.
- It starts N workers, `python -m policy_server.cli` with the same flags and
  config file plus `--workers 1 --address HOST:PORT --worker-index I`. Each
  loads the policies itself and follows the same checkpoint directory or
  Reverb table. Worker I serves its metrics on --metrics-port + I (one
  Prometheus target per worker; with --metrics-port 0 the supervisor picks
  N free ports once, kept across restarts); `tfa_policy_worker_info{worker,
  pid}` says which worker a target is. Its log lines say "[worker I]" (JSON:
  "worker": I).
- stdout gets the usual two lines once: "listening" when every worker
  listens (with every worker's metrics URL), "serving" when every worker
  serves.
- SIGTERM or SIGINT: every worker gets SIGTERM and drains (NOT_SERVING,
  every accepted request answered); the exit code is 0 when all exited
  cleanly, else 1. Workers still running DRAIN_TIMEOUT s later are killed.
- A worker that dies while the server runs is started again after a backoff
  (RESTART_BACKOFF s, doubling up to MAX_BACKOFF); the others serve
  meanwhile. More than MAX_RESTARTS within RESTART_WINDOW s, or a worker that
  fails before the server first served (a policy that does not load, a port
  it cannot bind), stops every worker: exit code 1.
- Workers get SIGTERM (and drain) if the supervisor dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Sequence

from policy_server.telemetry import logs

logger = logging.getLogger("policy_server.cli.supervisor")

SUPERVISOR_ENV = "TFA_POLICY_SUPERVISOR_PID"
RESTART_BACKOFF = 0.5
MAX_BACKOFF = 30.0
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
DRAIN_TIMEOUT = 60.0
_PR_SET_PDEATHSIG = 1
_LISTENING = re.compile(r"^policy-server listening on (\S+) \(loading policies\)(?:; metrics on (\S+))?")
_SERVING = re.compile(r"^policy-server serving (.*) on (\S+)$")


# ------------------------------------------------------------------ in a worker


def join_supervisor() -> None:
    """In a worker: get SIGTERM when the supervisor dies; exit at once if it is already gone."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: nothing follows the supervisor
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    expected = os.environ.get(SUPERVISOR_ENV, "")
    if expected.isdigit() and os.getppid() != int(expected):
        raise SystemExit("policy-server: worker: its supervisor is gone")


def tag_logs(handler: logging.Handler, index: int) -> None:
    """Marks a worker's log lines: "[worker I]" in text, a "worker" field in JSON."""
    def add_worker(record: logging.LogRecord) -> bool:
        record.worker = index
        return True

    handler.addFilter(add_worker)
    if not isinstance(handler.formatter, logs.JsonFormatter):
        handler.setFormatter(logging.Formatter(logs.TEXT_FORMAT.replace("%(name)s:", f"%(name)s [worker {index}]:")))


def describe_worker(server: Any, index: int) -> None:
    """Adds `tfa_policy_worker_info{worker, pid} 1` to a server's metrics (if it has any)."""
    if server.metrics is None:
        return
    from prometheus_client import Gauge  # pylint: disable=import-outside-toplevel

    info = Gauge("tfa_policy_worker_info", "This worker of policy-server --workers: its index and process id",
                 ["worker", "pid"], registry=server.metrics.registry)
    info.labels(str(index), str(os.getpid())).set(1)


# ------------------------------------------------------------------ the supervisor


def tcp_address(args: argparse.Namespace) -> tuple[str, int]:
    """(host, port) the workers bind, from --address or --host/--port.

    Raises:
      SystemExit: a Unix socket or an address that is not HOST:PORT.
    """
    address = args.address or f"{args.host}:{args.port}"
    host, sep, port = address.rpartition(":")
    if address.startswith("unix:") or not sep or not port.isdigit() or not host:
        raise SystemExit(f"policy-server: --workers needs a TCP address HOST:PORT that SO_REUSEPORT can share, "
                         f"got {address!r}")
    return host.strip("[]"), int(port)


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to host:port with SO_REUSEPORT: the port workers share (0: a free one).

    Raises:
      SystemExit: SO_REUSEPORT is missing, or the port is taken by a process that does not share it.
    """
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                           flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as e:
        raise SystemExit(f"policy-server: cannot bind {host}:{port}: {e}") from None
    try:
        if not hasattr(socket, "SO_REUSEPORT"):
            raise OSError("this platform has no SO_REUSEPORT")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(where)
    except OSError as e:
        sock.close()
        raise SystemExit(f"policy-server: --workers cannot bind {host}:{port}: {e.strerror or e}") from None
    return sock


def _free_ports(host: str, count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]


class _Worker:
    """One worker slot: its current process and what it said on stdout."""

    def __init__(self, index: int):
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self.listening: str | None = None  # its metrics URL ("" without metrics) once it listens
        self.serving: tuple[str, str] | None = None  # (policies, address) once it serves
        self.restart_at: float | None = None
        self.deaths: collections.deque = collections.deque()


class Supervisor:
    """Runs, watches and stops the workers of `policy-server --workers N` (see the module doc).

    Args:
      args: the parsed flags (args.workers > 1).
      argv: the command line the flags came from (given again to every worker).
    """

    def __init__(self, args: argparse.Namespace, argv: Sequence[str]):
        self.args, self.argv, self.count = args, list(argv), args.workers
        self.host, port = tcp_address(args)
        if args.metrics_port and args.metrics_port + self.count - 1 > 65535:
            raise SystemExit(f"policy-server: --metrics-port {args.metrics_port} + {self.count} workers passes 65535")
        self._reserved = reserve_port(self.host, port)
        self.port = self._reserved.getsockname()[1]
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.address = f"{shown}:{self.port}"
        self.metrics_ports = [] if args.metrics_port is None else \
            _free_ports(args.metrics_host, self.count) if args.metrics_port == 0 else \
            [args.metrics_port + i for i in range(self.count)]
        self.workers = [_Worker(i) for i in range(self.count)]
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.signal: int | None = None
        self.announced = [False, False]  # listening, serving

    def command(self, index: int) -> list[str]:
        """The command line of worker `index`."""
        extra = ["--workers", "1", "--address", self.address, "--worker-index", str(index)]
        if self.metrics_ports:
            extra += ["--metrics-port", str(self.metrics_ports[index])]
        return [sys.executable, "-m", "policy_server.cli", *self.argv, *extra]

    def run(self) -> int:
        """Starts the workers and supervises them until a signal (or failure); the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        logger.info("starting %d workers on %s (SO_REUSEPORT)", self.count, self.address,
                    extra={"event": "workers", "address": self.address, "workers": self.count})
        try:
            for worker in self.workers:
                self._start(worker)
            code = self._watch()
            return self._drain(code)
        except OSError as e:  # a worker process could not be started at all
            logger.error("cannot start a worker: %s", e, extra={"event": "worker_failed"})
            return 1
        finally:
            for worker in self.workers:  # nothing outlives the supervisor, whatever happened
                if worker.proc is not None and worker.proc.poll() is None:
                    worker.proc.kill()
                    worker.proc.wait()
            self._reserved.close()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signal is None:
            self.signal = signum

    def _start(self, worker: _Worker) -> None:
        worker.generation += 1
        worker.listening = worker.serving = worker.restart_at = None
        env = {**os.environ, SUPERVISOR_ENV: str(os.getpid())}
        # Its own process group: a terminal's Ctrl-C reaches the supervisor alone, which drains every worker.
        worker.proc = subprocess.Popen(self.command(worker.index), stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                       env=env, text=True, errors="replace", process_group=0)
        threading.Thread(target=self._read, args=(worker.index, worker.generation, worker.proc.stdout),
                         name=f"worker-{worker.index}-stdout", daemon=True).start()

    def _read(self, index: int, generation: int, stream: Any) -> None:
        for line in stream:
            self.events.put((index, generation, line.rstrip("\n")))

    def _watch(self) -> int:
        """Until a signal (0) or a failure (1): reads the workers' lines, restarts those that die."""
        while self.signal is None:
            try:
                index, generation, line = self.events.get(timeout=0.1)
            except queue.Empty:
                pass
            else:
                self._line(self.workers[index], generation, line)
            now = time.monotonic()
            for worker in self.workers:
                if worker.restart_at is not None:
                    if now >= worker.restart_at:
                        self._start(worker)
                elif worker.proc.poll() is not None and not self._died(worker, now):
                    return 1
        logger.info("received %s: draining %d workers (every accepted request is answered)",
                    signal.Signals(self.signal).name, self.count, extra={"event": "draining"})
        return 0

    def _died(self, worker: _Worker, now: float) -> bool:
        """A worker exited on its own: schedules its restart; False if the server must stop instead."""
        code, pid = worker.proc.returncode, worker.proc.pid
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        if not self.announced[1]:
            logger.error("worker %d (pid %d) ended with %s before the server served: stopping", worker.index, pid,
                         how, extra={"event": "worker_failed", "worker": worker.index})
            return False
        worker.deaths.append(now)
        while worker.deaths and worker.deaths[0] < now - RESTART_WINDOW:
            worker.deaths.popleft()
        if len(worker.deaths) > MAX_RESTARTS:
            logger.error("worker %d (pid %d) ended with %s, its %d. end in %.0f s: stopping", worker.index, pid, how,
                         len(worker.deaths), RESTART_WINDOW, extra={"event": "worker_failed", "worker": worker.index})
            return False
        delay = min(MAX_BACKOFF, RESTART_BACKOFF * 2 ** (len(worker.deaths) - 1))
        logger.warning("worker %d (pid %d) ended with %s; restarting it in %.1f s", worker.index, pid, how, delay,
                       extra={"event": "worker_restart", "worker": worker.index})
        worker.restart_at = now + delay
        return True

    def _line(self, worker: _Worker, generation: int, line: str) -> None:
        """A line a worker printed: its listening and serving announcements, or anything else (passed on)."""
        if generation != worker.generation:
            return
        event = _event(line)
        if event is None:
            print(line, flush=True)
            return
        if event[0] == "listening":
            worker.listening = event[1] or ""
        elif event[0] == "ready":
            worker.serving = (event[1], event[2])
            if self.announced[1]:
                logger.info("worker %d (pid %d) serves again", worker.index, worker.proc.pid,
                            extra={"event": "worker_serving", "worker": worker.index})
        if not self.announced[0] and all(w.listening is not None for w in self.workers):
            self.announced[0] = True
            urls = [w.listening for w in self.workers if w.listening]
            self._announce(f"policy-server listening on {self.address} (loading policies)"
                           f"{'; metrics on ' + ', '.join(urls) if urls else ''}",
                           event="listening", address=self.address, metrics=",".join(urls) or None)
        if self.announced[0] and not self.announced[1] and all(w.serving for w in self.workers):
            self.announced[1] = True
            self._announce(f"policy-server serving {worker.serving[0]} on {self.address}", event="ready",
                           address=self.address, policies=worker.serving[0].replace(", ", ","))

    def _announce(self, line: str, **fields: Any) -> None:
        fields["workers"] = self.count
        text = logs.json_line(line, logger="policy_server", **fields) if self.args.log_format == "json" else line
        print(text, flush=True)

    def _drain(self, code: int) -> int:
        """SIGTERM to every worker, then waits (killing what is left after DRAIN_TIMEOUT); the exit code."""
        running = [w for w in self.workers if w.restart_at is None and w.proc.poll() is None]
        for worker in running:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        for worker in running:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("worker %d (pid %d) did not stop within %.0f s: killing it", worker.index,
                             worker.proc.pid, DRAIN_TIMEOUT)
                worker.proc.kill()
                worker.proc.wait()
                code = 1
            # -SIGTERM: it had not yet set up its handler, so it had not opened the port (nothing accepted).
            if worker.proc.returncode not in (0, -signal.SIGTERM):
                code = 1
        with contextlib.suppress(queue.Empty):
            while True:  # what the workers printed last
                index, generation, line = self.events.get_nowait()
                if _event(line) is None and generation == self.workers[index].generation:
                    print(line, flush=True)
        logger.info("every worker stopped" if code == 0 else "workers stopped (see the errors above)",
                    extra={"event": "stopped"})
        return code


def _event(line: str) -> tuple[str, str | None, str] | None:
    """("listening", metrics URL, address) or ("ready", policies, address) for a worker's announcement."""
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            return None
        if isinstance(entry, dict) and entry.get("event") in ("listening", "ready"):
            detail = entry.get("metrics") if entry["event"] == "listening" else \
                (entry.get("policies") or "").replace(",", ", ")
            return entry["event"], detail, entry.get("address", "")
        return None
    match = _LISTENING.match(line)
    if match:
        return "listening", match.group(2), match.group(1)
    match = _SERVING.match(line)
    return ("ready", match.group(1), match.group(2)) if match else None


def supervise(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """`policy-server --workers N`: runs N workers until SIGTERM/SIGINT; the exit code."""
    return Supervisor(args, sys.argv[1:] if argv is None else argv).run()
