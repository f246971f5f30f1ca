"""The policy server: gRPC (asyncio) with health, reflection and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Callable, Mapping, Union

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from policy_client.generated import policy_service_pb2 as service_pb
from policy_server.backend import Backend
from policy_server.batching import BatchingConfig
from policy_server.servicer import HostedPolicy, PolicyServicer, Registry, add_to_server

logger = logging.getLogger(__name__)

SERVICE_NAME = service_pb.DESCRIPTOR.services_by_name["PolicyService"].full_name
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# A backend, or a function that builds one (run after the port is open, so
# health checks see NOT_SERVING while slow policies load).
BackendSource = Union[Backend, Callable[[], Backend]]


class PolicyServer:
    """Hosts named policies on one gRPC port.

    Health (grpc.health.v1) reports NOT_SERVING until every policy is loaded,
    SERVING while up, and NOT_SERVING again from the start of `stop`. Action
    calls for a policy still loading get FAILED_PRECONDITION.

    Args:
      policies: name -> backend, or name -> function building the backend
        (called on a worker thread after the port is open); the first is the
        default policy.
      address: "host:port" to bind; port 0 picks a free port.
      batching: batching settings for every policy.
      max_message_bytes: largest request or response accepted.
      stats_interval: seconds between stats lines in the log (0: never).
      credentials: server credentials for TLS; None serves plaintext.
      follow_checkpoints: policy name -> PolicySaver checkpoint directory
        (`<root>/policies/checkpoints`) to follow.
      follow_reverb: policy name -> Reverb server address holding a
        ReverbVariableContainer table to follow.
      follow_interval: seconds between polls of followed sources.
      reverb_table: the variable container's table name (default "variables").
    """

    def __init__(self, policies: Mapping[str, BackendSource], *, address: str = "127.0.0.1:0",
                 batching: BatchingConfig = BatchingConfig(), max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 stats_interval: float = 0.0, credentials: grpc.ServerCredentials | None = None,
                 follow_checkpoints: Mapping[str, str] | None = None, follow_reverb: Mapping[str, str] | None = None,
                 follow_interval: float = 2.0, reverb_table: str | None = None):
        if not policies:
            raise ValueError("a server needs at least one policy")
        self._policies = dict(policies)
        self._address = address
        self._batching = batching
        self._options = [("grpc.max_receive_message_length", max_message_bytes),
                         ("grpc.max_send_message_length", max_message_bytes),
                         ("grpc.so_reuseport", 0)]
        self._stats_interval = stats_interval
        self._credentials = credentials
        self.registry = Registry()
        self.health = HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._stats_task: asyncio.Task | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self._servicer: PolicyServicer | None = None
        self._loaded: asyncio.Future | None = None
        self._follow = (dict(follow_checkpoints or {}), dict(follow_reverb or {}), follow_interval, reverb_table)
        unknown = (set(self._follow[0]) | set(self._follow[1])) - set(self._policies)
        if unknown:
            raise ValueError(f"cannot follow unknown policies {sorted(unknown)}")
        self.followers: list = []
        self._follower_tasks: list[asyncio.Task] = []
        self.port = 0

    async def start(self, wait_until_loaded: bool = True) -> int:
        """Binds and starts serving; loads the policies, then reports SERVING.

        Args:
          wait_until_loaded: return only once every policy is loaded; with
            False, return as soon as the port is open (see `wait_until_loaded`).

        Returns:
          The bound port.
        """
        self._server = grpc.aio.server(options=self._options)
        self._servicer = PolicyServicer(self.registry)
        add_to_server(self._servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self._server)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._credentials is None:
            self.port = self._server.add_insecure_port(self._address)
        else:
            self.port = self._server.add_secure_port(self._address, self._credentials)
        if not self.port:
            raise OSError(f"cannot bind {self._address}")
        await self._server.start()
        logger.info("listening on %s:%d", self._address.rsplit(":", 1)[0], self.port)
        self.registry.expect(self._policies)
        self._loaded = asyncio.ensure_future(self._load())
        if wait_until_loaded:
            await self.wait_until_loaded()
        return self.port

    async def wait_until_loaded(self) -> None:
        """Waits until every policy is loaded and health says SERVING.

        Raises:
          Exception: whatever building a backend raised.
        """
        assert self._loaded is not None, "start() first"
        await asyncio.shield(self._loaded)

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        for name, source in self._policies.items():
            backend = source if isinstance(source, Backend) else await loop.run_in_executor(None, source)
            hosted = HostedPolicy.create(name, backend, self._batching)
            hosted.batcher.start()
            self.registry.add(hosted)
            logger.info("serving policy %r (%s, version %d)", name, backend.kind, backend.version)
        self._start_followers()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        if self._stats_interval > 0:
            self._stats_task = asyncio.ensure_future(self._log_stats())

    def _start_followers(self) -> None:
        checkpoints, reverb, interval, table = self._follow
        if not checkpoints and not reverb:
            return
        from policy_server import follow  # pylint: disable=import-outside-toplevel

        self.followers = [follow.CheckpointFollower(self.registry.get(name), path, interval)
                          for name, path in checkpoints.items()]
        self.followers += [follow.ReverbFollower(self.registry.get(name), address, table, interval)
                           for name, address in reverb.items()]
        self._follower_tasks = follow.start_followers(self.followers)

    @property
    def stopping(self) -> bool:
        """Whether `stop` has begun."""
        return self._stopping

    async def stop(self, grace: float = 10.0) -> None:
        """Stops: refuse new requests, NOT_SERVING, answer every accepted one, end streams, close.

        Calling it again (e.g. a second SIGTERM) waits for the first call.
        """
        if self._server is None:
            return
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        # Refuse new requests first, so that a client seeing NOT_SERVING knows
        # that what it sends now is refused.
        for hosted in self.registry:
            hosted.batcher.stop_accepting()
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._loaded is not None and not self._loaded.done():
            self._loaded.cancel()
        if self._stats_task is not None:
            self._stats_task.cancel()
        for task in self._follower_tasks:
            task.cancel()
        await asyncio.gather(*(h.batcher.close() for h in self.registry))
        # Every accepted request is answered: open action streams need not
        # hold the shutdown for the grace period.
        if self._servicer is not None:
            self._servicer.end_streams()
        await self._server.stop(grace)
        self._log_stats_once()
        self._stopped.set()
        logger.info("server stopped")

    async def wait_for_termination(self) -> None:
        await self._stopped.wait()

    async def _set_health(self, status: int) -> None:
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)

    async def _log_stats(self) -> None:
        while True:
            await asyncio.sleep(self._stats_interval)
            self._log_stats_once()

    def _log_stats_once(self) -> None:
        for hosted in self.registry:
            logger.info("policy %r v%d: %s queue=%d", hosted.name, hosted.backend.version,
                        hosted.stats.snapshot().summary(), hosted.batcher.queue_depth)


class BackgroundServer:
    """Runs a PolicyServer on its own event loop thread (for tests and embedding).

    Example:
      with BackgroundServer({"cartpole": backend}) as server:
          client = PolicyClient(f"127.0.0.1:{server.port}")
    """

    def __init__(self, policies: Mapping[str, BackendSource], **kwargs):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="policy-server", daemon=True)
        self._thread.start()
        wait = kwargs.pop("wait_until_loaded", True)
        self.server: PolicyServer = self._call(self._make(policies, kwargs))
        self.port = self._call(self.server.start(wait_until_loaded=wait))
        self.address = f"127.0.0.1:{self.port}"

    @staticmethod
    async def _make(policies: Mapping[str, BackendSource], kwargs: dict) -> PolicyServer:
        return PolicyServer(policies, **kwargs)

    def _call(self, coro, timeout: float | None = 120.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def run(self, coro, timeout: float | None = 120.0):
        """Runs a coroutine on the server's loop and returns its result."""
        return self._call(coro, timeout)

    def stop(self, grace: float = 10.0) -> None:
        if self._loop.is_closed():
            return
        self._call(self.server.stop(grace))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> "BackgroundServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
