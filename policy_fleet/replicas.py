"""Policy-server replicas as Ray actors: placed across nodes, restarted by Ray, found by their clients.

Each replica is one Ray actor that runs a real `policy-server` process (the
CLI's flags, `--workers N` included) bound to its node's address, and that
process dies with the actor. Ray restarts a replica that dies (its node
lost, its process killed) wherever there is room, and the restarted one
binds a new address. `ReplicaSet.target()` is always the current gRPC target
of the replicas that serve: clients take it as their address (a callable),
and re-read it when it changes or a call finds no server.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Sequence

import ray

from policy_fleet import placement

# Seconds a replica's process may take to listen (its policies load after that, health says NOT_SERVING).
LISTEN_TIMEOUT = 120.0


@dataclasses.dataclass(frozen=True)
class ReplicaInfo:
    """One replica, as its Ray actor sees it now.

    Attributes:
      index: its place in the set.
      address: "host:port" its server listens on.
      node_id: the Ray node it runs on.
      serving: every policy loaded (health SERVING); a loading replica gets no traffic.
      pid: its server's process id.
      log: the file its server's log goes to.
      started: when this incarnation started (time.time()); it changes when Ray restarts it.
    """

    index: int
    address: str
    node_id: str
    serving: bool
    pid: int
    log: str
    started: float


class _Replica:
    """The Ray actor of one replica: starts its policy-server process and watches its stdout."""

    def __init__(self, index: int, args: Sequence[str], cwd: str | None, env: dict[str, str]):
        self.index = index
        self.node_id = placement.node_id()
        self.started = time.time()
        host = ray.util.get_node_ip_address()
        directory = os.path.join(tempfile.gettempdir(), "policy_fleet")
        os.makedirs(directory, exist_ok=True)
        self.log = os.path.join(directory, f"replica-{index}-{os.getpid()}.log")
        command = [sys.executable, "-m", "policy_fleet.launch", *args, "--host", host, "--port", "0",
                   "--log-format", "json"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, cwd=cwd,
                                            env={**os.environ, **env})
        self.address: str | None = None
        self.serving = False
        self._listening = threading.Event()
        threading.Thread(target=self._read, name="replica-stdout", daemon=True).start()
        if not self._listening.wait(LISTEN_TIMEOUT) or self.address is None:
            self.process.kill()
            raise RuntimeError(f"replica {index}: policy-server did not listen within {LISTEN_TIMEOUT:.0f} s "
                               f"(exit code {self.process.poll()}); its log: {self.log}")

    def _read(self) -> None:
        """The server's two stdout lines: listening (its address), then ready (it serves)."""
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "listening":
                self.address = event["address"]
                self._listening.set()
            elif event.get("event") == "ready":
                self.serving = True
        self.serving = False
        self._listening.set()

    def info(self) -> ReplicaInfo:
        serving = self.serving and self.process.poll() is None
        return ReplicaInfo(self.index, self.address or "", self.node_id, serving, self.process.pid, self.log,
                           self.started)

    def wait_serving(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.serving and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.serving

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM (the server drains: every accepted request is answered), then SIGKILL after `grace`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


class ReplicaSet:
    """N policy-server replicas, each a named Ray actor that Ray places, restarts and finds.

    Build one with `ReplicaSet.start`. It pickles as the names of its
    replicas' actors, so Ray actors and tasks take it as an argument and find
    the replicas themselves (a restarted replica keeps its name).

    Args:
      names: the replicas' Ray actor names, in order.
      namespace: their Ray namespace.
      spawn: starts one more replica given its index and name (what `grow` calls).
    """

    def __init__(self, names: Sequence[str], namespace: str | None = None,
                 spawn: Callable[[int, str], Any] | None = None):
        self.names = list(names)
        self.namespace = namespace
        self._spawn = spawn
        self._handles: dict[int, Any] = {}
        self._pending: dict[int, Any] = {}
        self._known: dict[int, ReplicaInfo] = {}
        self._lock = threading.Lock()

    @property
    def handles(self) -> list[Any]:
        """The replicas' Ray actor handles (looked up by name once)."""
        for index, name in enumerate(self.names):
            if index not in self._handles:
                self._handles[index] = ray.get_actor(name, namespace=self.namespace)
        return [self._handles[i] for i in range(len(self.names))]

    @classmethod
    def start(cls, args: Sequence[str], replicas: int = 2, *, num_cpus: float = 1.0, num_gpus: float = 0.0,
              resources: dict[str, float] | None = None, workers: int = 1, nodes: Sequence[str] | None = None,
              cwd: str | None = None, env: dict[str, str] | None = None, wait: bool = True,
              timeout: float = 300.0, name: str | None = None) -> "ReplicaSet":
        """Starts `replicas` policy-server processes, one per Ray actor, spread across the nodes.

        Args:
          args: the `policy-server` flags that say what to serve and how
            (`--policy NAME=DIR`, `--factory ...`, `--config FILE`, batching...);
            the host and port are the replica's own.
          replicas: how many.
          num_cpus: CPUs each replica holds (Ray placement; give it what its
            batches use).
          num_gpus: GPUs each replica holds: a replica that asks for one goes
            to a node that has one, and its TensorFlow sees that GPU.
          resources: other Ray resources each replica needs.
          workers: server processes per replica (`--workers N`, sharing its port).
          nodes: Ray node ids to prefer, one per replica (soft: a lost node's
            replica restarts elsewhere); None spreads them.
          cwd: the servers' working directory (for factories imported from a
            source tree); None: this process's, where it exists.
          env: extra environment variables of the servers.
          wait: return once every replica serves.
          timeout: how long to wait for that.
          name: the prefix of the replicas' Ray actor names (NAME-0, NAME-1, ...;
            default: a fresh one).

        Raises:
          TimeoutError: a replica did not serve within `timeout`.
        """
        spawn = functools.partial(_spawn, [*args, *(["--workers", str(workers)] if workers > 1 else [])],
                                  cwd if cwd is not None else os.getcwd(), dict(env or {}), list(nodes or ()),
                                  {"num_cpus": num_cpus, "num_gpus": num_gpus, "resources": resources})
        prefix = name or f"policy-replica-{uuid.uuid4().hex[:8]}"
        namespace = ray.get_runtime_context().namespace
        found = cls([f"{prefix}-{i}" for i in range(replicas)], namespace, spawn)
        found._handles = {i: spawn(i, n) for i, n in enumerate(found.names)}  # pylint: disable=protected-access
        if wait:
            found.wait_serving(timeout=timeout)
        return found

    def __getstate__(self) -> dict[str, Any]:
        return {"names": self.names, "namespace": self.namespace, "spawn": self._spawn}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["names"], state["namespace"], state["spawn"])

    def grow(self, count: int = 1) -> list[int]:
        """Starts `count` more replicas with the same flags and placement; returns their indexes.

        A new replica gets traffic once it serves: until then `target()` leaves
        it out, and health checking keeps balanced clients off it.
        """
        if self._spawn is None:
            raise ValueError("this ReplicaSet was not made by ReplicaSet.start: it cannot grow")
        prefix = self.names[0].rsplit("-", 1)[0]
        indexes = list(range(len(self.names), len(self.names) + count))
        for index in indexes:
            self.names.append(f"{prefix}-{index}")
            self._handles[index] = self._spawn(index, self.names[index])
        return indexes

    def infos(self, timeout: float = 2.0) -> list[ReplicaInfo]:
        """The replicas that answer: within `timeout` when asked afresh; a replica that has not answered
        the last question yet (dead, or restarting) is left out at once."""
        with self._lock:
            # No retries: a replica that is down answers with an error at once, and is left out.
            fresh = {i: h.info.options(max_task_retries=0).remote() for i, h in enumerate(self.handles)
                     if i not in self._pending}
            self._pending.update(fresh)
            pending = dict(self._pending)
        waiting = [ref for i, ref in pending.items() if i in fresh]
        ready = set(ray.wait(waiting, num_returns=len(waiting), timeout=timeout)[0]) if waiting else set()
        stale = [ref for i, ref in pending.items() if i not in fresh]
        ready |= set(ray.wait(stale, num_returns=len(stale), timeout=0)[0]) if stale else set()
        found = []
        for index, ref in pending.items():
            if ref not in ready:
                continue
            with self._lock:
                self._pending.pop(index, None)
            try:
                info = ray.get(ref)
            except ray.exceptions.RayError:  # the actor died for good, or its incarnation just now
                continue
            found.append(info)
            self._known[index] = info
        return sorted(found, key=lambda i: i.index)

    def target(self, prefer_node: str | None = None) -> str:
        """The gRPC target of the replicas that serve now.

        Args:
          prefer_node: a Ray node id: when a replica on that node serves, the
            target is that replica alone (an actor on the node then also gets
            the shared-memory plane); else every serving replica.

        Returns:
          "host:port" for one replica, "ipv4:a,b,..." for several (gRPC
          balances those round robin, health-checked); when none serves, every
          replica known (calls then wait for one, within their deadline).
        """
        infos = self.infos()
        serving = [i for i in infos if i.serving and i.address]
        local = [i for i in serving if prefer_node is not None and i.node_id == prefer_node]
        chosen = local[:1] or serving or [i for i in self._known.values() if i.address]
        return _target([i.address for i in chosen])

    def __call__(self) -> str:
        """`target()`: a ReplicaSet is itself a target source for PolicyClient and FanOutPublisher."""
        return self.target()

    def near(self, node_id: str) -> Callable[[], str]:
        """A target source that prefers the replica on `node_id` (see `target`)."""
        return lambda: self.target(prefer_node=node_id)

    def wait_serving(self, count: int | None = None, timeout: float = 300.0) -> list[ReplicaInfo]:
        """Waits until `count` replicas (default: all) serve; returns them.

        Raises:
          TimeoutError: fewer serve after `timeout` seconds.
        """
        count = len(self.names) if count is None else count
        deadline = time.monotonic() + timeout
        while True:
            serving = [i for i in self.infos() if i.serving]
            if len(serving) >= count:
                return serving
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(serving)} of {len(self.names)} replicas serve after {timeout:.0f} s "
                                   f"(wanted {count}); their logs: {[i.log for i in self._known.values()]}")
            time.sleep(0.1)

    def stats(self) -> dict[str, list[dict[str, Any]]]:
        """GetStats of every serving replica: address -> one dict per policy (as PolicyClient.stats)."""
        from policy_client import PolicyClient  # pylint: disable=import-outside-toplevel

        found = {}
        for info in self.infos():
            if info.serving:
                with PolicyClient(info.address, timeout=10.0) as client:
                    found[info.address] = client.stats()
        return found

    def stop(self, grace: float = 10.0) -> None:
        """Drains every replica's server (SIGTERM), then ends its Ray actor for good."""
        refs = [h.stop.remote(grace) for h in self.handles]
        ray.wait(refs, num_returns=len(refs), timeout=grace + 5)
        for handle in self.handles:
            ray.kill(handle, no_restart=True)


def _spawn(flags: list[str], cwd: str, env: dict[str, str], nodes: list[str], resources: dict[str, Any],
           index: int, name: str) -> Any:
    """Starts replica `index` as a Ray actor named `name` (Ray restarts it wherever there is room when it dies)."""
    options = placement.options(index, nodes or None, name=name, **resources)
    return ray.remote(_Replica).options(**options).remote(index, flags, cwd, env)


def _target(addresses: Sequence[str]) -> str:
    if len(addresses) == 1:
        return addresses[0]
    scheme = "ipv6" if any(a.startswith("[") for a in addresses) else "ipv4"
    return f"{scheme}:{','.join(addresses)}"
