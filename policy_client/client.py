"""The numpy-level client: a channel, its stubs and the action stream (no TensorFlow)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import queue
import threading
import time
from typing import Any, Sequence

import grpc

from policy_client import codec, errors
from policy_client.generated import policy_service_pb2 as service_pb
from policy_client.generated import policy_service_pb2_grpc as service_grpc
from policy_client.specs import PolicySpecs

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_SERVICE = "tfa_policy_grpc.v1.PolicyService"
# Unary calls wait for the channel to be ready and retry UNAVAILABLE, so a
# restarting server is invisible to callers within their deadline.
_SERVICE_CONFIG = json.dumps({
    "methodConfig": [{
        "name": [{"service": _SERVICE}],
        "waitForReady": True,
        "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "2s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
    }],
})


@dataclasses.dataclass(frozen=True)
class ActionResult:
    """One answer: the PolicyStep (numpy nests) and the policy version that made it."""

    policy_step: Any
    version: int


@dataclasses.dataclass(frozen=True)
class PolicyInfo:
    """A hosted policy as ListPolicies describes it."""

    name: str
    version: int
    backend: str
    stateful: bool


def make_channel(address: str, *, credentials: grpc.ChannelCredentials | None = None,
                 options: Sequence[tuple[str, Any]] = (), load_balancing: str | None = None) -> grpc.Channel:
    """Opens a channel with this library's defaults (message sizes, retries).

    Args:
      address: a gRPC target: "host:port", "dns:///name:port" or
        "ipv4:127.0.0.1:5001,127.0.0.1:5002".
      credentials: channel credentials for TLS; None connects in plaintext.
      options: extra channel options; they override the defaults.
      load_balancing: e.g. "round_robin" to spread unary calls over every
        address the target resolves to (each stream stays on one server).
    """
    merged = {"grpc.max_receive_message_length": DEFAULT_MAX_MESSAGE_BYTES,
              "grpc.max_send_message_length": DEFAULT_MAX_MESSAGE_BYTES,
              "grpc.service_config": _SERVICE_CONFIG, "grpc.enable_retries": 1}
    if load_balancing:
        merged["grpc.lb_policy_name"] = load_balancing
    merged.update(dict(options))
    items = list(merged.items())
    return grpc.secure_channel(address, credentials, items) if credentials else grpc.insecure_channel(address, items)


class _ActionStream:
    """One bidi ActionStream shared by many threads; answers matched by request_id.

    No reader thread: a caller waiting for its answer becomes the stream's
    reader (leader/follower) and hands the answers of other callers over, so
    a lone actor pays no extra thread switch per call. A watchdog cancels the
    stream when a reader's deadline passes (next() cannot time out).
    """

    def __init__(self, stub: service_grpc.PolicyServiceStub):
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._answers: dict[int, Any] = {}
        self._deadlines: dict[int, float] = {}
        self._reading = False
        self._failure: Exception | None = None
        self._call = stub.ActionStream(iter(self._requests.get, None), wait_for_ready=True)
        self._watchdog = threading.Thread(target=self._watch, name="action-stream-watchdog", daemon=True)
        self._watchdog.start()

    @property
    def alive(self) -> bool:
        return self._failure is None

    def call(self, request: service_pb.ActionRequest, deadline: float) -> service_pb.ActionResponse:
        """Sends `request` and returns its answer.

        Raises:
          DeadlineExceededError: no answer by `deadline` (time.monotonic()).
          UnavailableError (or another RemoteError): the stream failed; the
            request may be sent again on a new stream.
        """
        key = request.request_id
        with self._cond:
            if self._failure is not None:
                raise self._failure
            self._deadlines[key] = deadline
        self._requests.put(request)
        try:
            with self._cond:
                while True:
                    if key in self._answers:
                        return self._answers.pop(key)
                    if self._failure is not None:
                        raise self._failure
                    if not self._reading:
                        self._reading = True
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise _deadline_error()
                    self._cond.wait(remaining)
            return self._read_until(key)
        finally:
            with self._cond:
                self._deadlines.pop(key, None)

    def _read_until(self, key: int) -> service_pb.ActionResponse:
        """As the reader: reads answers, handing others over, until `key`'s arrives."""
        try:
            while True:
                response = next(self._call)
                with self._cond:
                    if response.request_id == key:
                        self._reading = False
                        self._cond.notify_all()
                        return response
                    self._answers[response.request_id] = response
                    self._cond.notify_all()
        except (grpc.RpcError, StopIteration) as e:
            expired = key in self._deadlines and self._deadlines[key] <= time.monotonic()
            failure = errors.from_rpc_error(e) if isinstance(e, grpc.RpcError) else \
                errors.UnavailableError("the action stream ended")
            if isinstance(e, grpc.RpcError) and e.code() == grpc.StatusCode.CANCELLED:
                failure = errors.UnavailableError("the action stream was cancelled")
            with self._cond:
                self._failure = failure
                self._reading = False
                self._cond.notify_all()
            raise (_deadline_error() if expired else failure) from e

    def _watch(self) -> None:
        while self._failure is None:
            time.sleep(0.05)
            with self._cond:
                expired = self._reading and any(d <= time.monotonic() for d in self._deadlines.values())
            if expired:
                self._call.cancel()
                return

    def close(self) -> None:
        with self._cond:
            if self._failure is None:
                self._failure = errors.UnavailableError("the action stream is closed")
            self._cond.notify_all()
        self._requests.put(None)
        self._call.cancel()


