"""Fleets beyond one machine, placed and restarted by Ray (the `[ray]` extra): policy-server replicas and
TF-Agents actor fleets.

Ray places the processes (with their CPUs and GPUs), restarts what dies and
tells clients where the replicas are. It never carries an action: actors
reach the replicas over gRPC, or over shared memory when they share a node.

- `replicas`: `ReplicaSet`, N real `policy-server` processes, one per Ray
  actor; its `target()` is the current gRPC target for `PolicyClient`,
  `RemotePolicy` and `FanOutPublisher`, which re-read it when a replica moves;
- `actors`: `ActorFleet`, M actors as Ray actors, each preferring the replica
  on its own node; `TFAgentsActor`, the body that runs `tf_agents.train.Actor`
  with a `RemotePolicy` and your observers;
- `placement`: where a Ray actor goes (spread, or a soft preference for a node);
- `cluster`: a simulated cluster of several nodes on 127.0.0.1, for tests and
  `make demo-ray`.

Only this package imports Ray.
"""

from policy_fleet.actors import ActorFleet, ActorReport, TFAgentsActor
from policy_fleet.cluster import LocalCluster
from policy_fleet.replicas import ReplicaInfo, ReplicaSet

__all__ = ["ActorFleet", "ActorReport", "LocalCluster", "ReplicaInfo", "ReplicaSet", "TFAgentsActor"]
