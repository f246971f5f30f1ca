"""The layout of a shared-memory slot (protos/tfa_policy_grpc/v1/shared_memory.proto), shared by both ends.

A slot is one mapped segment: a fixed header (magic, layout version, the
token that proves a client shares the server's host, the request and answer
headers), then every request leaf and every answer leaf at a fixed offset,
room for `max_rows` rows each, then room for one serialized google.rpc.Status.
The server lays it out once per slot from the policy's specs and sends the
offsets in OpenSlotResponse; a client only follows them.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from typing import Any, Sequence

import numpy as np
import tree

from policy_client.wire import tensors
from policy_client.wire.generated import shared_memory_pb2 as shm_pb
from policy_client.wire.generated import types_pb2 as pb

MAGIC = b"TFAPGSHM"
LAYOUT_VERSION = 1
TOKEN_OFFSET, TOKEN_BYTES = 16, 16
# sequence, rows, has_seed, reserved, seed
REQUEST_HEADER = struct.Struct("<QqIIq")
REQUEST_OFFSET = 64
# sequence, code (google.rpc.Code), error_bytes, version
ANSWER_HEADER = struct.Struct("<QiIq")
ANSWER_OFFSET = 128
DATA_OFFSET = 256
ALIGN = 64
ERROR_BYTES = 16 << 10
DOORBELL = struct.Struct("<Q")
# The largest segment a slot may take (rows are cut to fit).
MAX_SEGMENT_BYTES = 64 << 20


@dataclasses.dataclass(frozen=True)
class SlotTensor:
    path: str
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int

    @property
    def row_bytes(self) -> int:
        return self.dtype.itemsize * math.prod(self.shape)


@dataclasses.dataclass(frozen=True)
class SlotLayout:
    """Where everything lives in one slot's segment.

    Attributes:
      max_rows: rows each tensor has room for (at least 1).
      request: the request leaves (tf.nest order of (time_step, policy_state)).
      answer: the answer leaves (tf.nest order of the PolicyStep).
      error_offset, error_bytes: the room for a failed request's Status.
      size: the segment's size in bytes.
    """

    max_rows: int
    request: tuple[SlotTensor, ...]
    answer: tuple[SlotTensor, ...]
    error_offset: int
    error_bytes: int
    size: int

    @classmethod
    def plan(cls, request_specs: Any, answer_specs: Any, max_rows: int,
             max_bytes: int = MAX_SEGMENT_BYTES) -> "SlotLayout | None":
        """The layout of these spec nests for up to `max_rows` rows, cut so that the segment fits
        MAX_SEGMENT_BYTES and the request and the answer each fit `max_bytes` (the server's message
        limit: what gRPC refuses, a slot does not take either); None when a leaf is a string (no fixed
        width) or no row fits."""
        request = _leaves(request_specs, ("time_step", "policy_state"))
        answer = _leaves(answer_specs)
        if request is None or answer is None:
            return None
        row = sum(_align(dtype.itemsize * math.prod(shape)) for _, dtype, shape in (*request, *answer))
        room = MAX_SEGMENT_BYTES - DATA_OFFSET - ERROR_BYTES - ALIGN * (len(request) + len(answer))
        rows = max(1, max_rows)
        if row:
            rows = min(rows, room // row)
        for group in (request, answer):
            group_row = sum(dtype.itemsize * math.prod(shape) for _, dtype, shape in group)
            if group_row:
                rows = min(rows, max_bytes // group_row)
        if rows < 1:
            return None
        offset = DATA_OFFSET
        placed = []
        for group in (request, answer):
            out = []
            for path, dtype, shape in group:
                out.append(SlotTensor(path, dtype, shape, offset))
                offset += _align(rows * dtype.itemsize * math.prod(shape))
            placed.append(tuple(out))
        return cls(rows, placed[0], placed[1], offset, ERROR_BYTES, offset + ERROR_BYTES)

    def to_proto(self, response: shm_pb.OpenSlotResponse) -> None:
        response.max_rows = self.max_rows
        response.segment_bytes = self.size
        response.error_offset, response.error_bytes = self.error_offset, self.error_bytes
        for tensor, field in [(t, response.request_tensors) for t in self.request] + \
                             [(t, response.answer_tensors) for t in self.answer]:
            field.add(path=tensor.path, dtype=tensors.dtype_to_proto(tensor.dtype)[0], shape=tensor.shape,
                      offset=tensor.offset)

    @classmethod
    def from_proto(cls, response: shm_pb.OpenSlotResponse) -> "SlotLayout":
        """The layout a server sent (checked to lie inside the segment).

        Raises:
          ValueError: an offset, dtype or size that does not add up.
        """
        def tensor(t: shm_pb.SlotTensor) -> SlotTensor:
            if t.dtype == pb.DTYPE_STRING:
                raise ValueError(f"slot tensor {t.path!r} is a string")
            return SlotTensor(t.path, tensors.dtype_from_proto(t.dtype), tuple(int(d) for d in t.shape),
                              int(t.offset))

        layout = cls(max(1, response.max_rows), tuple(tensor(t) for t in response.request_tensors),
                     tuple(tensor(t) for t in response.answer_tensors), response.error_offset,
                     response.error_bytes, response.segment_bytes)
        for t in (*layout.request, *layout.answer):
            if t.offset < DATA_OFFSET or t.offset + layout.max_rows * t.row_bytes > layout.size:
                raise ValueError(f"slot tensor {t.path!r} lies outside the {layout.size}-byte segment")
        if layout.error_offset + layout.error_bytes > layout.size:
            raise ValueError("the error area lies outside the segment")
        return layout


def views(buffer: Any, placed: Sequence[SlotTensor], rows: int) -> list[np.ndarray]:
    """Writable arrays of shape (rows, *shape) over each tensor's place in `buffer` (an mmap)."""
    return [np.ndarray((rows, *t.shape), t.dtype, buffer, t.offset) for t in placed]


def _leaves(specs: Any, names: Sequence[str] = ()) -> list[tuple[str, np.dtype, tuple[int, ...]]] | None:
    """(path, dtype, shape) of every leaf; `names` name the top-level positions of a tuple."""
    out = []
    for path, spec in tree.flatten_with_path(specs):
        dtype = np.dtype(spec.dtype)
        if dtype.kind in "OSU":
            return None
        parts = [names[path[0]] if names and path else path[0], *path[1:]] if path else []
        out.append(("/".join(str(p) for p in parts), dtype, tuple(int(d) for d in spec.shape)))
    return out


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN
