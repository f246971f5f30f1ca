"""Policy variables on the wire: how a push is cut into slices, and how names match.

A push is a stream of `VariableSlice`s: byte ranges of each variable's
little-endian, row-major value. Names are compared ignoring what differs
between processes (Keras' per-process layer numbering and the ":0" suffix).
"""

from __future__ import annotations

import re
from typing import Iterator, Sequence

import numpy as np

from policy_client.wire import tensors
from policy_client.wire.generated import policy_service_pb2 as service_pb

DEFAULT_CHUNK_BYTES = 1 << 20
_KERAS_NUMBER = re.compile(r"_\d+$")


def normalize_variable_name(name: str) -> str:
    """Drops what differs between processes: Keras numbering ("dense_3") and ":0"."""
    name = name.split(":")[0]
    return "/".join(_KERAS_NUMBER.sub("", part) for part in name.split("/"))


def variable_slices(values: Sequence[np.ndarray], names: Sequence[str],
                    chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[list[service_pb.VariableSlice]]:
    """Yields lists of VariableSlice holding at most about `chunk_bytes` bytes each.

    Every variable is covered exactly once, in order; an empty variable is one
    empty slice.
    """
    batch: list[service_pb.VariableSlice] = []
    size = 0
    for index, (value, name) in enumerate(zip(values, names)):
        tensor = tensors.array_to_proto(value)
        content = tensor.content
        for offset in range(0, max(len(content), 1), chunk_bytes):
            piece = content[offset:offset + chunk_bytes]
            batch.append(service_pb.VariableSlice(index=index, name=name, dtype=tensor.dtype,
                                                  shape=tensor.shape, offset=offset, content=piece))
            size += len(piece) + 64
            if size >= chunk_bytes:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch
