"""The policy server: gRPC (asyncio) with health, reflection and graceful shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from typing import Any, Callable, Mapping, Union

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from policy_client.wire import SERVICE_NAME
from policy_server import rpc, security
from policy_server.backend import Backend
from policy_server.config import ServerConfig
from policy_server.handlers import PolicyServicer, ResponseEncoder
from policy_server.registry import HostedPolicy, Registry

logger = logging.getLogger(__name__)

# A backend, or a function that builds one (or a policy, see
# tf_backends.backend_for); functions run after the port is open, so health
# checks see NOT_SERVING while slow policies load.
BackendSource = Union[Backend, Callable[[], Any]]


class PolicyServer:
    """Hosts named policies on one gRPC port.

    Health (grpc.health.v1) reports NOT_SERVING until every policy is loaded,
    SERVING while up, and NOT_SERVING again from the start of `stop`. Calls
    for a policy still loading wait until it serves, within their deadline
    (then UNAVAILABLE, which clients retry).

    Args:
      policies: name -> a backend, a policy (any PyPolicy, a TFPolicy, a
        PolicySaver SavedModel path; see tf_backends.backend_for), or a
        function building either (called on a worker thread after the port is
        open); the first is the default policy.
      config: how the server runs (address, batching, limits, followers).

    Raises:
      ValueError: no policies, or followers of policies it does not host.
    """

    def __init__(self, policies: Mapping[str, BackendSource], config: ServerConfig = ServerConfig()):
        if not policies:
            raise ValueError("a server needs at least one policy")
        unknown = config.followed - set(policies)
        if unknown:
            raise ValueError(f"cannot follow unknown policies {sorted(unknown)}")
        self._policies = dict(policies)
        self.config = config
        self._options = [("grpc.max_receive_message_length", config.max_message_bytes),
                         ("grpc.max_send_message_length", config.max_message_bytes),
                         ("grpc.so_reuseport", 0)]
        self.registry = Registry()
        self.health = HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._stats_task: asyncio.Task | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self._servicer: PolicyServicer | None = None
        self._loaded: asyncio.Future | None = None
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
        auth = self.config.auth
        interceptors = [security.AuthInterceptor(auth)] if auth is not None else []
        self._server = grpc.aio.server(options=self._options, interceptors=interceptors)
        self._servicer = PolicyServicer(self.registry)
        rpc.add_to_server(self._servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self._server)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        address, tls = self.config.address, self.config.credentials is not None
        try:
            self.port = self._bind(address)
        except OSError:
            await self._server.stop(None)  # left to the garbage collector, it can hang the exit
            self._server = None
            raise
        await self._server.start()
        logger.info("listening on %s (%s)", self.bound_address, security.describe(tls, auth))
        for warning in security.exposure_warnings(address, tls, auth):
            logger.warning("%s", warning)
        self.registry.expect(self._policies)
        self._loaded = asyncio.ensure_future(self._load())
        if wait_until_loaded:
            await self.wait_until_loaded()
        return self.port

    def _bind(self, address: str) -> int:
        credentials = self.config.credentials
        try:
            port = self._server.add_insecure_port(address) if credentials is None \
                else self._server.add_secure_port(address, credentials)
        except RuntimeError as e:  # gRPC's "Failed to bind", e.g. a TLS key that is not the certificate's
            hint = " with these TLS credentials (is the key the certificate's?)" if credentials else ""
            raise OSError(f"cannot bind {address}{hint}") from e
        if not port:
            raise OSError(f"cannot bind {address}")
        return port

    async def wait_until_loaded(self) -> None:
        """Waits until every policy is loaded and health says SERVING.

        Raises:
          Exception: whatever building a backend raised.
        """
        assert self._loaded is not None, "start() first"
        await asyncio.shield(self._loaded)

    @property
    def bound_address(self) -> str:
        """The address clients reach: "host:port" with the bound port, or "unix:PATH"."""
        address = self.config.address
        if address.startswith("unix:"):
            return address
        return f"{address.rsplit(':', 1)[0]}:{self.port}"

    async def _load(self) -> None:
        try:
            await self._load_policies()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.registry.fail(e)
            raise

    async def _load_policies(self) -> None:
        loop = asyncio.get_running_loop()
        for name, source in self._policies.items():
            backend = source if isinstance(source, Backend) else await loop.run_in_executor(None, _build, source)
            hosted = HostedPolicy.create(name, backend, self.config.batching, encoder=ResponseEncoder)
            hosted.scheduler.start()
            self.registry.add(hosted)
            logger.info("serving policy %r (%s, version %d)", name, backend.kind, backend.version)
        self._start_followers()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        if self.config.stats_interval > 0:
            self._stats_task = asyncio.ensure_future(self._log_stats())

    def _start_followers(self) -> None:
        config = self.config
        if not config.followed:
            return
        from policy_server import follow  # pylint: disable=import-outside-toplevel

        self.followers = [follow.CheckpointFollower(self.registry.get(name).weights, path, config.follow_interval)
                          for name, path in config.follow_checkpoints.items()]
        self.followers += [follow.ReverbFollower(self.registry.get(name).weights, address, config.reverb_table,
                                                 config.follow_interval)
                           for name, address in config.follow_reverb.items()]
        self._follower_tasks = [asyncio.ensure_future(f.run()) for f in self.followers]

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
            hosted.scheduler.stop_accepting()
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.registry.close()
        if self._loaded is not None and not self._loaded.done():
            self._loaded.cancel()
        if self._stats_task is not None:
            self._stats_task.cancel()
        for task in self._follower_tasks:
            task.cancel()
        await asyncio.gather(*(h.scheduler.close() for h in self.registry))
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
            await asyncio.sleep(self.config.stats_interval)
            self._log_stats_once()

    def _log_stats_once(self) -> None:
        for hosted in self.registry:
            logger.info("policy %r v%d: %s queue=%d", hosted.name, hosted.backend.version,
                        hosted.stats.snapshot().summary(), hosted.scheduler.queue_depth)


class BackgroundServer:
    """Runs a PolicyServer on its own event loop thread (for tests and embedding).

    Example:
      with BackgroundServer({"cartpole": backend}, batching=BatchingConfig(max_batch_size=32)) as server:
          client = PolicyClient(server.address)

    Args:
      policies: as for PolicyServer.
      config: as for PolicyServer.
      wait_until_loaded: return once every policy is loaded (else once the
        port is open).
      **overrides: ServerConfig fields replacing those of `config`.
    """

    def __init__(self, policies: Mapping[str, BackendSource], config: ServerConfig = ServerConfig(), *,
                 wait_until_loaded: bool = True, **overrides: Any):
        config = dataclasses.replace(config, **overrides)
        self._loop = asyncio.new_event_loop()
        quiet_poller_races(self._loop)
        self._thread = threading.Thread(target=self._loop.run_forever, name="policy-server", daemon=True)
        self._thread.start()
        self.server: PolicyServer = self._call(self._make(policies, config))
        self.port = self._call(self.server.start(wait_until_loaded=wait_until_loaded))
        self.address = self.server.bound_address

    @staticmethod
    async def _make(policies: Mapping[str, BackendSource], config: ServerConfig) -> PolicyServer:
        return PolicyServer(policies, config)

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


def quiet_poller_races(loop: asyncio.AbstractEventLoop) -> None:
    """Drops gRPC's spurious BlockingIOError reports when several event loops share its poller.

    Every grpc.aio object binds its thread's loop to gRPC's one process-wide
    completion-queue socket, so with several servers (or aio clients) in one
    process each event wakes every loop and all but one find nothing to read
    (grpc/grpc#25364). Nothing is lost; the reports are noise, thousands per
    run. Everything else goes to the loop's usual handler.
    """
    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if isinstance(context.get("exception"), BlockingIOError) and \
                "PollerCompletionQueue" in repr(context.get("handle") or context.get("message", "")):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _build(source: Any) -> Backend:
    """Worker thread: calls a policy source (or takes a policy as it is) and wraps it in a backend."""
    is_policy = isinstance(source, str) or (hasattr(source, "action") and hasattr(source, "time_step_spec"))
    built = source if is_policy or not callable(source) else source()
    if isinstance(built, Backend):
        return built
    from policy_server.tf_backends import backend_for  # pylint: disable=import-outside-toplevel

    return backend_for(built)
