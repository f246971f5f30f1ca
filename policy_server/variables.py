"""Reassembles a pushed set of variables from its slices, checking it whole."""

from __future__ import annotations

import numpy as np

from policy_client import codec
from policy_client.errors import CodecError
from policy_client.generated import policy_service_pb2 as service_pb
from policy_client.publisher import normalize_variable_name
from policy_server import errors
from policy_server.backend import VariableSpec


class PushAssembler:
    """Collects VariableSlices into full arrays, refusing anything that does not fit.

    Args:
      specs: the served policy's variables.
      num_variables: how many variables the push announced.

    Raises:
      ServingError: INVALID_ARGUMENT naming the variable and the problem.
    """

    def __init__(self, specs: list[VariableSpec], num_variables: int):
        if num_variables != len(specs):
            raise errors.invalid_argument(
                f"num_variables: the policy has {len(specs)} variables, the push announces {num_variables}")
        self._specs = specs
        self._buffers: dict[int, bytearray] = {}
        self._received = [0] * len(specs)
        self.num_bytes = 0

    def add(self, piece: service_pb.VariableSlice) -> None:
        """Copies one slice into its variable's buffer."""
        if piece.index >= len(self._specs):
            raise errors.invalid_argument(f"slices.index {piece.index}: the policy has {len(self._specs)} variables")
        spec = self._specs[piece.index]
        where = f"variable {piece.index} ({piece.name!r})"
        if piece.name and normalize_variable_name(piece.name) != normalize_variable_name(spec.name):
            raise errors.invalid_argument(f"{where}: expected the variable named {spec.name!r}")
        try:
            dtype = codec.dtype_from_proto(piece.dtype)
        except CodecError as e:
            raise errors.invalid_argument(f"{where}: {e}") from None
        if dtype != spec.dtype or tuple(piece.shape) != spec.shape:
            raise errors.invalid_argument(
                f"{where}: expected shape {spec.shape} and dtype {spec.dtype}, got shape "
                f"{tuple(piece.shape)} and dtype {dtype}")
        size = int(np.prod(spec.shape, dtype=np.int64)) * spec.dtype.itemsize
        end = piece.offset + len(piece.content)
        if end > size:
            raise errors.invalid_argument(f"{where}: bytes {piece.offset}..{end} exceed its size of {size}")
        buffer = self._buffers.setdefault(piece.index, bytearray(size))
        buffer[piece.offset:end] = piece.content
        self._received[piece.index] += len(piece.content)
        self.num_bytes += len(piece.content)

    def values(self) -> list[np.ndarray]:
        """The assembled arrays, once every byte of every variable has arrived."""
        arrays = []
        for index, spec in enumerate(self._specs):
            size = int(np.prod(spec.shape, dtype=np.int64)) * spec.dtype.itemsize
            if self._received[index] != size:
                raise errors.invalid_argument(
                    f"variable {index} ({spec.name!r}): received {self._received[index]} of {size} bytes")
            buffer = self._buffers.get(index, bytearray(0))
            arrays.append(np.frombuffer(bytes(buffer), dtype=spec.dtype.newbyteorder("<")).reshape(spec.shape))
        return arrays


def check_values(specs: list[VariableSpec], values: list[np.ndarray]) -> None:
    """Raises INVALID_ARGUMENT unless `values` match the variables in count, shape and dtype."""
    if len(values) != len(specs):
        raise errors.invalid_argument(f"expected {len(specs)} variables, got {len(values)}")
    for index, (spec, value) in enumerate(zip(specs, values)):
        if value.shape != spec.shape or value.dtype != spec.dtype:
            raise errors.invalid_argument(
                f"variable {index} ({spec.name!r}): expected shape {spec.shape} and dtype {spec.dtype}, "
                f"got shape {value.shape} and dtype {value.dtype}")
