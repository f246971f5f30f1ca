"""Actor fleets on Ray: M actors as Ray actors, each acting through the replicas, restarted by Ray.

Every fleet actor runs a body (a loop of `run()` calls) on a thread of its
Ray actor, so the driver can ask for its report meanwhile. Its policy's
target prefers the replica on its own node (reached over the shared-memory
plane when the node offers it, as on any host) and otherwise balances over
every replica that serves; it re-reads the target when a replica moves.
Ray restarts a fleet actor that dies (its node lost); the new incarnation
builds its body again and rejoins. `TFAgentsActor` is the body for TF-Agents:
`tf_agents.train.Actor` with a `RemotePolicy` and your observers (a Reverb
observer, typically).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from typing import Any, Callable, Sequence

import ray

from policy_fleet import placement
from policy_fleet.replicas import ReplicaSet

# A body: built in the fleet actor from (its index, the target source of its policy).
BodyFactory = Callable[[int, Callable[[], str]], Any]
_PAUSE_AFTER_ERROR = 0.1


@dataclasses.dataclass(frozen=True)
class ActorReport:
    """What one fleet actor did since its incarnation started.

    Attributes:
      index: its place in the fleet.
      node_id: the Ray node it runs on.
      started: when this incarnation started (time.time()); a restart changes it.
      runs: completed `run()` calls.
      failures: `run()` calls that raised (the first messages are in `errors`).
      versions: the policy versions that acted, oldest first ((first, last), or () before any).
      backwards: how often a version older than one already seen acted.
      target: the replica target its policy uses now.
      detail: what the body reports beside (e.g. env steps, returns).
      errors: the first few failure messages.
    """

    index: int
    node_id: str
    started: float
    runs: int
    failures: int
    versions: tuple[int, ...]
    backwards: int
    target: str
    detail: dict[str, Any]
    errors: tuple[str, ...] = ()


class _FleetActor:
    """The Ray actor of one fleet member: builds its body, and runs it on a thread until stopped."""

    def __init__(self, index: int, replicas: ReplicaSet, body: BodyFactory, prefer_local: bool):
        self.index, self.node_id, self.started = index, placement.node_id(), time.time()
        self.targets = replicas.near(self.node_id) if prefer_local else replicas
        self.body = body(index, self.targets)
        self.runs = self.failures = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"fleet-actor-{index}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.body.run()
                self.runs += 1
            except Exception as e:  # pylint: disable=broad-except  # counted and reported; the actor goes on
                self.failures += 1
                if len(self.errors) < 5:
                    self.errors.append(f"{type(e).__name__}: {e}"[:300])
                time.sleep(_PAUSE_AFTER_ERROR)

    def report(self) -> ActorReport:
        detail = dict(self.body.report())
        versions = tuple(detail.pop("versions", ()))
        backwards = int(detail.pop("backwards", 0))
        target = str(detail.pop("target", ""))
        return ActorReport(self.index, self.node_id, self.started, self.runs, self.failures, versions, backwards,
                           target, detail, tuple(self.errors))

    def stop(self, timeout: float = 30.0) -> ActorReport:
        """Ends the loop after its current run, closes the body, and reports."""
        self._stop.set()
        self._thread.join(timeout)
        report = self.report()
        close = getattr(self.body, "close", None)
        if close is not None:
            close()
        return report


class ActorFleet:
    """`count` actors as Ray actors across the nodes, acting through a ReplicaSet.

    Args:
      replicas: the policy servers the actors use.
      body: builds an actor's body from (its index, the target source of its
        policy): an object with `run()` (one chunk of acting), `report()` (a
        dict; "versions", "backwards" and "target" keys are lifted into the
        ActorReport) and optionally `close()`. `TFAgentsActor.factory(...)`
        makes one for TF-Agents.
      count: how many actors.
      num_cpus: CPUs each actor holds (Ray placement).
      nodes: Ray node ids to prefer, one per actor (soft); None spreads them.
      prefer_local: each actor's policy prefers the replica on its own node.
      max_restarts: how often Ray restarts a dead actor (-1: always).
    """

    def __init__(self, replicas: ReplicaSet, body: BodyFactory, count: int, *, num_cpus: float = 1.0,
                 nodes: Sequence[str] | None = None, prefer_local: bool = True, max_restarts: int = -1):
        actor = ray.remote(_FleetActor)
        self.handles = [actor.options(**placement.options(i, nodes, num_cpus=num_cpus, max_restarts=max_restarts),
                                      max_concurrency=2).remote(i, replicas, body, prefer_local)
                        for i in range(count)]

    def reports(self, timeout: float = 5.0) -> list[ActorReport]:
        """The reports of the actors that answer within `timeout` (a restarting one is left out)."""
        refs = [h.report.remote() for h in self.handles]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        found = []
        for ref in ready:
            try:
                found.append(ray.get(ref))
            except ray.exceptions.RayError:
                continue
        return sorted(found, key=lambda r: r.index)

    def stop(self, timeout: float = 30.0) -> list[ActorReport]:
        """Stops every actor (after its current run) and ends it for good; returns their last reports."""
        refs = [h.stop.remote(timeout) for h in self.handles]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout + 5)
        reports = []
        for ref in ready:
            try:
                reports.append(ray.get(ref))
            except ray.exceptions.RayError:
                continue
        for handle in self.handles:
            ray.kill(handle, no_restart=True)
        return sorted(reports, key=lambda r: r.index)


class TFAgentsActor:
    """A fleet actor's body for TF-Agents: `tf_agents.train.Actor` with a `RemotePolicy` and your observers.

    Args:
      index: the actor's place in its fleet.
      target: the target source of its policy (from the fleet).
      env_fn: builds its environment from its index (a py environment).
      policy: the name of the served policy it acts with.
      observers_fn: builds its observers from its index (e.g. a
        `ReverbAddTrajectoryObserver`); called in the actor's process.
      steps_per_run: environment steps per `run()` (collect actors).
      episodes_per_run: episodes per `run()` instead (eval actors).
      metrics_fn: builds its metrics from its index (e.g.
        `actor.eval_metrics(10)`); their results are in the report.
      timeout: seconds each policy call may take.
    """

    def __init__(self, index: int, target: Callable[[], str], *, env_fn: Callable[[int], Any], policy: str,
                 observers_fn: Callable[[int], list] | None = None, steps_per_run: int | None = 100,
                 episodes_per_run: int | None = None, metrics_fn: Callable[[int], list] | None = None,
                 timeout: float = 30.0):
        from tf_agents.train import actor  # pylint: disable=import-outside-toplevel
        from tf_agents.train.utils import train_utils  # pylint: disable=import-outside-toplevel

        from policy_client import RemotePolicy  # pylint: disable=import-outside-toplevel

        self.policy = RemotePolicy(target, policy, timeout=timeout)
        self.train_step = train_utils.create_train_step()
        self.observers = list(observers_fn(index)) if observers_fn else []
        self.metrics = list(metrics_fn(index)) if metrics_fn else []
        self.actor = actor.Actor(env_fn(index), self.policy, self.train_step, steps_per_run=steps_per_run,
                                 episodes_per_run=episodes_per_run, observers=self.observers,
                                 metrics=self.metrics or None)
        self.steps_per_run = steps_per_run or 0
        self.env_steps = 0
        self.versions: list[int] = []
        self.backwards = 0
        self.results: dict[str, float] = {}

    @classmethod
    def factory(cls, **kwargs: Any) -> BodyFactory:
        """The fleet's body factory for these settings (see the class's arguments)."""
        return functools.partial(cls, **kwargs)

    def run(self) -> None:
        for metric in self.metrics:
            metric.reset()
        self.actor.run()
        self.env_steps += self.steps_per_run
        version = self.policy.last_version
        if self.versions and version < self.versions[-1]:
            self.backwards += 1
        self.versions = [self.versions[0] if self.versions else version, version]
        self.train_step.assign(version)  # tags the actor's summaries with the version that acted
        self.results = {m.name: float(m.result()) for m in self.metrics}

    def report(self) -> dict[str, Any]:
        return {"versions": tuple(self.versions), "backwards": self.backwards, "target": self.policy.address,
                "env_steps": self.env_steps, **self.results}

    def close(self) -> None:
        for observer in self.observers:
            close = getattr(observer, "close", None)
            if close is not None:
                close()
        self.policy.close()
