"""`policy-server` as a process for the operations tests: started on a free port, always killed at the end."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
ECHO = ["--factory", "echo=tests.support.fakes:EchoBackend"]


class Running:
    """A policy-server process: its stdout lines as they come, its stderr in a file."""

    def __init__(self, proc: subprocess.Popen, stderr_path: Path):
        self.proc = proc
        self.stderr_path = stderr_path
        self.lines: queue.SimpleQueue = queue.SimpleQueue()
        self.stdout: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 120.0) -> re.Match:
        """The first stdout line from now on that matches `pattern`.

        Raises:
          AssertionError: the process exited, or no such line within `timeout`.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.stdout.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no stdout line matching {pattern!r} (exit code {self.proc.poll()}); stdout "
                             f"{self.stdout}, stderr:\n{self.stderr[-3000:]}")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited `timeout` s later; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        while not self.lines.empty():
            self.stdout.append(self.lines.get())
        return self.proc.returncode


@contextlib.contextmanager
def policy_server(flags: list[str], tmp_path: Path, *, env: dict[str, str | None] | None = None,
                  port: bool = True) -> Iterator[Running]:
    """Runs `python -m policy_server.cli [--port 0] FLAGS` from the repository root; killed on the way out.

    `env` adds to the environment (None removes a variable).
    """
    cmd = [sys.executable, "-m", "policy_server.cli", *(["--port", "0"] if port else []), *flags]
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    environment = {k: v for k, v in environment.items() if v is not None}
    stderr_path = tmp_path / f"stderr-{time.monotonic_ns()}"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=environment, cwd=ROOT)
    try:
        yield Running(proc, stderr_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
