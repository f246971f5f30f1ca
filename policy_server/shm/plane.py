"""The same-host data plane: action requests and answers through shared-memory slots.

An actor on the server's host asks for a slot over gRPC (OpenSlot); the
server creates an owner-only POSIX shared-memory segment laid out from the
policy's specs (policy_client.wire.shm_layout) and a token inside it. The
actor maps the segment, connects to the plane's Unix socket and sends the
token back: that proves it shares the host (and the user). From then on each
request is written in place and rung with 8 bytes on the socket; the server
reads the slot's leaves without decoding anything, queues them with the same
scheduler as gRPC requests (so they batch with everyone), writes the answer's
leaves in place and rings back. The protocol is in
protos/tfa_policy_grpc/v1/shared_memory.proto.

Everything runs on the server's event loop (add_reader on each socket): no
thread per actor. A socket that closes (the actor ended or was killed) frees
its slot; a segment is unlinked as soon as its actor attached (or after
ATTACH_WAIT), and segments or socket directories of dead servers are removed
at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import mmap
import os
import secrets
import shutil
import socket
import tempfile
import time
from typing import Any, Callable

import grpc
import numpy as np

from policy_client.wire import DEFAULT_MAX_MESSAGE_BYTES, errors, status
from policy_client.wire import shm_layout as layout_mod
from policy_client.wire.generated import shared_memory_pb2 as shm_pb
from policy_client.wire.generated import shared_memory_pb2_grpc as shm_grpc
from policy_client.wire.shm_layout import SlotLayout
from policy_server.engine.batching import Request
from policy_server.admission import Admission, Call
from policy_server.registry import HostedPolicy, Registry
from policy_server.shm import segments

logger = logging.getLogger(__name__)

# Slots a server hands out at most (each is one socket and one segment).
MAX_SLOTS = 1024
# Rows one slot holds at most.
MAX_SLOT_ROWS = 4096
# Seconds a created slot waits for its actor to attach.
ATTACH_WAIT = 30.0
_ABORTED = grpc.StatusCode.ABORTED.value[0]


def available() -> bool:
    """Whether this host has POSIX shared memory the plane can use."""
    return segments.available() and hasattr(socket, "AF_UNIX")


@dataclasses.dataclass(eq=False)
class _Slot:
    hosted: HostedPolicy
    layout: SlotLayout
    name: str
    token: bytes
    buffer: mmap.mmap
    request_views: list[np.ndarray]
    answer_views: list[np.ndarray]
    sock: socket.socket | None = None
    busy: bool = False
    started: float = 0.0
    closed: bool = False
    expiry: asyncio.TimerHandle | None = None
    hello: bytes = b""


class _SlotCall(Call):
    """A request rung on a slot, at admission: its leaves are read in place (no decoding)."""

    def __init__(self, slot: _Slot, rows: int, seed: int | None):
        self.slot, self.rows = slot, rows
        self.policy = slot.hosted.name
        self.seed = seed
        self.source = ("shm", slot.name)  # batches are shared fairly between slots

    def read(self, hosted: HostedPolicy) -> Request:
        rows, views = self.rows, self.slot.request_views
        if rows < 0 or rows > self.slot.layout.max_rows:
            raise errors.InvalidArgumentError.at("rows", f"{rows} rows do not fit the slot's "
                                                         f"{self.slot.layout.max_rows}")
        return Request([v[:rows] if rows else v[0] for v in views], rows, hosted.request_plan.unflatten, self.seed,
                       raw=True)


class SharedMemoryPlane(shm_grpc.SharedMemoryServiceServicer):
    """The slots of one server, and the SharedMemoryService that opens them.

    Args:
      registry: the server's policies.
      admission: where the slots' requests are admitted (the server's one seam).
      max_slots: slots open at once at most (more: FAILED_PRECONDITION, the client stays on gRPC).
      on_request: called with (policy name, google.rpc code, seconds) for each answered request (metrics).
      max_message_bytes: the server's message limit: no slot holds a larger request or answer.
    """

    def __init__(self, registry: Registry, admission: Admission, max_slots: int = MAX_SLOTS,
                 on_request: Callable[[str, int, float], None] | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        self.registry = registry
        self.admission = admission
        self.max_message_bytes = max_message_bytes
        self.max_slots = max_slots
        self._on_request = on_request
        self._slots: dict[bytes, _Slot] = {}  # token -> slot
        self._directory: str | None = None
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    @property
    def socket_path(self) -> str | None:
        return os.path.join(self._directory, "slots.sock") if self._directory else None

    @property
    def open_slots(self) -> int:
        """Slots with an actor attached."""
        return sum(1 for s in self._slots.values() if s.sock is not None)

    def start(self) -> None:
        """Removes what dead servers left behind, then listens on a Unix socket in an owner-only directory."""
        self._loop = asyncio.get_running_loop()
        segments.remove_leftovers()
        self._directory = tempfile.mkdtemp(prefix=f"{segments.DIR_PREFIX}{os.getpid()}-")  # mode 0700
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.socket_path)
        listener.listen(128)
        listener.setblocking(False)
        self._listener = listener
        self._loop.add_reader(listener.fileno(), self._accept)
        logger.debug("shared-memory data plane on %s", self.socket_path)

    def stop_accepting(self) -> None:
        """No new slots; requests on open ones are answered UNAVAILABLE from now on (clients resend over gRPC)."""
        self._closing = True

    def close(self) -> None:
        """Frees every slot and removes the socket directory (after the schedulers answered everything)."""
        self._closing = True
        if self._listener is not None:
            self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        for slot in list(self._slots.values()):
            self._free(slot)
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    # ------------------------------------------------------------ control (gRPC)

    async def OpenSlot(self, request, context):  # noqa: N802 (gRPC method name)
        try:
            return await self._open(request, context)
        except errors.RemoteError as e:
            status.end(context, e)
            return None

    async def _open(self, request: shm_pb.OpenSlotRequest, context: Any) -> shm_pb.OpenSlotResponse:
        if self._closing or self._listener is None:
            raise errors.UnavailableError("the server is shutting down")
        hosted = await self.registry.wait(request.policy, context.time_remaining())
        if len(self._slots) >= self.max_slots:
            raise errors.FailedPreconditionError(f"all {self.max_slots} shared-memory slots are taken")
        specs = hosted.backend.specs
        layout = SlotLayout.plan((specs.time_step_spec, specs.policy_state_spec),
                                 hosted.answer_plan.structure, min(request.max_rows or 1, MAX_SLOT_ROWS),
                                 self.max_message_bytes)
        if layout is None:
            raise errors.FailedPreconditionError(f"policy {hosted.name!r} has string specs: no fixed-width slot")
        slot = self._create(hosted, layout)
        response = shm_pb.OpenSlotResponse(segment=slot.name, socket_path=self.socket_path, policy=hosted.name)
        layout.to_proto(response)
        return response

    def _create(self, hosted: HostedPolicy, layout: SlotLayout) -> _Slot:
        try:
            name, buffer = segments.create(layout.size)
        except OSError as e:
            raise errors.ResourceExhaustedError(f"cannot create a {layout.size}-byte segment: {e}") from None
        token = secrets.token_bytes(layout_mod.TOKEN_BYTES)
        buffer[:len(layout_mod.MAGIC)] = layout_mod.MAGIC
        buffer[8:12] = layout_mod.LAYOUT_VERSION.to_bytes(4, "little")
        buffer[layout_mod.TOKEN_OFFSET:layout_mod.TOKEN_OFFSET + layout_mod.TOKEN_BYTES] = token
        slot = _Slot(hosted, layout, name, token, buffer,
                     layout_mod.views(buffer, layout.request, layout.max_rows),
                     layout_mod.views(buffer, layout.answer, layout.max_rows))
        slot.expiry = self._loop.call_later(ATTACH_WAIT, self._expire, slot)
        self._slots[token] = slot
        return slot

    def _expire(self, slot: _Slot) -> None:
        if slot.sock is None:
            self._free(slot)

    # ------------------------------------------------------------ the socket

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        conn.setblocking(False)
        state = {"hello": b""}
        self._loop.add_reader(conn.fileno(), self._read_hello, conn, state)
        self._loop.call_later(ATTACH_WAIT, self._hello_timeout, conn, state)

    def _hello_timeout(self, conn: socket.socket, state: dict) -> None:
        if not state.get("done"):
            self._drop_conn(conn)

    def _read_hello(self, conn: socket.socket, state: dict) -> None:
        try:
            data = conn.recv(layout_mod.TOKEN_BYTES - len(state["hello"]))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            state["done"] = True
            self._drop_conn(conn)
            return
        state["hello"] += data
        if len(state["hello"]) < layout_mod.TOKEN_BYTES:
            return
        state["done"] = True
        self._loop.remove_reader(conn.fileno())
        slot = self._slots.get(state["hello"])
        if slot is None or slot.sock is not None or self._closing:
            with contextlib.suppress(OSError):
                conn.send(b"\x00")
            conn.close()
            return
        slot.sock = conn
        slot.hosted.shared_memory_slots += 1
        if slot.expiry is not None:
            slot.expiry.cancel()
        segments.unlink(slot.name)  # the mappings keep the memory alive
        conn.send(b"\x01")
        self._loop.add_reader(conn.fileno(), self._ring, slot)
        logger.debug("shared-memory slot attached for %r (%d rows)", slot.hosted.name, slot.layout.max_rows)

    def _drop_conn(self, conn: socket.socket) -> None:
        with contextlib.suppress(Exception):
            self._loop.remove_reader(conn.fileno())
        conn.close()

    def _ring(self, slot: _Slot) -> None:
        """A doorbell (or the end of the socket) on an attached slot."""
        try:
            data = slot.sock.recv(64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if len(data) != layout_mod.DOORBELL.size or slot.busy:
            if data:
                logger.warning("shared-memory slot of %r broke the protocol (%d doorbell bytes%s); freed",
                               slot.hosted.name, len(data), " while busy" if slot.busy else "")
            self._free(slot)
            return
        self._request(slot)

    def _request(self, slot: _Slot) -> None:
        sequence, rows, has_seed, _, seed = layout_mod.REQUEST_HEADER.unpack_from(slot.buffer,
                                                                                  layout_mod.REQUEST_OFFSET)
        slot.busy, slot.started = True, time.perf_counter()
        if self._closing:
            self._answer_error(slot, sequence, errors.UnavailableError("the server is shutting down"))
            return
        future = self.admission.submit(_SlotCall(slot, rows, seed if has_seed else None))
        future.add_done_callback(lambda f: self._answer(slot, sequence, rows, f))

    def _answer(self, slot: _Slot, sequence: int, rows: int, future: asyncio.Future) -> None:
        if slot.closed:
            if not future.cancelled():
                future.exception()  # retrieved: nobody waits for it
            return
        if future.cancelled():
            self._answer_error(slot, sequence, errors.UnavailableError("the request was cancelled"))
            return
        error = future.exception()
        if error is not None:
            self._answer_error(slot, sequence, error)
            return
        leaves, version = future.result()
        if not _write_answer(slot, leaves, rows):
            self._answer_error(slot, sequence, errors.RemoteError(
                "the policy's answer does not fit the slot (its dtypes or shapes are not the specs'): "
                "send this policy's requests over gRPC", grpc.StatusCode.ABORTED), code=_ABORTED)
            return
        layout_mod.ANSWER_HEADER.pack_into(slot.buffer, layout_mod.ANSWER_OFFSET, sequence, 0, 0, version)
        self._ring_back(slot, sequence, 0)

    def _answer_error(self, slot: _Slot, sequence: int, error: BaseException, code: int | None = None) -> None:
        if not isinstance(error, errors.RemoteError):
            logger.exception("unexpected error answering a shared-memory request", exc_info=error)
        proto = status.to_status(error, status.MAX_STREAM_MESSAGE_CHARS)
        if code is not None:
            proto.code = code
        data = proto.SerializeToString()
        if len(data) > slot.layout.error_bytes:
            data = type(proto)(code=proto.code, message=proto.message[:1000]).SerializeToString()
        start = slot.layout.error_offset
        slot.buffer[start:start + len(data)] = data
        layout_mod.ANSWER_HEADER.pack_into(slot.buffer, layout_mod.ANSWER_OFFSET, sequence, proto.code, len(data), 0)
        self._ring_back(slot, sequence, proto.code)

    def _ring_back(self, slot: _Slot, sequence: int, code: int) -> None:
        slot.busy = False
        if self._on_request is not None:
            self._on_request(slot.hosted.name, code, time.perf_counter() - slot.started)
        try:
            slot.sock.send(layout_mod.DOORBELL.pack(sequence))
        except OSError:
            self._free(slot)

    def _free(self, slot: _Slot) -> None:
        if slot.closed:
            return
        slot.closed = True
        self._slots.pop(slot.token, None)
        if slot.expiry is not None:
            slot.expiry.cancel()
        if slot.sock is not None:
            slot.hosted.shared_memory_slots -= 1
            self._drop_conn(slot.sock)
        else:
            segments.unlink(slot.name)
        # Never mmap.close(): numpy views do not pin the mapping (close() would unmap memory a batch
        # still reads). The views hold the mmap object; the last one gone, the garbage collector unmaps it.
        slot.request_views = slot.answer_views = []


def _write_answer(slot: _Slot, leaves: Any, rows: int) -> bool:
    """Copies an answer's leaves into the slot; False when they are not the specs' dtypes and shapes."""
    views = slot.answer_views
    if not isinstance(leaves, list) or len(leaves) != len(views):
        return False
    for view, leaf in zip(views, leaves):
        target = view[:rows] if rows else view[0]
        if not isinstance(leaf, (np.ndarray, np.generic)) or leaf.dtype != view.dtype or \
                np.shape(leaf) != np.shape(target):
            return False
    for view, leaf in zip(views, leaves):
        if rows:
            view[:rows] = leaf
        else:
            view[0] = leaf
    return True
