"""The client end of the same-host data plane: one shared-memory slot per client (see policy_server.shm.plane).

`Slot.open` negotiates a slot over gRPC and proves the host is shared (it
reads the server's token from the segment and sends it back on the plane's
Unix socket). `Slot.call` writes a request's leaves in place, rings, and waits
for the answer's leaves. Whatever cannot take the slot returns None from
`open` or raises `SlotBroken` from `call`, and the caller goes on over gRPC:
the protocol is in protos/tfa_policy_grpc/v1/shared_memory.proto.
"""

from __future__ import annotations

import collections
import logging
import mmap
import os
import socket
import threading
import time
from typing import Any, Sequence

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

from policy_client.transport import ACTIONS_SENT
from policy_client.transport.sender import wait_to_retry
from policy_client.wire import errors, shm_layout, status
from policy_client.wire.generated import shared_memory_pb2 as shm_pb
from policy_client.wire.generated import shared_memory_pb2_grpc as shm_grpc
from policy_client.wire.shm_layout import SlotLayout

logger = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
_TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class SlotBroken(Exception):
    """The slot cannot carry this request (the socket broke, or it owes an answer): send it over gRPC."""


class NoSlot(Exception):
    """No slot could be had; `transient` when the server was not reachable (try again later)."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class SlotBusy(SlotBroken):
    """Another thread is using the slot: send this request over gRPC (the slot stays)."""


class Slot:
    """One attached slot; `call` is used by one thread at a time (others get SlotBroken and take gRPC)."""

    def __init__(self, layout: SlotLayout, buffer: mmap.mmap, sock: socket.socket, policy: str):
        self.layout = layout
        self.policy = policy
        self._buffer = buffer
        self._sock = sock
        self._requests = shm_layout.views(buffer, layout.request, layout.max_rows)
        self._answers = shm_layout.views(buffer, layout.answer, layout.max_rows)
        self._sequence = 0
        self._owed: int | None = None  # a sequence whose answer has not come (its call timed out)
        self._lock = threading.Lock()
        self.closed = False
        self._retired = False  # a larger slot replaced it: closed once no call uses it

    @classmethod
    def open(cls, channel: grpc.Channel, policy: str, max_rows: int, timeout: float,
             metadata: Sequence[tuple[str, str]] = ()) -> "Slot":
        """A slot for `policy`.

        Raises:
          NoSlot: the plane cannot be used (no offer, another host or user, ...).
        """
        stub = shm_grpc.SharedMemoryServiceStub(channel)
        try:
            response = stub.OpenSlot(shm_pb.OpenSlotRequest(policy=policy, max_rows=max_rows), timeout=timeout,
                                     metadata=metadata or None)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            raise NoSlot(f"OpenSlot: {code.name if code else ''} {e.details() if hasattr(e, 'details') else e}",
                         transient=code in _TRANSIENT) from None
        try:
            layout = SlotLayout.from_proto(response)
            buffer = _map(response.segment, layout.size)
        except (OSError, ValueError) as e:  # not this host, or not this user: gRPC it is
            raise NoSlot(f"shared-memory segment {response.segment!r} not usable here: {e}") from None
        token = bytes(buffer[shm_layout.TOKEN_OFFSET:shm_layout.TOKEN_OFFSET + shm_layout.TOKEN_BYTES])
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(response.socket_path)
            sock.sendall(token)
            if sock.recv(1) != b"\x01":
                raise OSError("the server refused the slot's token")
        except OSError as e:
            sock.close()
            buffer.close()
            raise NoSlot(f"shared-memory socket {response.socket_path!r} not usable: {e}") from None
        logger.info("actions for %r go through shared memory (%d rows per request)", response.policy,
                    layout.max_rows)
        return cls(layout, buffer, sock, response.policy)

    def fits(self, leaves: Sequence[np.ndarray], rows: int) -> bool:
        return rows <= self.layout.max_rows and len(leaves) == len(self._requests)

    def call(self, leaves: Sequence[np.ndarray], rows: int, seed: int | None,
             deadline: float) -> tuple[int, int, Any]:
        """Sends one request's leaves (conforming: the specs' dtypes, shape (rows,) + spec shape).

        Returns:
          (code, version, answer leaves (copies) or the google.rpc.Status of a failure).

        Raises:
          SlotBroken: send it over gRPC (the slot is busy, owes an answer, or broke).
          TimeoutError: no answer by the deadline (the slot is owed that answer).
        """
        if not self._lock.acquire(blocking=False):
            raise SlotBusy("the slot is busy")
        try:
            if self._retired:
                raise SlotBusy("a larger slot replaced this one")
            if self.closed:
                raise SlotBroken("the slot is closed")
            if self._owed is not None and not self._drain():
                raise SlotBusy("the slot still owes an earlier answer")
            if len(leaves) != len(self._requests) or rows > self.layout.max_rows:
                raise SlotBusy("the request does not fit the slot")
            for view, leaf in zip(self._requests, leaves):
                if leaf.dtype != view.dtype or leaf.shape != ((rows, *view.shape[1:]) if rows else view.shape[1:]):
                    raise SlotBusy("the request does not fit the slot's layout")
            for view, leaf in zip(self._requests, leaves):
                if rows:
                    view[:rows] = leaf
                else:
                    view[0] = leaf
            self._sequence += 1
            sequence = self._sequence
            shm_layout.REQUEST_HEADER.pack_into(self._buffer, shm_layout.REQUEST_OFFSET, sequence, rows,
                                                seed is not None, 0, seed or 0)
            try:
                self._sock.sendall(shm_layout.DOORBELL.pack(sequence))
            except OSError as e:
                self._break()
                raise SlotBroken(f"the slot's socket broke: {e}") from None
            self._owed = sequence
            ACTIONS_SENT["shm"] += 1
            self._wait(sequence, deadline)
            self._owed = None
            return self._read(rows)
        finally:
            self._lock.release()
            if self._retired:
                self._close_if_unused()

    def _wait(self, sequence: int, deadline: float) -> None:
        size = shm_layout.DOORBELL.size
        data = b""
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no shared-memory answer by the deadline")
            try:
                self._sock.settimeout(left)
                chunk = self._sock.recv(size - len(data))
            except socket.timeout:
                raise TimeoutError("no shared-memory answer by the deadline") from None
            except OSError as e:
                self._break()
                raise SlotBroken(f"the slot's socket broke: {e}") from None
            if not chunk:
                self._break()
                raise SlotBroken("the server closed the slot")
            data += chunk
        if shm_layout.DOORBELL.unpack(data)[0] != sequence:
            self._break()
            raise SlotBroken("an answer for another request")

    def _drain(self) -> bool:
        """Takes the answer a timed-out call is owed, if it came; True when the slot is free again."""
        try:
            self._wait(self._owed, time.monotonic() + 0.001)
        except TimeoutError:
            return False
        self._owed = None
        return True

    def _read(self, rows: int) -> tuple[int, int, Any]:
        _, code, error_bytes, version = shm_layout.ANSWER_HEADER.unpack_from(self._buffer, shm_layout.ANSWER_OFFSET)
        if code:
            start = self.layout.error_offset
            try:
                return code, version, status_pb2.Status.FromString(bytes(self._buffer[start:start + error_bytes]))
            except DecodeError:
                self._break()
                raise SlotBroken("an unreadable error in the slot") from None
        if rows:
            return 0, version, [np.array(v[:rows]) for v in self._answers]
        return 0, version, [np.array(v[0]) for v in self._answers]

    def _break(self) -> None:
        self.closed = True
        try:
            self._sock.close()
        except OSError:
            pass

    def retire(self) -> None:
        """Closes the slot once no call uses it: a call in flight on it still gets its answer here."""
        self._retired = True
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        if self._lock.acquire(blocking=False):  # else the call in flight closes it as it ends
            try:
                self.close()
            finally:
                self._lock.release()

    def close(self) -> None:
        """Frees the slot (the server sees the socket close); a call in flight ends with SlotBroken."""
        self.closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes a thread waiting for an answer
        except OSError:
            pass
        self._break()
        # Never mmap.close(): numpy views do not pin the mapping, and a thread in `call` may still use
        # them. They hold the mmap object; once the slot and they are gone, the garbage collector unmaps it.


def _map(segment: str, size: int) -> mmap.mmap:
    if not segment or "/" in segment or segment.startswith("."):
        raise ValueError(f"bad segment name {segment!r}")
    fd = os.open(os.path.join(SHM_DIR, segment), os.O_RDWR)
    try:
        if os.fstat(fd).st_size < size:
            raise ValueError(f"segment {segment!r} is smaller than {size} bytes")
        buffer = mmap.mmap(fd, size)
    finally:
        os.close(fd)
    if buffer[:len(shm_layout.MAGIC)] != shm_layout.MAGIC or \
            int.from_bytes(buffer[8:12], "little") != shm_layout.LAYOUT_VERSION:
        buffer.close()
        raise ValueError(f"segment {segment!r} is not a layout-{shm_layout.LAYOUT_VERSION} slot")
    return buffer


class SharedMemoryPath:
    """A client's use of the plane: opens its slot when first needed, grows it, and gives it up when it breaks.

    Args:
      channel: the client's gRPC channel (OpenSlot goes over it).
      policy: the policy name.
      mode: "auto" (use a slot where the server offers one this host can map),
        "shm" (the same, but a request that could take a slot and cannot is an
        error), or "grpc" (never).
      timeout: the seconds OpenSlot may take.
    """

    RETRY = 2.0  # seconds before asking again for a slot after none could be had

    def __init__(self, channel: grpc.Channel, policy: str, mode: str, timeout: float):
        if mode not in MODES:
            raise ValueError(f"data_plane must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self._channel = channel
        self._policy = policy
        self._timeout = timeout
        self._slot: Slot | None = None
        self._retry_at = 0.0
        self._disabled = mode == "grpc"
        self._lock = threading.Lock()
        self.fallbacks: collections.Counter[str] = collections.Counter()

    @property
    def active(self) -> bool:
        """Whether requests now go through a shared-memory slot."""
        return self._slot is not None and not self._slot.closed

    def slot(self, rows: int) -> Slot | None:
        """The slot for a request of `rows` rows, opening or growing it; None: take gRPC."""
        if self._disabled:
            return None
        slot = self._slot
        if slot is not None and not slot.closed and rows <= slot.layout.max_rows:
            return slot
        with self._lock:
            slot = self._slot
            if slot is not None and not slot.closed and rows <= slot.layout.max_rows:
                return slot
            if time.monotonic() < self._retry_at and (slot is None or slot.closed):
                return None
            want = 1 << max(0, rows - 1).bit_length() if rows > 1 else 1
            if slot is not None and not slot.closed:  # too small: a larger one replaces it
                want = max(want, slot.layout.max_rows * 2)
            try:
                fresh = Slot.open(self._channel, self._policy, want, self._timeout)
            except NoSlot as e:
                logger.debug("no shared-memory slot: %s", e)
                self._retry_at = time.monotonic() + (0.05 if e.transient else self.RETRY)
                return None if e.transient else self._none(str(e))
            self._slot = fresh
            if slot is not None:
                slot.retire()  # a call in flight on it (a thread sharing this client) still gets its answer
            return fresh if rows <= fresh.layout.max_rows else None

    def fell_back(self, reason: str) -> str | None:
        """Counts a call that takes gRPC though this plane is on (with data_plane="shm", logs each reason once).

        Returns the reason when the plane is forced ("shm"), for the request
        to carry it (ActionRequest.slot_fallback: the server counts it), else None.
        """
        if self.mode == "grpc":
            return None
        self.fallbacks[reason] += 1
        if self.mode != "shm":
            return None
        if self.fallbacks[reason] == 1:  # a first call before the plans is expected: INFO, the others WARNING
            logger.log(logging.INFO if reason == "no_plan_yet" else logging.WARNING,
                       "data_plane='shm': a call went over gRPC (%s); client.shm_fallbacks counts them", reason)
        return reason

    def call(self, leaves: Sequence[np.ndarray], rows: int, seed: int | None, deadline: float,
             min_version: int = 0) -> tuple[int, list[np.ndarray]] | str | None:
        """(version, answer leaves) of a conforming request through the slot; else it takes gRPC (counted),
        and this is None or the reason to send with it (see fell_back).

        A full queue's refusal goes again after its retry hint while the deadline allows.

        Raises:
          DeadlineExceededError: no answer by the deadline.
          RemoteError: the server's error for the request.
        """
        slot = self.slot(rows)
        if slot is None:
            return self.fell_back("no_slot")
        while True:
            try:
                code, version, out = slot.call(leaves, rows, seed, deadline)
            except SlotBusy:
                return self.fell_back("slot_busy")
            except SlotBroken:  # the server stopped or restarted: gRPC sends it again, and waits for it
                self.lost(slot)
                return self.fell_back("slot_broken")
            except TimeoutError:
                raise errors.DeadlineExceededError("no answer by the deadline (shared memory)") from None
            if code == 0:
                return (version, out) if version >= min_version else self.fell_back("older_than_min_version")
            if code == _UNAVAILABLE:  # not accepted (the server is stopping): over gRPC, within the deadline
                return self.fell_back("server_stopping")
            if code == _ABORTED:  # the policy's answers do not fit a slot: gRPC from now on
                self.disable()
                return self.fell_back("answers_too_large")
            error = status.from_status(out)
            if not wait_to_retry(error, deadline):  # a full queue's refusal goes again after its hint
                raise error

    def _none(self, why: str) -> None:
        if self.mode == "shm":
            raise errors.FailedPreconditionError(f"data_plane='shm': {why} (it needs a server on this host "
                                                 "that offers shared memory)")
        return None

    def disable(self) -> None:
        """From now on every request takes gRPC (the policy's answers do not fit a slot)."""
        self._disabled = True
        self.close()

    def lost(self, slot: Slot) -> None:
        """The slot broke (the server stopped or restarted): ask again for one after RETRY."""
        slot.close()
        self._retry_at = time.monotonic() + (0.0 if self.mode == "shm" else self.RETRY)

    def close(self) -> None:
        with self._lock:
            if self._slot is not None:
                self._slot.close()
                self._slot = None


MODES = ("auto", "shm", "grpc")
_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]
_ABORTED = grpc.StatusCode.ABORTED.value[0]
