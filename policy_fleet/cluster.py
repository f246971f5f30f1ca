"""A Ray cluster of several simulated nodes on 127.0.0.1: for tests and `make demo-ray`, one machine playing a
cluster.

Every node is a real raylet (`ray.cluster_utils.Cluster`); every Ray
listener binds 127.0.0.1, the dashboard is off, and a lost node is noticed
within seconds (health checks every second). `kill_node` takes a node away
with every process on it, as a lost machine would.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import ray
from ray._private import ray_constants
from ray.cluster_utils import Cluster

LOOPBACK = "127.0.0.1"
# A node that stops answering is declared dead after about 3 s (Ray's default is tens of seconds).
SYSTEM_CONFIG = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 1000,
                 "health_check_failure_threshold": 3}


def _loopback_only() -> None:
    """Every address Ray advertises is 127.0.0.1, in this process and in the nodes it starts.

    Ray takes a node's address from the host's outward interface unless
    "clusters" are off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which it reads
    when it is imported): the nodes and their workers, started from here,
    inherit the variable; this process, which imported Ray already, gets the
    flag it was read into.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


class LocalCluster:
    """`nodes` Ray nodes on this machine (the first is the head, where this process connects).

    Args:
      nodes: how many (>= 1).
      num_cpus: logical CPUs each node offers (placement units, not cores).
      resources: other resources each node offers.
      object_store_mb: each node's object store (Ray's minimum is 75 MB).
      namespace: the Ray namespace this process joins.
      pythonpath: directories the Ray workers import from, before their own
        path (default: this process's working directory, so that code of a
        source tree, such as examples/, runs in them as it does here).

    Example:
      with LocalCluster(nodes=3) as cluster:
          replicas = ReplicaSet.start(["--demo"], replicas=2)
    """

    def __init__(self, nodes: int = 3, *, num_cpus: float = 4, resources: dict[str, float] | None = None,
                 object_store_mb: int = 100, namespace: str | None = "tfa-policy-grpc",
                 pythonpath: Sequence[str] | None = None):
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, got {nodes}")
        self.nodes, self.num_cpus, self.resources = nodes, num_cpus, dict(resources or {})
        self.object_store_mb, self.namespace = object_store_mb, namespace
        self.pythonpath = list(pythonpath) if pythonpath is not None else [os.getcwd()]
        self.cluster: Cluster | None = None
        self._nodes: dict[str, Any] = {}  # Ray node id -> the cluster_utils node

    def start(self) -> "LocalCluster":
        """Starts the nodes and connects this process to the head."""
        _loopback_only()
        head = {**self._node_args(), "include_dashboard": False, "_system_config": SYSTEM_CONFIG}
        ray_logs = logging.getLogger("ray")
        level = ray_logs.level
        ray_logs.setLevel(logging.ERROR)  # its warning that _system_config is an unstable API: we know
        try:
            self.cluster = Cluster(initialize_head=True, head_node_args=head)
            for _ in range(self.nodes - 1):
                self.add_node()
        finally:
            ray_logs.setLevel(level)
        path = os.pathsep.join([*self.pythonpath, *filter(None, [os.environ.get("PYTHONPATH")])])
        ray.init(address=self.cluster.address, namespace=self.namespace, logging_level=logging.WARNING,
                 log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}} if path else None)
        self.cluster.wait_for_nodes()
        self._nodes = {self._id_of(node): node for node in [self.cluster.head_node, *self.cluster.worker_nodes]}
        return self

    def _node_args(self) -> dict[str, Any]:
        return {"node_ip_address": LOOPBACK, "num_cpus": self.num_cpus, "resources": dict(self.resources),
                "object_store_memory": self.object_store_mb << 20}

    @staticmethod
    def _id_of(node: Any) -> str:
        return node.node_id

    def add_node(self, **overrides: Any) -> str:
        """Adds a node (e.g. after one was lost); returns its Ray node id."""
        node = self.cluster.add_node(**{**self._node_args(), **overrides})
        node_id = self._id_of(node)
        self._nodes[node_id] = node
        return node_id

    @property
    def head_id(self) -> str:
        """The head node's id (this process runs there)."""
        return self._id_of(self.cluster.head_node)

    @property
    def worker_ids(self) -> list[str]:
        """The ids of the nodes other than the head, in the order they were added."""
        return [i for i, node in self._nodes.items() if node is not self.cluster.head_node]

    def kill_node(self, node_id: str) -> None:
        """Takes a worker node away at once, with every process on it (a lost machine)."""
        node = self._nodes.pop(node_id)
        self.cluster.remove_node(node, allow_graceful=False)

    def close(self) -> None:
        """Disconnects and stops every node."""
        if ray.is_initialized():
            ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()
            self.cluster = None

    def __enter__(self) -> "LocalCluster":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
