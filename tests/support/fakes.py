"""Deterministic test backends: numpy only, so batching and serving are checked exactly."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
from tf_agents.specs import array_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

from policy_client.wire.standins import PolicySpecs
from policy_server.backends.base import Backend, VariableSpec

OBSERVATION_SPEC = array_spec.ArraySpec((3,), np.float32, name="observation")
ACTION_SPEC = array_spec.BoundedArraySpec((3,), np.float32, -1e9, 1e9, name="action")
STATE_SPEC = {"count": array_spec.ArraySpec((), np.int64, name="count")}
INFO_SPEC = {"version": array_spec.ArraySpec((), np.int64, name="version")}


def echo_time_step(observation: Any, batch_size: int | None = None) -> ts.TimeStep:
    """A FIRST time step for EchoBackend (batched when batch_size is given)."""
    observation = np.asarray(observation, np.float32)
    if batch_size is None:
        return ts.restart(observation)
    return ts.restart(observation, batch_size=batch_size)


class EchoBackend(Backend):
    """action = 2 * observation + bias; the state counts calls per row.

    The bias is the version until a push sets the "echo/bias" variable, so a
    pushed version is visible in every action.

    Each output row depends on its own input row only, so cross-talk between
    requests shows up as a wrong action. Records every batch size it sees.

    Args:
      delay: seconds each call sleeps (a slow model).
      stateful: whether the policy has a state {"count": int64}.
      version: the initial version.
      gate: when set, each call waits for it (to hold a batch in flight).
    """

    kind = "echo"

    def __init__(self, *, delay: float = 0.0, stateful: bool = True, version: int = 0,
                 gate: threading.Event | None = None):
        specs = PolicySpecs(ts.time_step_spec(OBSERVATION_SPEC), ACTION_SPEC,
                            STATE_SPEC if stateful else (), INFO_SPEC, None)
        super().__init__(specs, version)
        self.delay = delay
        self.gate = gate
        self.stateful = stateful
        self.batch_sizes: list[int] = []
        self.seeds: list[int | None] = []
        self.bias: float | None = None  # set by a push; until then the version is the bias

    def variable_specs(self) -> list[VariableSpec]:
        return [VariableSpec("echo/bias:0", (), np.dtype(np.float32))]

    def variable_values(self) -> list[np.ndarray]:
        return [np.float32(self.version if self.bias is None else self.bias)]

    def assign_variables(self, values: Any) -> None:
        self.bias = float(values[0])

    def action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        rows = len(time_step.step_type)
        self.batch_sizes.append(rows)
        self.seeds.append(seed)
        if self.gate is not None:
            self.gate.wait(30)
        if self.delay:
            time.sleep(self.delay)
        bias = self.version if self.bias is None else self.bias
        action = (time_step.observation * 2 + bias).astype(np.float32)
        if seed is not None:
            action = action + np.float32(seed % 1000)
        state = {"count": policy_state["count"] + 1} if self.stateful else ()
        return policy_step.PolicyStep(action, state, {"version": np.full(rows, self.version, np.int64)})

    def initial_state(self, batch_size: int | None) -> Any:
        if not self.stateful:
            return ()
        return {"count": np.zeros((batch_size,) if batch_size else (), np.int64)}


class FailingBackend(EchoBackend):
    """Raises on any batch that holds an observation with a NaN."""

    kind = "failing"

    def action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        if np.isnan(time_step.observation).any():
            raise RuntimeError("NaN in observation")
        return super().action(time_step, policy_state, seed)


def slow_loading_echo() -> EchoBackend:
    """An EchoBackend that takes $SLOW_ECHO_SECONDS (default 5) to load: a replica still loading."""
    time.sleep(float(os.environ.get("SLOW_ECHO_SECONDS", "5")))
    return EchoBackend()
