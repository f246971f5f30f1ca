"""The tritonclient peer (triton_peer.py under .venv-triton) as a test helper, and time steps as OIP inputs."""

from __future__ import annotations

import json
import pathlib
import queue
import subprocess
import threading
from typing import Any

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TRITON_PYTHON = ROOT / ".venv-triton" / "bin" / "python"
PEER = pathlib.Path(__file__).with_name("triton_peer.py")
ANSWER_WAIT = 30.0


class TritonPeer:
    """One tritonclient process talking to `address`; `call(op=..., ...)` sends a command and returns its answer."""

    def __init__(self, address: str):
        if not (TRITON_PYTHON.parent.parent / ".installed").exists():
            pytest.fail("tritonclient is not installed: run `make triton-client` (creates .venv-triton)")
        self.process = subprocess.Popen([str(TRITON_PYTHON), str(PEER), address], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def call(self, **command: Any) -> dict[str, Any]:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        try:
            line = self._lines.get(timeout=ANSWER_WAIT)
        except queue.Empty:
            pytest.fail(f"the tritonclient peer did not answer {command['op']} within {ANSWER_WAIT:.0f} s")
        if line is None:
            pytest.fail(f"the tritonclient peer exited: {self.process.wait(5)}; stderr: {self.process.stderr.read()}")
        return json.loads(line)

    def infer(self, model: str, inputs: dict[str, Any], **options: Any) -> dict[str, Any]:
        return self.call(op="infer", model=model, inputs=inputs, **options)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.close()
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(5)


def tensor(value: Any, datatype: str) -> dict[str, Any]:
    array = np.asarray(value)
    return {"datatype": datatype, "shape": list(array.shape), "data": array.reshape(-1).tolist()}


def time_step_inputs(time_step: Any) -> dict[str, Any]:
    """A CartPole time step (unbatched) as the OIP inputs of one row."""
    return {"step_type": tensor([time_step.step_type], "INT32"), "reward": tensor([time_step.reward], "FP32"),
            "discount": tensor([time_step.discount], "FP32"),
            "observation": tensor(np.asarray(time_step.observation)[None], "FP32")}
