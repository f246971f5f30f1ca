"""One bidi ActionStream shared by many threads, answers matched by request_id."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import grpc

from policy_client.wire import STREAM_CAP, STREAM_CAP_KEY, errors, status
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import policy_service_pb2_grpc as service_grpc


class ActionStream:
    """One bidi ActionStream shared by many threads; answers matched by request_id.

    No reader thread: a caller waiting for its answer becomes the stream's
    reader (leader/follower) and hands the answers of other callers over, so
    a lone actor pays no extra thread switch per call. A watchdog cancels the
    stream when a reader's deadline passes (next() cannot time out).

    Flow control (ActionRequest.answers_read): at most STREAM_CAP requests
    are unanswered at once (more callers wait their turn, within their
    deadline); every request tells the server how many answers this stream
    has read, and when the server says it counts them (the stream's
    `tfa-stream-cap` metadata) the reader also acknowledges alone every cap/2
    answers, so a server that caps unread answers never waits for
    acknowledgements that would only come with a next request.
    """

    def __init__(self, stub: service_grpc.PolicyServiceStub):
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._answers: dict[int, Any] = {}
        self._deadlines: dict[int, float] = {}
        self._reading = False
        self._failure: Exception | None = None
        self._turns = threading.BoundedSemaphore(STREAM_CAP)  # requests unanswered at most
        self._unanswered: set[int] = set()  # requests sent whose answers have not come
        self._abandoned: set[int] = set()  # of those, the ones whose callers gave up: their answers free their turns
        self._read = self._acked = 0  # answers read from the stream; the most the server was told of
        self._ack_every: int | None = None  # from the server's tfa-stream-cap; None: it counts no acknowledgements
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
          StreamLimitError: a message over a size limit ended the stream.
        """
        key = request.request_id
        if not self._turns.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise deadline_error()
        answered = False
        try:
            answer = self._call_in_turn(request, key, deadline)
            answered = True
            return answer
        finally:
            with self._cond:
                if not answered:
                    self._answers.pop(key, None)  # came as the caller gave up
                if answered or self._failure is not None or key not in self._unanswered:
                    self._turns.release()
                else:  # gave up waiting: its answer still comes, and gives the turn back (see _read_until)
                    self._abandoned.add(key)

    def _call_in_turn(self, request: service_pb.ActionRequest, key: int, deadline: float) -> service_pb.ActionResponse:
        with self._cond:
            if self._failure is not None:
                raise self._failure
            self._deadlines[key] = deadline
            request.answers_read = self._acked = self._read
            self._unanswered.add(key)
            self._requests.put(request)  # under the lock: acknowledgements go out in order
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
                        raise deadline_error()
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
                    self._read += 1
                    if self._ack_every is None and self._read == 1:
                        self._ack_every = _ack_interval(self._call.initial_metadata())
                    if self._ack_every and self._read - self._acked >= self._ack_every:
                        self._acked = self._read
                        self._requests.put(service_pb.ActionRequest(answers_read=self._read))
                    self._unanswered.discard(response.request_id)
                    if response.request_id == key:
                        self._reading = False
                        self._cond.notify_all()
                        return response
                    if response.request_id in self._abandoned:
                        self._abandoned.discard(response.request_id)
                        self._turns.release()
                    else:
                        self._answers[response.request_id] = response
                    self._cond.notify_all()
        except (grpc.RpcError, StopIteration) as e:
            expired = key in self._deadlines and self._deadlines[key] <= time.monotonic()
            failure = status.from_rpc_error(e) if isinstance(e, grpc.RpcError) else \
                errors.UnavailableError("the action stream ended")
            if isinstance(e, grpc.RpcError) and e.code() in _BROKEN:
                # A stream that ends this way (cancelled, or torn down by a server that
                # stopped before its last status went out) answered nothing more:
                # the requests it owes are not accepted, and safe to send again.
                failure = errors.UnavailableError(f"the action stream broke ({e.code().name}: {e.details()})")
            elif isinstance(e, grpc.RpcError) and e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                failure = StreamLimitError(f"the action stream ended on a message over a size limit "
                                           f"({e.details()})")
            with self._cond:
                self._failure = failure
                self._reading = False
                self._cond.notify_all()
            self._requests.put(None)  # ends the request iterator: gRPC's consumer thread returns
            raise (deadline_error() if expired else failure) from e

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


class StreamLimitError(errors.ResourceExhaustedError):
    """The stream ended RESOURCE_EXHAUSTED: some message of it (which one is unknown) was over a size limit.

    Per-request errors (a full queue too) travel in ActionResponse.error; this
    ends the stream for every caller waiting on it, and none of their requests
    was answered: each may be sent again alone.
    """


# Stream-level codes of a broken transport: per-request errors travel in
# ActionResponse.error, so a stream status is the server's shutdown
# (UNAVAILABLE), its interceptors (auth) or the transport itself.
_BROKEN = (grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


def _ack_interval(metadata: Any) -> int:
    """Answers read between two acknowledgements: half the server's cap of unread answers (0: it has none)."""
    for key, value in metadata or ():
        if key == STREAM_CAP_KEY:
            try:
                return max(1, int(value) // 2)
            except ValueError:
                return 0
    return 0


def deadline_error() -> errors.DeadlineExceededError:
    return errors.DeadlineExceededError("no answer within the call's deadline")
