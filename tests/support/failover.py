"""Replicas behind one `ipv4:` target, actors that check every answer, faults, and the figures of a run.

`Replicas` runs N `policy-server` subprocesses (tests/reliability/procs.py:
own process group, killed at the end) on free 127.0.0.1 ports. `FailoverActor`
drives one RemotePolicy on the `ipv4:a,b,c` target (round robin, health
checked, versions monotonic by default) and checks each answer with a
function of (actor, step, answer, version): a wrong answer is one crossed
between actors or steps, or duplicated. It also counts versions that went
backwards for the actor. `run_failover` runs the actors while a `fault`
function kills and restarts replicas, and returns the figures.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

from policy_client import RemotePolicy
from policy_client.wire import errors
from tests.reliability.actors import Tally
from tests.reliability.procs import ServerProcess


class Replicas:
    """N policy-server processes serving the same flags, each on its own free port."""

    def __init__(self, n: int, factories: Sequence[str] = (), args: Sequence[str] = ()):
        self.servers = [ServerProcess(list(factories), args=list(args)) for _ in range(n)]

    @property
    def target(self) -> str:
        return "ipv4:" + ",".join(s.address for s in self.servers)

    def start(self, timeout: float = 240.0) -> None:
        """Starts them all at once and waits until each serves."""
        for server in self.servers:
            server.start(wait=False)
        for server in self.servers:
            server.wait_serving(timeout)

    def close(self) -> None:
        for server in self.servers:
            server.close()

    def __enter__(self) -> "Replicas":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


Check = Callable[[int, int, Any, int], bool]  # (actor, step, policy step, version) -> the answer is right
MakeStep = Callable[[int, int], Any]  # (actor, step) -> the time step to send


class FailoverActor(threading.Thread):
    """One actor: RemotePolicy(target) in a closed loop until `stop`; every answer checked."""

    def __init__(self, index: int, target: str, policy: str, make_step: MakeStep, check: Check,
                 stop: threading.Event, *, transport: str = "stream", timeout: float = 60.0):
        super().__init__(name=f"failover-actor-{index}", daemon=True)
        self.index, self.make_step, self.check, self.stop = index, make_step, check, stop
        self.tally = Tally()
        self.remote = RemotePolicy(target, policy, transport=transport, timeout=timeout)
        self.answered = threading.Event()

    def run(self) -> None:
        tally, last_version = self.tally, -1
        try:
            state = self.remote.get_initial_state()
            last, step = time.monotonic(), 0
            while not self.stop.is_set():
                started = time.monotonic()
                tally.calls += 1
                try:
                    answer = self.remote.action(self.make_step(self.index, step), state)
                except Exception as e:  # pylint: disable=broad-except
                    tally.failed += 1
                    tally.lost += isinstance(e, (errors.DeadlineExceededError, TimeoutError))
                    if len(tally.samples) < 5:
                        tally.samples.append(f"actor {self.index} step {step}: {type(e).__name__}: {e}"[:300])
                    step += 1
                    continue
                now = time.monotonic()
                version = self.remote.last_version
                tally.latencies.append((started, now - started))
                if version < last_version:
                    tally.backwards += 1
                    tally.samples.append(f"actor {self.index}: version {last_version} then {version}")
                if self.check(self.index, step, answer, version):
                    tally.ok += 1
                    tally.longest_pause = max(tally.longest_pause, now - last)
                    last = now
                    self.answered.set()
                else:
                    tally.crossed += 1  # check() cannot tell a duplicate from a crossed answer
                    if len(tally.samples) < 5:
                        tally.samples.append(f"actor {self.index} step {step}: wrong answer {answer.action!r} "
                                             f"(version {version})")
                last_version = max(last_version, version)
                state = answer.state
                step += 1
        finally:
            self.remote.close()

    def wait_answered(self, timeout: float) -> bool:
        self.answered.clear()
        return self.answered.wait(timeout)


def _rate(latencies: Sequence[tuple[float, float]], start: float, end: float) -> float | None:
    if end - start <= 0:
        return None
    return sum(1 for t, d in latencies if start <= t and t + d <= end) / (end - start)


def run_failover(actors: Sequence[FailoverActor], fault: Callable[[], None], *, before: float = 2.0,
                 after: float = 2.0, timeout: float = 60.0) -> dict[str, Any]:
    """Runs the actors: `before` s, then `fault()` (kills and restarts replicas), then `after` s; the figures.

    Every actor must be answered before the fault and again after it.
    """
    stop = actors[0].stop
    try:
        for actor in actors:
            actor.start()
        assert all(a.wait_answered(timeout) for a in actors), "an actor got no answer before the fault"
        started = time.monotonic()
        time.sleep(before)
        fault_at = time.monotonic()
        fault()
        restored_at = time.monotonic()
        answered_after = all(a.wait_answered(timeout) for a in actors)
        time.sleep(after)
        ended = time.monotonic()
    finally:
        stop.set()
        for actor in actors:
            actor.join(timeout + 10)
    tallies = [a.tally for a in actors]
    latencies = [x for t in tallies for x in t.latencies]
    during = [d for t, d in latencies if fault_at <= t + d and t <= restored_at]
    return {
        "actors": len(actors), "calls": sum(t.calls for t in tallies), "ok": sum(t.ok for t in tallies),
        "failed": sum(t.failed for t in tallies), "lost": sum(t.lost for t in tallies),
        "wrong (crossed or duplicated)": sum(t.wrong for t in tallies),
        "versions backwards": sum(t.backwards for t in tallies),
        "longest pause ms": round(max(t.longest_pause for t in tallies) * 1e3, 1),
        "max latency during failover ms": round(max(during, default=0.0) * 1e3, 1),
        "max latency ms": round(max((d for _, d in latencies), default=0.0) * 1e3, 1),
        "p50 latency ms": round(float(np.percentile([d for _, d in latencies], 50)) * 1e3, 2) if latencies else None,
        "failover s": round(restored_at - fault_at, 1),
        "actions/s before": _round(_rate(latencies, started, fault_at)),
        "actions/s during": _round(_rate(latencies, fault_at, restored_at)),
        "actions/s after": _round(_rate(latencies, restored_at, ended)),
        "every actor answered after": answered_after, "stuck actors": [a.index for a in actors if a.is_alive()],
        "samples": [s for t in tallies for s in t.samples][:10],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def print_figures(title: str, figures: dict[str, Any]) -> None:
    shown = {k: v for k, v in figures.items() if k != "samples"}
    print(f"\n{title}: " + ", ".join(f"{k} {v}" for k, v in shown.items()), flush=True)
