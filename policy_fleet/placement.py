"""Where a Ray actor of a fleet goes: spread across the nodes, or a soft preference for one node.

A preference is soft: when its node is gone, Ray restarts the actor on
another node that has room, which is what a fleet that survives a lost node
needs.
"""

from __future__ import annotations

from typing import Any, Sequence


def options(index: int, nodes: Sequence[str] | None, *, num_cpus: float, num_gpus: float = 0.0,
            resources: dict[str, float] | None = None, max_restarts: int = -1, name: str | None = None,
            namespace: str | None = None) -> dict[str, Any]:
    """The `.options(...)` of the `index`-th Ray actor of a fleet.

    Args:
      index: the actor's place in its fleet.
      nodes: Ray node ids to prefer, one per actor (cycled); None spreads the
        actors across the nodes (Ray's SPREAD strategy).
      num_cpus: CPUs each actor holds (a Ray resource: placement, not a limit).
      num_gpus: GPUs each actor holds; a GPU node gets the actors that ask for one.
      resources: other Ray resources each actor needs (e.g. {"policy_server": 1}).
      max_restarts: how often Ray restarts a dead actor (-1: always).
      name: a name to find the actor by (ray.get_actor), if any.
      namespace: the name's namespace.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # pylint: disable=import-outside-toplevel

    strategy: Any = "SPREAD"
    if nodes:
        strategy = NodeAffinitySchedulingStrategy(node_id=nodes[index % len(nodes)], soft=True)
    found: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_restarts": max_restarts,
                             "max_task_retries": -1 if max_restarts else 0, "scheduling_strategy": strategy}
    if resources:
        found["resources"] = dict(resources)
    if name is not None:
        found["name"] = name
    if namespace is not None:
        found["namespace"] = namespace
    return found


def node_id() -> str:
    """The Ray node id of the calling process (a Ray actor or the driver)."""
    import ray  # pylint: disable=import-outside-toplevel

    return ray.get_runtime_context().get_node_id()