def _deadline_error() -> errors.DeadlineExceededError:
    return errors.DeadlineExceededError("no answer within the call's deadline")


class PolicyClient:
    """Talks to a policy server with numpy nests in and out.

    Thread-safe: one client (one channel, one stream) serves many threads.

    Args:
      address: gRPC target of the server (see make_channel).
      policy: the policy name; empty selects the server's default policy.
      timeout: seconds each call may take (its deadline), reconnection included.
      transport: "stream" (one bidi stream, lowest latency) or "unary".
      credentials, options, load_balancing: see make_channel.
    """

    def __init__(self, address: str, policy: str = "", *, timeout: float = DEFAULT_TIMEOUT,
                 transport: str = "stream", credentials: grpc.ChannelCredentials | None = None,
                 options: Sequence[tuple[str, Any]] = (), load_balancing: str | None = None):
        if transport not in ("stream", "unary"):
            raise ValueError(f"transport must be 'stream' or 'unary', got {transport!r}")
        self.address = address
        self.policy = policy
        self.timeout = timeout
        self.transport = transport
        self._channel = make_channel(address, credentials=credentials, options=options,
                                     load_balancing=load_balancing)
        self._stub = service_grpc.PolicyServiceStub(self._channel)
        self._ids = itertools.count(1)
        self._stream: _ActionStream | None = None
        self._stream_lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    # -------------------------------------------------------------- metadata

    def list_policies(self) -> list[PolicyInfo]:
        """Every policy the server hosts."""
        response = self._unary(self._stub.ListPolicies, service_pb.ListPoliciesRequest())
        return [PolicyInfo(p.name, p.version, p.backend, p.stateful) for p in response.policies]

    def get_specs(self) -> tuple[PolicySpecs, int]:
        """The policy's specs and current version."""
        response = self._unary(self._stub.GetSpecs, service_pb.GetSpecsRequest(policy=self.policy))
        return codec.policy_specs_from_proto(response.specs), response.version

    def get_initial_state(self, batch_size: int | None = None) -> Any:
        """The policy's initial state for `batch_size` rows (None: unbatched)."""
        request = service_pb.GetInitialStateRequest(policy=self.policy, batch_size=batch_size or 0)
        response = self._unary(self._stub.GetInitialState, request)
        return codec.nest_from_proto(response.state, copy=True)

    def stats(self) -> list[dict[str, Any]]:
        """Serving statistics of every policy (or of this client's policy if named)."""
        response = self._unary(self._stub.GetStats, service_pb.GetStatsRequest(policy=self.policy))
        return [{f.name: getattr(p, f.name) for f in p.DESCRIPTOR.fields} for p in response.policies]

    # -------------------------------------------------------------- actions

    def encode_request(self, time_step: Any, policy_state: Any = (), *, batch_size: int = 0,
                       seed: int | None = None) -> service_pb.ActionRequest:
        """Builds an ActionRequest (batch_size 0: unbatched values).

        Raises:
          CodecError: a value that cannot be encoded (the message names it).
        """
        request = service_pb.ActionRequest(policy=self.policy, batch_size=batch_size, request_id=next(self._ids))
        codec.write_time_step(request.time_step, time_step)
        codec.write_nest(request.policy_state, policy_state if policy_state is not None else ())
        if seed is not None:
            request.seed = int(seed)
        return request

    def action(self, time_step: Any, policy_state: Any = (), *, batch_size: int = 0,
               seed: int | None = None) -> ActionResult:
        """Asks the server for an action; blocks until it answers.

        Raises:
          RemoteError: a subclass per gRPC status (InvalidArgumentError is a
            ValueError; DeadlineExceededError a TimeoutError).
        """
        request = self.encode_request(time_step, policy_state, batch_size=batch_size, seed=seed)
        return self.send(request)

    def action_async(self, time_step: Any, policy_state: Any = (), *, batch_size: int = 0,
                     seed: int | None = None) -> concurrent.futures.Future:
        """Like `action`, but returns a future of the ActionResult at once."""
        request = self.encode_request(time_step, policy_state, batch_size=batch_size, seed=seed)
        if self._executor is None:
            with self._stream_lock:
                if self._executor is None:
                    self._executor = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="policy-client")
        return self._executor.submit(self.send, request)

    def send(self, request: service_pb.ActionRequest) -> ActionResult:
        """Sends a prepared request and decodes the answer (retrying UNAVAILABLE until the deadline)."""
        if self.transport == "unary":
            return _decode(self._unary(self._stub.Action, request))
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                response = self._get_stream().call(request, deadline)
                break
            except errors.DeadlineExceededError:
                raise errors.DeadlineExceededError(
                    f"no answer within {self.timeout:.1f}s from {self.address}") from None
            except errors.UnavailableError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        if response.HasField("error"):
            raise errors.from_status(_status_code(response.error.code), response.error.message)
        return _decode(response)

    def close(self) -> None:
        """Closes the stream and the channel."""
        with self._stream_lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._channel.close()

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- internals

    def _get_stream(self) -> _ActionStream:
        with self._stream_lock:
            if self._stream is None or not self._stream.alive:
                self._stream = _ActionStream(self._stub)
            return self._stream

    def _unary(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, wait_for_ready=True)
        except grpc.RpcError as e:
            raise errors.from_rpc_error(e) from e


_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _status_code(value: int) -> grpc.StatusCode:
    return _CODES.get(value, grpc.StatusCode.UNKNOWN)


def _decode(response: service_pb.ActionResponse) -> ActionResult:
    return ActionResult(codec.policy_step_from_proto(response.policy_step, copy=True), response.version)

