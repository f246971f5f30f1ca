"""Actor threads that check every answer they get, and latency probes.

An `EchoActor` drives one RemotePolicy (its own channel and stream) against
an EchoBackend: its step j sends the observation [actor, j, 0], so the
answer `2 * observation + version` says which actor and which step it
answers and which server generation (version) made it; the state {"count"}
must come back one higher every call. A wrong answer is *crossed* (another
actor's, or another step's) or *duplicated* (an earlier step's answer
again); a call that raised is *failed*, one that ran out of its deadline is
also *lost*. The longest pause is the longest time between two answers of
one actor.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any, Sequence

import numpy as np
from tf_agents.trajectories import time_step as ts

from policy_client import RemotePolicy
from policy_client.wire import errors


@dataclasses.dataclass
class Tally:
    """What one actor (or all of them, summed) saw."""

    calls: int = 0
    ok: int = 0
    failed: int = 0
    lost: int = 0
    duplicated: int = 0
    crossed: int = 0
    backwards: int = 0  # answers of an older version than one the actor already had
    longest_pause: float = 0.0
    errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    versions: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    latencies: list = dataclasses.field(default_factory=list)  # (start time.monotonic(), seconds)
    samples: list = dataclasses.field(default_factory=list)  # a few failure descriptions

    def add(self, other: "Tally") -> None:
        for field in ("calls", "ok", "failed", "lost", "duplicated", "crossed", "backwards"):
            setattr(self, field, getattr(self, field) + getattr(other, field))
        self.longest_pause = max(self.longest_pause, other.longest_pause)
        self.errors.update(other.errors)
        self.versions.update(other.versions)
        self.latencies.extend(other.latencies)
        self.samples = (self.samples + other.samples)[:10]

    @property
    def wrong(self) -> int:
        return self.duplicated + self.crossed

    def latencies_between(self, start: float, end: float) -> list[float]:
        return [d for t, d in self.latencies if start <= t and t + d <= end]


def total(tallies: Sequence[Tally]) -> Tally:
    summed = Tally()
    for tally in tallies:
        summed.add(tally)
    return summed


def percentile_ms(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q)) if len(values) else float("nan")


class EchoActor(threading.Thread):
    """One actor: a RemotePolicy on the "echo" policy, acting until `stop` is set.

    Args:
      index: the actor's number (its observations carry it).
      address: the server.
      transport: "stream" or "unary" (gRPC), or "shm" (the shared-memory data plane, negotiated).
      stop: set to end the loop (after the call in flight).
      timeout: each call's deadline (seconds).
      policy: an already built RemotePolicy to use instead of a new one.
      pace: seconds to sleep between calls (0: closed loop).
    """

    def __init__(self, index: int, address: str, transport: str, stop: threading.Event, *, timeout: float = 30.0,
                 policy: str = "echo", pace: float = 0.0):
        super().__init__(name=f"echo-actor-{index}", daemon=True)
        self.index = index
        self.transport = transport
        self.stop = stop
        self.pace = pace
        self.tally = Tally()
        # "shm": the same-host shared-memory data plane (its slot breaks and is opened again across
        # restarts); "stream" and "unary" keep to gRPC, so that every path is under fault.
        self.remote = RemotePolicy(address, policy, transport="stream" if transport == "shm" else transport,
                                   timeout=timeout, data_plane="auto" if transport == "shm" else "grpc")
        self.answered = threading.Event()  # set at each good answer (cleared by whoever waits for one)
        self.last_version = -1

    def run(self) -> None:
        tally = self.tally
        try:
            state = self.remote.get_initial_state()
            count = int(state["count"])
            last = time.monotonic()
            step = 0
            while not self.stop.is_set():
                observation = np.array([self.index, step, 0], np.float32)
                started = time.monotonic()
                tally.calls += 1
                try:
                    answer = self.remote.action(ts.restart(observation), state)
                except Exception as e:  # pylint: disable=broad-except
                    tally.failed += 1
                    tally.lost += isinstance(e, (errors.DeadlineExceededError, TimeoutError))
                    tally.errors[type(e).__name__] += 1
                    if len(tally.samples) < 5:
                        tally.samples.append(f"actor {self.index} step {step}: {type(e).__name__}: {e}"[:300])
                    step += 1
                    continue
                now = time.monotonic()
                tally.latencies.append((started, now - started))
                version = int(answer.info["version"])
                if self._check(answer, observation, version, count, step):
                    tally.ok += 1
                    tally.versions[version] += 1
                    tally.longest_pause = max(tally.longest_pause, now - last)
                    last = now
                    count += 1
                    state = answer.state
                    self.last_version = version
                    self.answered.set()
                step += 1
                if self.pace:
                    time.sleep(self.pace)
        finally:
            self.remote.close()

    def _check(self, answer: Any, observation: np.ndarray, version: int, count: int, step: int) -> bool:
        action = np.asarray(answer.action)
        if action.shape == (3,) and np.array_equal(action, 2 * observation + version) and \
                int(answer.state["count"]) == count + 1:
            return True
        decoded = (action - version) / 2 if action.shape == (3,) else np.full(3, np.nan)
        if decoded[0] == self.index and decoded[1] < step:
            self.tally.duplicated += 1
            kind = "duplicated"
        else:
            self.tally.crossed += 1
            kind = "crossed"
        if len(self.tally.samples) < 5:
            self.tally.samples.append(f"actor {self.index} step {step}: {kind} answer {action.tolist()} "
                                      f"(version {version}, count {answer.state['count']} after {count})")
        return False


class Actors:
    """A group of EchoActors: start, wait until each has an answer from a version, stop, sum up."""

    def __init__(self, address: str, transports: Sequence[str], *, timeout: float = 30.0, pace: float = 0.0,
                 first_index: int = 0):
        self.stop = threading.Event()
        self.actors = [EchoActor(first_index + i, address, t, self.stop, timeout=timeout, pace=pace)
                       for i, t in enumerate(transports)]
        self.timeout = timeout

    def start(self) -> "Actors":
        for actor in self.actors:
            actor.start()
        return self

    def wait_for_version(self, version: int, timeout: float) -> bool:
        """Waits until every actor has had a good answer from `version` or later; whether they all did."""
        deadline = time.monotonic() + timeout
        for actor in self.actors:
            while actor.last_version < version and actor.is_alive():
                if time.monotonic() > deadline:
                    return False
                actor.answered.wait(0.05)
                actor.answered.clear()
        return all(a.last_version >= version for a in self.actors)

    def finish(self) -> Tally:
        """Stops every actor (bounded by the calls' deadline) and sums their tallies."""
        self.stop.set()
        for actor in self.actors:
            actor.join(self.timeout + 10)
        stuck = [a.index for a in self.actors if a.is_alive()]
        tally = total([a.tally for a in self.actors])
        if stuck:
            tally.samples.append(f"actors {stuck} still in a call {self.timeout + 10:.0f}s after stop")
        return tally

    def __enter__(self) -> "Actors":
        return self.start()

    def __exit__(self, *exc) -> None:
        if not self.stop.is_set():
            self.finish()
