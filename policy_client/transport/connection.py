"""Where a client's calls go: its connection to a server or replicas, moved when the replicas move.

A `Connection` bundles what one target needs: the channel, its stub, the
action sender (one shared stream) and the shared-memory path. A `Router`
holds the client's current connection. When the client's address is a
target source (a callable returning the current target, such as a fleet's
`ReplicaSet`), a `TargetWatcher` re-reads it every `interval` seconds, and at
once when a call finds no server; when the target changed, the router opens a
connection to the new one and retires the old. A retired connection takes no
new calls; its calls in flight that find no server go again on the new
connection (`Retired`), and it closes once idle.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Sequence

import grpc

from policy_client.transport import security, shm
from policy_client.transport.channel import make_channel, several_addresses
from policy_client.transport.sender import ActionSender, Retired
from policy_client.wire import DEFAULT_MAX_MESSAGE_BYTES, errors, status
from policy_client.wire.generated import policy_service_pb2_grpc as service_grpc

# Seconds between two reads of a target source (a call that finds no server reads it at once).
REFRESH_INTERVAL = 1.0
# Seconds a retired connection waits for its calls in flight before it closes: the ones still waiting
# then (for a server that is gone) are cancelled and go again on the new connection.
RETIRE_GRACE = 1.0

TargetSource = Callable[[], str]


class Connection:
    """One target's channel, stub, action sender and shared-memory path.

    Args:
      where: the endpoint (target, policy, credentials, channel options).
      options: extra channel options.
      load_balancing: see make_channel.
      data_plane: "auto", "shm" or "grpc" (see PolicyClient).
      timeout: seconds a call may take (the shared-memory slot's too).
      on_unavailable: called when a call finds no server (the watcher's poke).
    """

    def __init__(self, where: security.Endpoint, options: Sequence[tuple[str, Any]], load_balancing: str | None,
                 data_plane: str, timeout: float, on_unavailable: Callable[[], None] | None = None):
        self.target = where.target
        self.channel = make_channel(where.target, credentials=where.credentials,
                                    options=(*where.options, *options), load_balancing=load_balancing)
        self.stub = service_grpc.PolicyServiceStub(self.channel)
        merged = dict((("grpc.max_send_message_length", DEFAULT_MAX_MESSAGE_BYTES), *where.options, *options))
        self.sender = ActionSender(self.stub, self.target, int(merged["grpc.max_send_message_length"]),
                                   on_unavailable=on_unavailable)
        if data_plane == "auto" and (load_balancing or several_addresses(where.target)):
            data_plane = "grpc"  # balanced over replicas: a slot would tie every request to one of them
        self.shm = shm.SharedMemoryPath(self.channel, where.policy, data_plane, timeout)
        self._inflight = 0
        self._retired = self._closed = False
        self._lock = threading.Lock()

    def enter(self) -> bool:
        """A call starts on this connection; False (and nothing counted) when it is retired already."""
        with self._lock:
            if self._retired:
                return False
            self._inflight += 1
            return True

    @property
    def retired(self) -> bool:
        return self._retired

    def leave(self) -> None:
        """A call on this connection ended; a retired connection closes once the last one did."""
        with self._lock:
            self._inflight -= 1
            idle = self._retired and not self._inflight
        if idle:
            self.close()

    def retire(self) -> None:
        """No new calls: the ones in flight finish within RETIRE_GRACE (or go again on the new connection),
        then it closes."""
        with self._lock:
            self._retired = True
            idle = not self._inflight
        self.sender.retire()
        if idle:
            self.close()
            return
        timer = threading.Timer(RETIRE_GRACE, self.close)
        timer.daemon = True
        timer.start()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.sender.close()
        self.shm.close()
        self.channel.close()


class TargetWatcher:
    """Re-reads a target source every `interval` seconds (and when poked); calls `on_change` with a new target.

    Args:
      source: returns the current target.
      current: the target in use now.
      on_change: called (on the watcher's thread) with each new target.
      interval: seconds between reads.
    """

    def __init__(self, source: TargetSource, current: str, on_change: Callable[[str], None], interval: float):
        self._source, self._current, self._on_change, self._interval = source, current, on_change, interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.errors = 0  # reads that failed (the target in use stays)
        self._thread = threading.Thread(target=self._run, name="target-watcher", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """Reads the source now (a call found no server)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                target = self._source()
            except Exception:  # pylint: disable=broad-except  # a source that fails keeps the target in use
                self.errors += 1
                continue
            if target and target != self._current:
                self._current = target
                self._on_change(target)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()


class Router:
    """A client's current Connection, and the watcher that moves it (for a target source).

    Args:
      address: a gRPC target or URI (see security.endpoint), or a target source.
      policy: the policy name (a URI's, else this).
      timeout: seconds a call may take.
      credentials, options, load_balancing, token, token_file: see PolicyClient.
      data_plane: "auto", "shm" or "grpc".
      interval: seconds between reads of a target source (default REFRESH_INTERVAL).
    """

    def __init__(self, address: str | TargetSource, policy: str, *, timeout: float,
                 credentials: grpc.ChannelCredentials | None, options: Sequence[tuple[str, Any]],
                 load_balancing: str | None, token: str | None, token_file: str | None, data_plane: str,
                 interval: float | None = None):
        source = address if callable(address) else None
        self._endpoint = {"credentials": credentials, "token": token, "token_file": token_file}
        self._settings = (tuple(options), load_balancing, data_plane, timeout)
        where = security.endpoint(source() if source is not None else address, policy, **self._endpoint)
        self.policy = where.policy
        self.resent = 0  # calls that found no server on a connection left behind, and went to the new one
        self._lock = threading.Lock()
        self._watcher: TargetWatcher | None = None
        self.current = self._connect(where)
        if source is not None:
            self._watcher = TargetWatcher(source, self.current.target, self.retarget,
                                          REFRESH_INTERVAL if interval is None else interval)

    def _connect(self, where: security.Endpoint) -> Connection:
        options, load_balancing, plane, timeout = self._settings
        return Connection(where, options, load_balancing, plane, timeout, on_unavailable=self._poke)

    def _poke(self) -> None:
        if self._watcher is not None:
            self._watcher.poke()

    def retarget(self, target: str) -> None:
        """New calls go to `target`; the old connection retires."""
        fresh = self._connect(security.endpoint(target, self.policy, **self._endpoint))
        with self._lock:
            old, self.current = self.current, fresh
        old.retire()

    def send(self, request: Any, transport: str, timeout: float) -> Any:
        """The answer to an Action request (see ActionSender.send), on whichever connection is current."""
        deadline = time.monotonic() + timeout
        while True:
            conn = self.current
            if not conn.enter():  # retired between the read and now: take the new one
                continue
            try:
                return conn.sender.send(request, transport, max(deadline - time.monotonic(), 0.0))
            except Retired:  # the client moved meanwhile: the request goes to the new target
                self.resent += 1
                continue
            finally:
                conn.leave()

    def unary(self, method: str, request: Any, timeout: float) -> Any:
        """A unary PolicyService call; one that found no server goes again if the client moved meanwhile.

        Raises:
          RemoteError: the call's status, as an exception.
        """
        deadline = time.monotonic() + timeout
        while True:
            conn = self.current
            if not conn.enter():
                continue
            try:
                return getattr(conn.stub, method)(request, timeout=max(deadline - time.monotonic(), 0.0),
                                                  wait_for_ready=True)
            except grpc.RpcError as e:
                error = status.from_rpc_error(e)
                cancelled = e.code() == grpc.StatusCode.CANCELLED
            finally:
                conn.leave()
            # No server (or its retired channel closed under the call): where the client moved, it goes again.
            if isinstance(error, (errors.UnavailableError, errors.DeadlineExceededError)) or (
                    cancelled and conn.retired):
                if self.current is not conn and time.monotonic() < deadline:
                    self.resent += 1
                    continue
                self._poke()
            # Raised outside the except block: the failed call (grpc objects) is not
            # kept alive as __context__ by a caller that holds on to the error.
            raise error

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        self.current.close()
