"""The policy server: gRPC (asyncio) with health, reflection (unless switched off) and graceful shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from typing import Any, Callable, Mapping, Sequence, Union

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection, reflection_pb2

from policy_client.wire import SERVICE_NAME
from policy_client.wire.generated import shared_memory_pb2 as shm_pb
from policy_server import oip, security, services
from policy_server.admission import Admission
from policy_server.backends.base import Backend
from policy_server.config import PolicyConfig, ServerConfig
from policy_server.engine import outcomes, sessions
from policy_server.native.messages import ResponseEncoder
from policy_server.native.servicer import PolicyServicer
from policy_server.registry import HostedPolicy, Registry
from policy_server.shm import plane as shm
from policy_server.telemetry.logs import quiet_poller_races
from policy_server.telemetry.stats import StatsLog

logger = logging.getLogger(__name__)
SHM_SERVICE_NAME = shm_pb.DESCRIPTOR.services_by_name["SharedMemoryService"].full_name

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
      policies: name -> what to serve: a backend, a policy (any PyPolicy, a
        TFPolicy), a PolicySaver SavedModel path (see backends.backend_for), or
        a function building one (called on an executor thread after the port
        is open). Or PolicyConfigs with their sources, added to
        `config.policies`. The first policy named (here, then in
        `config.policies`) is the default one.
      config: how the server runs, and each policy's settings (PolicyConfig).

    Raises:
      ValueError: no policies, a policy with no source or with two, or
        settings of a policy it does not host.
    """

    def __init__(self, policies: Mapping[str, BackendSource] | Sequence[PolicyConfig] | None = None,
                 config: ServerConfig = ServerConfig()):
        if policies is not None and not isinstance(policies, Mapping):
            config = dataclasses.replace(config, policies=(*config.policies, *policies))
            policies = None
        sources = dict(policies or {})
        for own in config.policies:
            if own.source is not None and own.name in sources:
                raise ValueError(f"policy {own.name!r} has two sources: one in `policies`, one in its PolicyConfig")
            if own.source is not None:
                sources[own.name] = own.source
        unknown = sorted(p.name for p in config.policies if p.name not in sources)
        if unknown:
            raise ValueError(f"settings for policies {unknown}, which have no source")
        if not sources:
            raise ValueError("a server needs at least one policy")
        self._policies = sources
        self.config = config
        # gRPC's receive limit is twice the server's: a message between the two is refused alone, RESOURCE_EXHAUSTED
        # (services.py), and a stream goes on past it.
        self._options = [("grpc.max_receive_message_length", services.transport_limit(config.max_message_bytes)),
                         ("grpc.max_send_message_length", config.max_message_bytes),
                         ("grpc.so_reuseport", int(config.reuse_port))]
        self.registry = Registry()
        self.admission = Admission(self.registry)
        self.health = HealthServicer()
        self._server: grpc.aio.Server | None = None
        self._stats_task: asyncio.Task | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self._servicer: PolicyServicer | None = None
        self._loaded: asyncio.Future | None = None
        self.followers: list = []
        self._follower_tasks: list[asyncio.Task] = []
        self._stats_log = StatsLog(lambda: list(self.registry))
        self.port = 0
        self.metrics = None  # metrics.ServerMetrics when config.metrics_port is set
        self.shared_memory: shm.SharedMemoryPlane | None = None  # the same-host data plane, when offered
        if config.metrics_port is not None:
            from policy_server.telemetry import metrics  # pylint: disable=import-outside-toplevel

            self.metrics = metrics.ServerMetrics(list(self._policies))
            self.metrics.watch(list(self._policies), lambda: list(self.registry))

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
        if self.metrics is not None:  # first: it also counts the calls the token check refuses
            interceptors.insert(0, self.metrics.interceptor())
        self._server = grpc.aio.server(options=self._options, interceptors=interceptors)
        self._servicer = PolicyServicer(self.registry, self.admission, max_message_bytes=self.config.max_message_bytes,
                                        stream_acks_required=self.config.stream_acks == "required")
        limit = self.config.max_message_bytes
        services.add_to_server(self._servicer, self._server, max_message_bytes=limit)
        names = [SERVICE_NAME, oip.add_to_server(self._server, self.registry, self.admission, max_message_bytes=limit)]
        if self.config.shared_memory and shm.available():
            self.shared_memory = shm.SharedMemoryPlane(self.registry, self.admission, on_request=self._count_shm,
                                                       max_message_bytes=self.config.max_message_bytes)
            self.shared_memory.start()
            services.add_guarded(self.shared_memory, self._server,
                                 shm_pb.DESCRIPTOR.services_by_name["SharedMemoryService"], limit)
            names.append(SHM_SERVICE_NAME)
        services.add_guarded(self.health, self._server, health_pb2.DESCRIPTOR.services_by_name["Health"], limit)
        if self.config.reflection:
            names = (*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
            services.add_guarded(reflection.aio.ReflectionServicer(names), self._server,
                                 reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"], limit)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        address, tls = self.config.address, self.config.credentials is not None
        try:
            self.port = self._bind(address)
        except OSError:
            await self._server.stop(None)  # left to the garbage collector, it can hang the exit
            self._server = None
            raise
        await self._server.start()
        try:
            if self.metrics is not None:
                self.metrics.serve(self.config.metrics_host, self.config.metrics_port)
        except OSError:
            await self._server.stop(None)
            self._server = None
            raise
        logger.info("listening on %s (%s)%s", self.bound_address, security.describe(tls, auth),
                    f"; metrics on {self.metrics_url}" if self.metrics_url else "",
                    extra={"event": "listening", "address": self.bound_address, "metrics": self.metrics_url})
        exposed = security.exposure_warning(self.bound_address, tls, auth)
        if exposed:
            logger.warning("%s", exposed, extra={"event": "exposed", "address": self.bound_address})
        self.registry.expect(self._policies)
        self._loaded = asyncio.ensure_future(self._load())
        if wait_until_loaded:
            await self.wait_until_loaded()
        return self.port

    @property
    def metrics_url(self) -> str | None:
        """Where Prometheus scrapes this server ("http://host:port/metrics"), or None."""
        return self.metrics.url if self.metrics is not None else None

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
        for name, source in self._policies.items():
            started = time.monotonic()
            try:
                backend = source if isinstance(source, Backend) else await self._build(name, source)
            except Exception as e:
                logger.error("policy %r failed to load: %s: %s", name, type(e).__name__, e,
                             exc_info=logger.isEnabledFor(logging.DEBUG), extra={"event": "load_failed",
                                                                                 "policy": name})
                raise
            settings = self.config.policy(name)
            hosted = HostedPolicy.create(name, backend, settings.batching, encoder=ResponseEncoder)
            hosted.sessions = sessions.SessionTable(settings.max_sessions, settings.session_idle_timeout)
            if self.metrics is not None:
                hosted.stats.observer = self.metrics.policy(name)
            hosted.scheduler.start()
            self.registry.add(hosted)
            took = time.monotonic() - started
            logger.info("serving policy %r (%s, version %d%s)", name, backend.kind, backend.version,
                        f", loaded in {took:.1f} s" if took >= 1 else "",
                        extra={"event": "serving", "policy": name, "version": backend.version})
        self._start_followers()
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        if self.config.stats_interval > 0:
            self._stats_task = asyncio.ensure_future(self._stats_log.run(self.config.stats_interval))

    async def _build(self, name: str, source: Any) -> Backend:
        """Builds a backend on an executor thread, saying every load_report_interval that it still loads."""
        # Through outcomes.capture: a factory's StopIteration cannot cross a future (the load would hang).
        future = asyncio.get_running_loop().run_in_executor(None, outcomes.capture, lambda: _build(source))
        started, interval = time.monotonic(), self.config.load_report_interval or None
        try:
            while not (await asyncio.wait({future}, timeout=interval))[0]:
                logger.info("still loading policy %r (%.0f s so far)", name, time.monotonic() - started,
                            extra={"event": "loading", "policy": name})
        except asyncio.CancelledError:
            future.cancel()
            raise
        return outcomes.unwrap(future.result())

    def _start_followers(self) -> None:
        followed = [self.config.policy(name) for name in self._policies]
        followed = [p for p in followed if p.follows]
        if not followed:
            return
        from policy_server.weights import followers  # pylint: disable=import-outside-toplevel

        interval = self.config.follow_interval
        for policy in followed:
            weights = self.registry.get(policy.name).weights
            if policy.follow_checkpoints:
                self.followers.append(followers.CheckpointFollower(weights, policy.follow_checkpoints, interval))
            if policy.follow_reverb:
                self.followers.append(followers.ReverbFollower(weights, policy.follow_reverb, policy.reverb_table,
                                                               interval))
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
        if self.shared_memory is not None:
            self.shared_memory.stop_accepting()
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self.registry.close()
        if self._loaded is not None and not self._loaded.done():
            self._loaded.cancel()
        if self._stats_task is not None:
            self._stats_task.cancel()
        for task in self._follower_tasks:
            task.cancel()
        await asyncio.gather(*(h.scheduler.close() for h in self.registry))
        if self.shared_memory is not None:  # every slot's answer is written: free them
            self.shared_memory.close()
        # Every accepted request is answered: open action streams need not
        # hold the shutdown for the grace period.
        if self._servicer is not None:
            self._servicer.end_streams()
        await self._server.stop(grace)
        self._stats_log.write(final=True)
        if self.metrics is not None:
            self.metrics.close()
        self._stopped.set()
        logger.info("server stopped", extra={"event": "stopped"})

    def _count_shm(self, policy: str, code: int, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.record(policy, "SharedMemoryAction", code, seconds)

    async def wait_for_termination(self) -> None:
        await self._stopped.wait()

    async def _set_health(self, status: int) -> None:
        for service in ("", SERVICE_NAME, oip.SERVICE_NAME):
            await self.health.set(service, status)


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

    def __init__(self, policies: Mapping[str, BackendSource] | Sequence[PolicyConfig] | None = None,
                 config: ServerConfig = ServerConfig(), *,
                 wait_until_loaded: bool = True, **overrides: Any):
        config = dataclasses.replace(config, **overrides)
        self._loop = asyncio.new_event_loop()
        quiet_poller_races(self._loop)
        self._thread = threading.Thread(target=self._loop.run_forever, name="policy-server", daemon=True)
        self._thread.start()
        try:
            self.server: PolicyServer = self._call(self._make(policies, config))
            self.port = self._call(self.server.start(wait_until_loaded=wait_until_loaded))
        except BaseException:  # e.g. a port in use, a policy that failed to load: nothing left running
            if getattr(self, "server", None) is not None:
                self._call(self.server.stop(1.0))
            self._close_loop()
            raise
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
        self._close_loop()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> "BackgroundServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _build(source: Any) -> Backend:
    """Worker thread: calls a policy source (or takes a policy as it is) and wraps it in a backend."""
    is_policy = isinstance(source, str) or (hasattr(source, "action") and hasattr(source, "time_step_spec"))
    built = source if is_policy or not callable(source) else source()
    if isinstance(built, Backend):
        return built
    from policy_server.backends import backend_for  # pylint: disable=import-outside-toplevel

    return backend_for(built)
