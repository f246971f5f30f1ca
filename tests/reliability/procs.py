"""Policy servers as subprocesses that can be SIGKILLed, SIGTERMed and restarted on the same port.

Each server runs `python -m policy_server.cli` through a tiny launcher that
asks the kernel to SIGKILL it when the thread that started it dies
(PR_SET_PDEATHSIG), caps its address space (RLIMIT_AS, so a request that asks
for a huge allocation fails with MemoryError there instead of waking the OOM
killer on a shared machine) and then execs the CLI. Servers get their own
process group and are killed in `close()` (and at interpreter exit): no
orphan survives a failed test. Start servers from a long-lived thread (the
main thread): the death signal follows the starting thread.

stdout and stderr go to files (no pipe can fill up); `wait_serving` polls
stdout for the CLI's "policy-server serving ..." line.
"""

from __future__ import annotations

import atexit
import errno
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Mapping, Sequence

REPO = Path(__file__).resolve().parents[2]
# The CLI serving an EchoBackend loads in about 3 s here; under load much longer.
START_TIMEOUT = 120.0
# Normal servers peak near 2.5 GB of address space (TensorFlow); 6 GB leaves room for big messages.
DEFAULT_ADDRESS_SPACE = 6 << 30

_LAUNCHER = """
import ctypes, os, resource, signal, sys
parent, limit = int(sys.argv[1]), int(sys.argv[2])
ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the thread that started us
if os.getppid() != parent:
    os._exit(70)
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
os.execv(sys.executable, [sys.executable, "-m", *sys.argv[3:]])
"""

_LIVE: "weakref.WeakSet[ServerProcess]" = weakref.WeakSet()


def _kill_all() -> None:
    for server in list(_LIVE):
        server.close()


atexit.register(_kill_all)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Whether a listener could bind 127.0.0.1:port now (with SO_REUSEADDR, as gRPC binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def wait_port_free(port: int, timeout: float = 30.0) -> float:
    """Waits until the port can be bound again; returns the seconds waited.

    Raises:
      TimeoutError: still taken after `timeout`.
    """
    started = time.monotonic()
    while not port_is_free(port):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"port {port} still in use after {timeout:.0f}s")
        time.sleep(0.02)
    return time.monotonic() - started


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, VmSize and Threads of a process (bytes for the Vm* values); {} once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "VmSize"):
            found[key] = int(value.split()[0]) * 1024
        elif key == "Threads":
            found[key] = int(value)
    return found


def launch(module_args: Sequence[str], stdout: Path, stderr: Path, env: Mapping[str, str],
           address_space: int = 0) -> subprocess.Popen:
    """Starts `python -m MODULE ARGS...` through the launcher: own process group, dies with this thread."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path, **env}
    cmd = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), str(address_space), *module_args]
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        return subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=REPO, env=environment,
                                start_new_session=True)


def _kill_group(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
        pass


class ServerProcess:
    """One `policy-server` subprocess on a fixed port, restartable.

    Args:
      factories: "NAME=MODULE:CALLABLE" for each --factory.
      port: the port (picked once, kept across restarts); None picks a free one.
      args: further CLI flags.
      env: extra environment variables (e.g. backends.VERSION_ENV).
      address_space: RLIMIT_AS of the server in bytes (0: none).
    """

    def __init__(self, factories: Sequence[str], *, port: int | None = None, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, address_space: int = DEFAULT_ADDRESS_SPACE):
        self.factories = list(factories)
        self.port = port or free_port()
        self.args = list(args)
        self.env = dict(env or {})
        self.address_space = address_space
        self.proc: subprocess.Popen | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="reliability-server-"))
        self._generation = 0
        self.stdout_path = self.stderr_path = self._dir / "none"
        _LIVE.add(self)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, wait: bool = True, timeout: float = START_TIMEOUT, env: Mapping[str, str] | None = None,
              port_timeout: float = 30.0) -> float:
        """Starts the server (after the port is free again); returns the seconds until it serves (0 if not waited).

        Raises:
          RuntimeError: it exited or did not serve in time (it is killed then).
        """
        assert not self.alive, "already running"
        wait_port_free(self.port, port_timeout)
        self._generation += 1
        self.stdout_path = self._dir / f"stdout.{self._generation}"
        self.stderr_path = self._dir / f"stderr.{self._generation}"
        flags = [flag for f in self.factories for flag in ("--factory", f)]
        started = time.monotonic()
        self.proc = launch(["policy_server.cli", *flags, "--host", "127.0.0.1", "--port", str(self.port),
                            "--stats-interval", "0", "--log-level", "WARNING", *self.args],
                           self.stdout_path, self.stderr_path, {**self.env, **(env or {})}, self.address_space)
        if not wait:
            return 0.0
        self.wait_serving(timeout)
        return time.monotonic() - started

    def wait_serving(self, timeout: float = START_TIMEOUT) -> None:
        """Waits for the "serving" line.

        Raises:
          RuntimeError: the server exited first, or `timeout` passed (it is killed then).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(r"^policy-server serving ", self.stdout_path.read_text(errors="replace"), re.M):
                return
            if not self.alive:
                raise RuntimeError(f"policy server exited with {self.proc.returncode}:\n{self.stderr()[-3000:]}")
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"policy server did not serve within {timeout:.0f}s:\n{self.stderr()[-3000:]}")

    def kill(self) -> int | None:
        """SIGKILL to the server's process group, then reap it; the exit code."""
        _kill_group(self.proc)
        return None if self.proc is None else self.proc.returncode

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful stop), wait up to `timeout`, SIGKILL if still there; the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def status(self) -> dict[str, int]:
        """VmRSS / VmHWM / VmSize (bytes) and Threads of the running server ({} when not running)."""
        return proc_status(self.proc.pid) if self.alive else {}

    def rss(self) -> int:
        return self.status().get("VmRSS", 0)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def close(self) -> None:
        """Kills the server if it runs (idempotent)."""
        self.kill()

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class HelperProcess:
    """A client process (`python -m tests.reliability.clients ...`) that prints "ready" once set up.

    It stops by itself after the seconds it is given; `close()` kills it (process group) in any case.
    """

    def __init__(self, args: Sequence[str]):
        self._dir = Path(tempfile.mkdtemp(prefix="reliability-client-"))
        self.stdout_path, self.stderr_path = self._dir / "stdout", self._dir / "stderr"
        self.proc = launch(["tests.reliability.clients", *args], self.stdout_path, self.stderr_path, {})
        _LIVE.add(self)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> str:
        """Waits for the "ready ..." line and returns it.

        Raises:
          RuntimeError: the helper exited first, or did not get ready in time (it is killed then).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"^ready.*$", self.stdout_path.read_text(errors="replace"), re.M)
            if match:
                return match.group(0)
            if self.proc.poll() is not None:
                raise RuntimeError(f"client helper exited with {self.proc.returncode}:\n"
                                   f"{self.stderr_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.02)
        self.close()
        raise RuntimeError("client helper did not get ready in time")

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int | None:
        """Waits for it to end by itself (killing it after `timeout`); the exit code."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            return None

    def close(self) -> None:
        _kill_group(self.proc)

    def __enter__(self) -> "HelperProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
