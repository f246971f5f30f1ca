"""ActionSender: how an Action request reaches the server, and when it is sent again.

A request the server did not accept is sent again within the caller's
deadline: UNAVAILABLE (a broken stream, a policy still loading, a server that
stops), and on unary calls CANCELLED by the server (gRPC cancels the calls in
flight on a server that stops). An Action holds no per-actor state on the
server, so sending it again is safe; a seeded one gives the same answer.

A request refused because the policy's queue is full (RESOURCE_EXHAUSTED,
reason QUEUE_FULL) goes again after the server's retry hint (RetryInfo, with
jitter) while the deadline allows, as a unary call: on a target of several
replicas gRPC's balancer sends it to the next one.

A message over a size limit ends a whole stream, for every caller waiting on
it: each of them sends its request again as a unary call, so that only the
oversized one fails; requests that large go unary from then on.

A sender whose connection was retired (its client moved to a new target:
see transport.connection) sends nothing again itself: a request that finds
no server raises `Retired`, and the client sends it on the new connection.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Callable

import grpc

from policy_client.transport import ACTIONS_SENT
from policy_client.transport.stream import ActionStream, StreamLimitError
from policy_client.wire import errors, status
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import policy_service_pb2_grpc as service_grpc

# How gRPC words a message over grpc.max_{send,receive}_message_length.
SIZE_LIMIT_TEXT = "message larger than max"
# The details of calls the client cancelled itself (grpc/_channel.py): never sent again.
_LOCAL_CANCEL = ("Locally cancelled by application!", "Channel closed!")
# Pause before sending a request again.
_PAUSE = 0.05


def wait_to_retry(error: errors.RemoteError, deadline: float) -> bool:
    """After a full queue's refusal: waits its retry hint (x0.5 to x1.5) and says True, or False (no
    hint, or the wait would pass the deadline: the refusal is the caller's answer)."""
    if error.reason != errors.QUEUE_FULL or error.retry_delay is None:
        return False
    pause = error.retry_delay * random.uniform(0.5, 1.5)
    if time.monotonic() + pause >= deadline:
        return False
    time.sleep(pause)
    return True


class Retired(errors.UnavailableError):
    """A request found no server on a connection its client has left: send it on the client's new one."""


