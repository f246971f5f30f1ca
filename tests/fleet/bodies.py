"""What the fleet tests run inside Ray actors: an actor body that checks every answer, and a learner.

Both act on EchoBackend replicas, whose action is 2 * observation + bias;
the learner pushes bias = version with every version, so every answer must
be 2 * observation + the version that answered. An observation is unique
to (actor, incarnation, step): an answer crossed between actors or steps,
or one that belongs to another version, fails the check.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable

import numpy as np
import ray

from policy_client import FanOutPublisher, PolicyClient
from policy_client.wire.standins import TimeStep

POLICY = "echo"


def echo_time_step(observation: np.ndarray) -> TimeStep:
    """A FIRST time step for EchoBackend, built without TensorFlow (fleet actors never import it)."""
    return TimeStep(np.array(0, np.int32), np.array(0, np.float32), np.array(1, np.float32), observation)


class CheckedEcho:
    """A fleet body: `calls_per_run` checked calls per run, versions never older than one already seen."""

    def __init__(self, index: int, target: Callable[[], str], calls_per_run: int = 20, timeout: float = 60.0):
        self.index, self.calls_per_run = index, calls_per_run
        self.client = PolicyClient(target, POLICY, timeout=timeout)
        self.incarnation = random.randrange(1, 1000)
        self.step = 0
        self.calls = self.ok = self.wrong = self.failed = self.backwards = 0
        self.versions: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        for _ in range(self.calls_per_run):
            observation = np.array([self.index, self.incarnation, self.step], np.float32)
            self.step += 1
            self.calls += 1
            try:
                result = self.client.action(echo_time_step(observation), {"count": np.array(0, np.int64)})
            except Exception as e:  # pylint: disable=broad-except
                self.failed += 1
                if len(self.errors) < 3:
                    self.errors.append(f"{type(e).__name__}: {e}"[:300])
                continue
            version = result.version
            expected = 2 * observation + np.float32(version)
            if np.array_equal(result.policy_step.action, expected):
                self.ok += 1
            else:
                self.wrong += 1
            if self.versions and version < self.versions[-1]:
                self.backwards += 1
            first = self.versions[0] if self.versions else version
            self.versions = [first, max([version, *self.versions[-1:]])]
            self.client.min_version = self.versions[-1]  # as RemotePolicy does: never an older version

    def report(self) -> dict[str, Any]:
        return {"versions": tuple(self.versions), "backwards": self.backwards, "target": self.client.address,
                "plane": self.client.data_plane, "calls": self.calls, "ok": self.ok, "wrong": self.wrong, "failed": self.failed,
                "errors": list(self.errors)}

    def close(self) -> None:
        self.client.close()


class Learner:
    """A Ray actor that pushes a new version to every replica every `period` seconds.

    It starts from the newest version the replicas serve (as a learner
    restored from its checkpoint resumes at its train step), so a restarted
    learner goes on where the last one stopped.
    """

    def __init__(self, replicas: Any, period: float = 0.2):
        self.replicas, self.period = replicas, period
        self.started = time.time()
        self.publisher = FanOutPublisher(replicas, POLICY, timeout=10.0)
        self.version = max(self._served(), default=0)
        self.first = self.version
        self.pushes = self.failures = 0
        self._stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _served(self) -> list[int]:
        return [p["version"] for stats in self.replicas.stats().values() for p in stats if p["policy"] == POLICY]

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.version += 1
            result = self.publisher.push([np.float32(self.version)], self.version)
            self.pushes += 1
            self.failures += len(result.errors)
            time.sleep(self.period)

    def report(self) -> dict[str, Any]:
        return {"started": self.started, "first": self.first, "version": self.version, "pushes": self.pushes,
                "failures": self.failures}

    def stop(self) -> None:
        self._stop.set()


def start_learner(replicas: Any, period: float = 0.2) -> Any:
    """The learner as a Ray actor that Ray restarts once when it dies."""
    return ray.remote(Learner).options(num_cpus=0.5, max_restarts=1, max_task_retries=-1).remote(replicas, period)
