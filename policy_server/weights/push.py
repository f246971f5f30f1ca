"""Reassembles a pushed set of variables from its slices, checking it whole."""

from __future__ import annotations

import bisect
from typing import Sequence

import numpy as np

from policy_client.wire import errors, tensors
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.variables import normalize_variable_name
from policy_server.backends.base import VariableSpec


def _nbytes(spec: VariableSpec) -> int:
    return int(np.prod(spec.shape, dtype=np.int64)) * spec.dtype.itemsize


class _Coverage:
    """The byte ranges of one variable received so far: sorted, disjoint [start, end) pairs."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, start: int, end: int) -> tuple[int, int] | None:
        """Adds [start, end); returns the range it overlaps instead, if any."""
        i = bisect.bisect_right(self.starts, start)
        if i and self.ends[i - 1] > start:
            return self.starts[i - 1], self.ends[i - 1]
        if i < len(self.starts) and self.starts[i] < end:
            return self.starts[i], self.ends[i]
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        return None

    def first_gap(self, size: int) -> tuple[int, int] | None:
        """The first byte range of [0, size) not received, or None when all is there."""
        position = 0
        for start, end in zip(self.starts, self.ends):
            if start > position:
                return position, start
            position = end
        return (position, size) if position < size else None


class PushAssembler:
    """Collects VariableSlices into full arrays, refusing anything that does not fit.

    Every slice is checked before it is copied: index, name, dtype, full shape
    and byte range. Slices may come in any order but must not overlap, and
    together they must cover every byte of every variable.

    Args:
      specs: the served policy's variables.
      num_variables: how many variables the push announced.

    Raises:
      InvalidArgumentError: naming the variable and the problem.
    """

    def __init__(self, specs: Sequence[VariableSpec], num_variables: int):
        if num_variables != len(specs):
            raise errors.InvalidArgumentError.at(
                "num_variables", f"the policy has {len(specs)} variables, the push announces {num_variables}")
        self._specs = list(specs)
        self._buffers: dict[int, bytearray] = {}
        self._coverage = [_Coverage() for _ in specs]
        self.num_bytes = 0

    def add(self, piece: service_pb.VariableSlice) -> None:
        """Checks one slice and copies it into its variable's buffer."""
        if piece.index >= len(self._specs):
            why = f"the policy has {len(self._specs)} variables"
            raise errors.InvalidArgumentError.at("slices.index", why, details=f"slices.index {piece.index}: {why}")
        spec = self._specs[piece.index]
        where = f"variable {piece.index} ({piece.name!r})"
        if piece.name and normalize_variable_name(piece.name) != normalize_variable_name(spec.name):
            raise errors.InvalidArgumentError.at("slices.name", f"{where}: expected the variable named {spec.name!r}")
        try:
            dtype = tensors.dtype_from_proto(piece.dtype)
        except errors.CodecError as e:
            raise errors.InvalidArgumentError.at("slices.dtype", f"{where}: {e}") from None
        if dtype != spec.dtype or tuple(piece.shape) != spec.shape:
            raise errors.InvalidArgumentError.at(
                "slices.shape", f"{where}: expected shape {spec.shape} and dtype {spec.dtype}, got shape "
                                f"{tuple(piece.shape)} and dtype {dtype}")
        size = _nbytes(spec)
        start, end = piece.offset, piece.offset + len(piece.content)
        if end > size:
            raise errors.InvalidArgumentError.at("slices.offset",
                                                 f"{where}: bytes {start}..{end} exceed its size of {size}")
        if end > start:
            overlap = self._coverage[piece.index].add(start, end)
            if overlap is not None:
                raise errors.InvalidArgumentError.at(
                    "slices.offset", f"{where}: bytes {start}..{end} overlap bytes {overlap[0]}..{overlap[1]} "
                                     "already received")
        buffer = self._buffers.setdefault(piece.index, bytearray(size))
        buffer[start:end] = piece.content
        self.num_bytes += end - start

    def values(self) -> list[np.ndarray]:
        """The assembled arrays, once every byte of every variable has arrived.

        Raises:
          InvalidArgumentError: naming the first variable with missing bytes.
        """
        arrays = []
        for index, spec in enumerate(self._specs):
            size = _nbytes(spec)
            gap = self._coverage[index].first_gap(size)
            if gap is not None:
                raise errors.InvalidArgumentError.at(
                    "slices", f"variable {index} ({spec.name!r}): bytes {gap[0]}..{gap[1]} of {size} were never "
                              "received")
            buffer = self._buffers.get(index, bytearray(0))
            arrays.append(np.frombuffer(bytes(buffer), dtype=spec.dtype.newbyteorder("<")).reshape(spec.shape))
        return arrays


def check_values(specs: Sequence[VariableSpec], values: Sequence[np.ndarray]) -> None:
    """Raises InvalidArgumentError unless `values` match the variables in count, shape and dtype."""
    if len(values) != len(specs):
        raise errors.InvalidArgumentError.at("variables", f"expected {len(specs)} variables, got {len(values)}")
    for index, (spec, value) in enumerate(zip(specs, values)):
        if value.shape != spec.shape or value.dtype != spec.dtype:
            raise errors.InvalidArgumentError.at(
                f"variables[{index}]", f"variable {index} ({spec.name!r}): expected shape {spec.shape} and dtype "
                                       f"{spec.dtype}, got shape {value.shape} and dtype {value.dtype}")