class ActionSender:
    """Sends Action requests on one shared stream or as unary calls; thread-safe.

    Args:
      stub: the channel's PolicyService stub.
      address: the server's address, for messages.
      max_send_bytes: the channel's grpc.max_send_message_length (-1: none).
      on_unavailable: called each time a request finds no server (before it goes again).
    """

    def __init__(self, stub: service_grpc.PolicyServiceStub, address: str, max_send_bytes: int,
                 on_unavailable: Callable[[], None] | None = None):
        self._stub = stub
        self._address = address
        self._on_unavailable = on_unavailable
        self._retired = False
        self._max_send_bytes = max_send_bytes if max_send_bytes >= 0 else math.inf
        self._stream: ActionStream | None = None
        self._lock = threading.Lock()
        self._closed = False
        # Requests at least this large go as unary calls: one of this size was over a limit.
        self._unary_from_bytes: float = math.inf
        self.queue_full = 0  # refusals of a full queue sent again after their retry hint

    def send(self, request: service_pb.ActionRequest, transport: str, timeout: float) -> service_pb.ActionResponse:
        """The answer to `request` (transport "stream" or "unary"), within `timeout` seconds.

        Raises:
          RemoteError: the server's error for the request, UnavailableError
            when it was unreachable until the deadline, DeadlineExceededError,
            ResourceExhaustedError for a request (or answer) over a message size
            limit (the channel's or the server's).
        """
        deadline = time.monotonic() + timeout
        ACTIONS_SENT["grpc"] += 1
        size = request.ByteSize()
        if size > self._max_send_bytes:
            raise errors.ResourceExhaustedError(
                f"the request is {size} bytes, over this client's grpc.max_send_message_length of "
                f"{self._max_send_bytes}: send fewer rows per call (or raise that option and the server's "
                "max_message_bytes)")
        if transport == "unary" or size >= self._unary_from_bytes:
            return self._unary(request, deadline, size)
        return self._on_stream(request, deadline, timeout, size)

    def retire(self) -> None:
        """From now on a request that finds no server raises Retired instead of going again here."""
        self._retired = True

    def _again(self, error: errors.UnavailableError, deadline: float) -> None:
        """Before a request goes again: raise if it may not (out of time, or retired), else pause."""
        if self._on_unavailable is not None:
            self._on_unavailable()
        if time.monotonic() >= deadline:
            raise error
        if self._retired:
            raise Retired(error.details) from None
        time.sleep(_PAUSE)

    def close(self) -> None:
        """Closes the stream; calls the channel's closing cancels are not sent again."""
        self._closed = True
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None

    def _get_stream(self) -> ActionStream:
        with self._lock:
            if self._stream is None or not self._stream.alive:
                self._stream = ActionStream(self._stub)
            return self._stream

    def _on_stream(self, request: service_pb.ActionRequest, deadline: float, timeout: float,
                   size: int) -> service_pb.ActionResponse:
        unavailable: errors.UnavailableError | None = None
        while True:
            try:
                response = self._get_stream().call(request, deadline)
                if not response.HasField("error"):
                    return response
                raise status.from_status(response.error)
            except errors.DeadlineExceededError:
                if unavailable is not None:  # unavailable all along: say why, not just "too late"
                    raise unavailable from None
                raise errors.DeadlineExceededError(f"no answer within {timeout:.1f}s from {self._address}") from None
            except StreamLimitError:
                # Which request of the stream was too large is unknown: each sends
                # its own again alone, and only the oversized one fails.
                return self._unary(request, deadline, size)
            except errors.ResourceExhaustedError as e:
                if not wait_to_retry(e, deadline):
                    raise
                self.queue_full += 1
                return self._unary(request, deadline, size, refused=e)
            except errors.UnavailableError as e:
                # Not accepted (the stream broke, the policy is still loading, the
                # server is stopping): safe to send again until the deadline.
                unavailable = e
                self._again(e, deadline)

    def _unary(self, request: service_pb.ActionRequest, deadline: float, size: int,
               refused: errors.ResourceExhaustedError | None = None) -> service_pb.ActionResponse:
        unavailable: errors.UnavailableError | None = None
        while True:
            try:
                return self._stub.Action(request, timeout=max(deadline - time.monotonic(), 0.0),
                                         wait_for_ready=True)
            except grpc.RpcError as e:
                error, again, code = status.from_rpc_error(e), self._not_accepted(e), e.code()
            # Raised outside the except block: the failed call is not kept alive as __context__.
            if isinstance(error, errors.ResourceExhaustedError) and SIZE_LIMIT_TEXT in error.details:
                self._unary_from_bytes = min(self._unary_from_bytes, size)
                raise errors.ResourceExhaustedError(
                    f"{error.details}: this request of {size} bytes, or its answer, is over a message size "
                    "limit; send fewer rows per call (or raise the server's max_message_bytes and this "
                    "client's grpc.max_send_message_length / grpc.max_receive_message_length)")
            if isinstance(error, errors.DeadlineExceededError) and (unavailable or refused) is not None:
                raise unavailable or refused  # what kept it from being served, not just "too late"
            if isinstance(error, errors.ResourceExhaustedError) and wait_to_retry(error, deadline):
                self.queue_full += 1
                refused = error
                continue
            if self._retired and code == grpc.StatusCode.CANCELLED:  # its retired channel closed under it
                raise Retired(error.details) from None
            if not again:
                raise error
            unavailable = error if isinstance(error, errors.UnavailableError) else errors.UnavailableError(
                f"the server cancelled the call ({error.details})")
            self._again(unavailable, deadline)

    def _not_accepted(self, error: grpc.RpcError) -> bool:
        """Whether a failed unary Action may be sent again: UNAVAILABLE, or CANCELLED by the server."""
        code = error.code()
        if code == grpc.StatusCode.UNAVAILABLE:
            return True
        return code == grpc.StatusCode.CANCELLED and not self._closed and error.details() not in _LOCAL_CANCEL
