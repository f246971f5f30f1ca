"""Prometheus metrics of one server: its own registry, the interceptor that counts calls, the HTTP endpoint.

Every server has a `CollectorRegistry` of its own, so several servers in one
process never clash. What is counted where:

- `MetricsInterceptor` (outermost gRPC interceptor, before the token check):
  every PolicyService call, and every Open Inference Protocol call (by the
  model it names), by policy, method and status code, and its time in the
  server; on `ActionStream` and `ModelStreamInfer` every message counts
  (with its own status).
- `PolicyMetrics`, the observer of each policy's `PolicyStats`: batch sizes,
  queue waits and inference times, as the scheduler records them.
- `StateCollector`, read at scrape time: queue depth, served version,
  loaded or not, weight updates applied, server-held sessions.

The hot path only increments children looked up once (dictionaries keyed by
label tuples); label values are bounded: the policy label is a hosted
policy's name (the default policy's for calls that name none), UNKNOWN for a
name the server does not host, and "" for ListPolicies and GetStats of every
policy.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import time
from typing import Any, Callable, Iterable, Sequence

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_wsgi_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from policy_client.wire import SERVICE_NAME
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_server import services

# The policy label of calls that name no policy this server hosts (or none at all).
UNKNOWN = "<unknown>"
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0)
REFUSAL_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
WEIGHT_SOURCES = ("push", "checkpoint", "reverb")
# Codes of calls refused before they ran, and of calls that failed while running.
REJECTED = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                      "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "UNAVAILABLE",
                      "UNAUTHENTICATED"})
FAILED = frozenset({"UNKNOWN", "INTERNAL", "DATA_LOSS"})
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_METHODS = frozenset(m.name for m in service_pb.DESCRIPTOR.services_by_name["PolicyService"].methods)
# Calls about the whole server when they name no policy: their policy label is "".
_SERVER_WIDE = frozenset({"ListPolicies", "GetStats", "ServerLive", "ServerReady", "ServerMetadata"})
_PREFIX = f"/{SERVICE_NAME}/"
# The Open Inference Protocol's service (policy_server.oip): its calls count like the native ones,
# labelled with the model (= policy) they name and their method's name.
_OIP_PREFIX = "/inference.GRPCInferenceService/"
_OIP_METHODS = frozenset({"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
                          "ModelInfer", "ModelStreamInfer"})
_CODE_OF_NAME = {code.name: code.value[0] for code in grpc.StatusCode}


class _Entry:
    """The children one (policy, method, code) increments."""

    __slots__ = ("requests", "duration", "outcome", "refusal")

    def __init__(self, requests: Any, duration: Any, outcome: Any, refusal: Any):
        self.requests, self.duration, self.outcome, self.refusal = requests, duration, outcome, refusal


class ServerMetrics:
    """The metrics of one server, in a registry of their own.

    Args:
      policies: the names of the policies the server hosts (the first is the
        default, which requests with an empty name get).
    """

    def __init__(self, policies: Sequence[str]):
        self.registry = CollectorRegistry()
        self._labels = {name: name for name in policies}
        if policies:
            self._labels[""] = policies[0]
        self._entries: dict[tuple[str, str, int], _Entry] = {}
        self._httpd: Any = None
        self._thread: Any = None
        self.host, self.port = "", 0
        policy, method, code = "policy", "method", "code"
        r = self.registry
        self.requests = Counter("tfa_policy_requests", "PolicyService calls answered (ActionStream: messages), "
                                "by policy, method and gRPC status code", [policy, method, code], registry=r)
        self.rejected = Counter("tfa_policy_rejected_requests", "Calls refused without running (invalid, queue "
                                "full, unknown policy, no or bad token, shutting down, ...)", [policy, method, code],
                                registry=r)
        self.failed = Counter("tfa_policy_failed_requests", "Calls that failed while running (the policy raised, "
                              "or a server defect)", [policy, method, code], registry=r)
        self.duration = Histogram("tfa_policy_request_duration_seconds", "Time from a request's arrival in its "
                                  "handler to its answer (end to end, in the server)", [policy, method],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self.refusal = Histogram("tfa_policy_refusal_duration_seconds", "Time from a request's arrival in its "
                                 "handler to its refusal (a rejected code: a full queue, an invalid request, ...)",
                                 [policy, method, code], buckets=REFUSAL_BUCKETS, registry=r)
        self.batch_rows = Histogram("tfa_policy_batch_size_rows", "Rows per inference call", [policy],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_wait = Histogram("tfa_policy_queue_wait_seconds", "Time a request waited in the queue before "
                                    "its batch ran", [policy], buckets=LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("tfa_policy_inference_duration_seconds", "Time of one batched inference call",
                                   [policy], buckets=LATENCY_BUCKETS, registry=r)
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=r)

    def label(self, policy: Any) -> str:
        """The policy label of a requested name (UNKNOWN for names the server does not host)."""
        return self._labels.get(policy, UNKNOWN)

    def record(self, policy: Any, method: str, code: int, seconds: float) -> None:
        """Counts one answered call (or stream message) of `method` with status `code` (an int)."""
        label = "" if not policy and method in _SERVER_WIDE else self._labels.get(policy, UNKNOWN)
        key = (label, method, code)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entry(key)
        entry.requests.inc()
        entry.duration.observe(seconds)
        if entry.outcome is not None:
            entry.outcome.inc()
        if entry.refusal is not None:
            entry.refusal.observe(seconds)

    def _entry(self, key: tuple[str, str, int]) -> _Entry:
        policy, method, code = key
        name = _CODE_NAMES.get(code, "UNKNOWN")
        outcome = self.rejected if name in REJECTED else self.failed if name in FAILED else None
        entry = _Entry(self.requests.labels(policy, method, name), self.duration.labels(policy, method),
                       outcome.labels(policy, method, name) if outcome is not None else None,
                       self.refusal.labels(policy, method, name) if name in REJECTED else None)
        self._entries[key] = entry
        return entry

    def policy(self, name: str) -> "PolicyMetrics":
        return PolicyMetrics(self, name)

    def watch(self, expected: Sequence[str], hosted: Callable[[], Iterable[Any]]) -> None:
        """Reports, at scrape time, the state of the hosted policies (see StateCollector)."""
        self.registry.register(StateCollector(expected, hosted))

    def interceptor(self) -> "MetricsInterceptor":
        """The gRPC server interceptor that counts calls (put it first)."""
        return MetricsInterceptor(self)

    def serve(self, host: str, port: int) -> int:
        """Starts the HTTP endpoint (GET /metrics) on its own thread; returns the bound port.

        Raises:
          OSError: the address cannot be bound.
        """
        try:
            self._httpd, self._thread = start_wsgi_server(port, host, registry=self.registry)
        except OSError as e:
            raise OSError(f"cannot serve metrics on {host}:{port}: {e.strerror or e}") from None
        self.host, self.port = host, self._httpd.server_address[1]
        return self.port

    @property
    def url(self) -> str | None:
        """"http://host:port/metrics" once serving, else None."""
        if not self.port:
            return None
        return f"http://{f'[{self.host}]' if ':' in self.host else self.host}:{self.port}/metrics"

    def close(self) -> None:
        """Stops the HTTP endpoint (if it runs)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(5)
            self._httpd = None


class PolicyMetrics:
    """The observer of one policy's PolicyStats: its batch, queue-wait and inference histograms."""

    def __init__(self, metrics: ServerMetrics, name: str):
        self._batch = metrics.batch_rows.labels(name)
        self._wait = metrics.queue_wait.labels(name)
        self._inference = metrics.inference.labels(name)

    def batch(self, rows: int, waits_s: Sequence[float], inference_s: float) -> None:
        self._batch.observe(rows)
        self._inference.observe(inference_s)
        observe = self._wait.observe
        for wait in waits_s:
            observe(wait)


class StateCollector:
    """Gauges and counters read from the server's state when Prometheus scrapes.

    Args:
      expected: every policy name the server hosts (loaded or not).
      hosted: returns the HostedPolicy objects loaded so far.
    """

    def __init__(self, expected: Sequence[str], hosted: Callable[[], Iterable[Any]]):
        self._expected = list(expected)
        self._hosted = hosted

    def describe(self) -> list:
        return list(self._families())

    def collect(self) -> Iterable[Any]:
        return self._families(list(self._hosted()))

    def _families(self, hosted: Sequence[Any] = ()) -> Iterable[Any]:
        loaded = GaugeMetricFamily("tfa_policy_loaded", "1 once the policy serves, 0 while it loads",
                                   labels=["policy"])
        depth = GaugeMetricFamily("tfa_policy_queued_requests", "Requests waiting for a batch", labels=["policy"])
        version = GaugeMetricFamily("tfa_policy_version", "Version (train step) of the weights being served",
                                    labels=["policy"])
        updates = CounterMetricFamily("tfa_policy_weight_updates", "Weight updates applied, by where they came "
                                      "from (push, checkpoint, reverb)", labels=["policy", "source"])
        names = {h.name for h in hosted}
        for name in self._expected:
            loaded.add_metric([name], 1.0 if name in names else 0.0)
        for h in hosted:
            depth.add_metric([h.name], h.scheduler.queue_depth)
            version.add_metric([h.name], h.backend.version)
            counts = h.weights.applied_by_kind
            for source in (*WEIGHT_SOURCES, *sorted(set(counts) - set(WEIGHT_SOURCES))):
                updates.add_metric([h.name, source], counts.get(source, 0))
        sessions = GaugeMetricFamily("tfa_policy_open_sessions", "Server-held recurrent sessions open now "
                                     "(OIP sequence_id)", labels=["policy"])
        session_events = CounterMetricFamily("tfa_policy_sessions", "Server-held sessions started, ended, expired "
                                             "(idle) and refused (too many open)", labels=["policy", "event"])
        for h in hosted:
            counts = h.sessions.counts()
            sessions.add_metric([h.name], counts.pop("open"))
            for event, count in counts.items():
                session_events.add_metric([h.name, event], count)
        slots = GaugeMetricFamily("tfa_policy_shared_memory_slots", "Same-host actors attached through "
                                  "shared-memory slots now", labels=["policy"])
        fallbacks = CounterMetricFamily("tfa_policy_shm_fallbacks", "Requests of clients forced to shared memory "
                                        "that came over gRPC, by reason (ActionRequest.slot_fallback)",
                                        labels=["policy", "reason"])
        for h in hosted:
            slots.add_metric([h.name], h.shared_memory_slots)
            for reason, count in sorted(h.shm_fallbacks.items()):
                fallbacks.add_metric([h.name, reason], count)
        return [loaded, depth, version, updates, sessions, session_events, slots, fallbacks]


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every PolicyService and OIP call (every stream message) by policy, method and status code.

    Put it first, so that it also counts the calls later interceptors refuse
    (e.g. the token check's UNAUTHENTICATED). Other services pass untouched.
    """

    def __init__(self, metrics: ServerMetrics):
        self.metrics = metrics
        self._wrapped: dict[str, tuple[Any, Any]] = {}  # method path -> (handler, its wrapper)

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        path = details.method
        cached = self._wrapped.get(path)
        if cached is not None and cached[0] is handler:
            return cached[1]
        method = path[len(_PREFIX):] if path.startswith(_PREFIX) else None
        if method is None and path.startswith(_OIP_PREFIX) and path[len(_OIP_PREFIX):] in _OIP_METHODS:
            method = path[len(_OIP_PREFIX):]
        elif method not in _METHODS:
            method = None
        if handler is None or method is None:
            return handler
        wrapped = self._wrap(handler, method)
        self._wrapped[path] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        kinds = {(False, False): (grpc.unary_unary_rpc_method_handler, "unary_unary", self._unary),
                 (True, False): (grpc.stream_unary_rpc_method_handler, "stream_unary", self._stream_unary),
                 (True, True): (grpc.stream_stream_rpc_method_handler, "stream_stream", self._stream_stream),
                 (False, True): (grpc.unary_stream_rpc_method_handler, "unary_stream", None)}
        factory, attribute, wrapper = kinds[(bool(handler.request_streaming), bool(handler.response_streaming))]
        if wrapper is None:
            return handler
        return factory(wrapper(getattr(handler, attribute), method),
                       request_deserializer=handler.request_deserializer,
                       response_serializer=handler.response_serializer)

    def _unary(self, behavior: Callable, method: str) -> Callable:
        record = self.metrics.record

        async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            try:
                response = await behavior(request, context)
            except BaseException as e:
                record(_policy_of(request), method, _code(context, e), time.perf_counter() - start)
                raise
            record(_policy_of(request), method, _code(context), time.perf_counter() - start)
            return response

        return handler

    def _stream_unary(self, behavior: Callable, method: str) -> Callable:
        """A client stream (PushVariables): one call, labelled by its first message's policy."""
        record = self.metrics.record

        async def handler(request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            start, first = time.perf_counter(), []

            async def requests() -> Any:
                async for request in services.client_stream(request_iterator, context):
                    if not first:
                        first.append(_policy_of(request))
                    yield request

            try:
                response = await behavior(services.ClientStream(context, requests()), context)
            except BaseException as e:
                record(first[0] if first else None, method, _code(context, e), time.perf_counter() - start)
                raise
            record(first[0] if first else None, method, _code(context), time.perf_counter() - start)
            return response

        return handler

    def _stream_stream(self, behavior: Callable, method: str) -> Callable:
        """A bidi stream (ActionStream): each answer counts, with its own status (answers come in request order)."""
        record = self.metrics.record
        if not inspect.isasyncgenfunction(behavior):  # e.g. a refusal: it ends the call without answering
            return self._stream_unary(behavior, method)

        async def handler(request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            pending: collections.deque = collections.deque()

            async def requests() -> Any:
                async for request in services.client_stream(request_iterator, context):
                    pending.append((_policy_of(request), time.perf_counter()))
                    yield request

            try:
                async for response in behavior(services.ClientStream(context, requests()), context):
                    if pending:
                        policy, start = pending.popleft()
                        record(policy, method, _answer_code(response), time.perf_counter() - start)
                    yield response
            except GeneratorExit:  # gRPC closed the stream: the call is over, nothing more to count
                raise
            except asyncio.CancelledError:  # the client went away: what it still waited for is cancelled
                now, cancelled = time.perf_counter(), grpc.StatusCode.CANCELLED.value[0]
                for policy, start in pending:
                    record(policy, method, cancelled, now - start)
                raise
            except BaseException as e:  # the stream ended with an error (e.g. UNAVAILABLE at shutdown): once
                record(pending[0][0] if pending else None, method, _code(context, e), 0.0)
                raise

        return handler


def _policy_of(request: Any) -> Any:
    """The policy a request names: `policy` (native), `model_name` / `name` (OIP)."""
    for field in ("policy", "model_name", "name"):
        value = getattr(request, field, None)
        if value is not None:
            return value
    return None


def _answer_code(response: Any) -> int:
    """The status code of one stream answer: ActionResponse.error, or OIP's "CODE: ..." error_message."""
    error = getattr(response, "error", None)
    if error is not None:
        return error.code
    message = getattr(response, "error_message", "")
    return _CODE_OF_NAME.get(message.partition(":")[0], _CODE_OF_NAME["UNKNOWN"]) if message else 0


def _code(context: grpc.aio.ServicerContext, error: BaseException | None = None) -> int:
    """The status code (an int) a call ended with."""
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED.value[0]
    code = context.code()
    if code is None:
        return grpc.StatusCode.UNKNOWN.value[0] if error is not None else 0
    return code.value[0] if isinstance(code, grpc.StatusCode) else int(code)
