"""Open Inference Protocol tensors: datatypes, and numpy arrays <-> raw or typed contents.

OIP names its datatypes as strings (BOOL, UINT8..UINT64, INT8..INT64, FP16,
BF16, FP32, FP64, BYTES). A tensor's data travels either as raw bytes
(`raw_input_contents` / `raw_output_contents`: little-endian, row-major;
BYTES elements each prefixed with their length as a 4-byte little-endian
integer) or in the typed repeated field of `InferTensorContents` that its
datatype uses (FP16 and BF16 have none: raw only). Reading checks that the
contents hold exactly the elements the shape asks for; errors raise
`ValueError` with a message the caller prefixes with the tensor's name.
"""

from __future__ import annotations

import math
import struct
from typing import Any, Sequence

import numpy as np

try:  # bfloat16 has no numpy dtype of its own; TensorFlow uses ml_dtypes'.
    import ml_dtypes

    _BF16: np.dtype | None = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes comes with TensorFlow.
    _BF16 = None

BYTES = "BYTES"
_NUMERIC = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
if _BF16 is not None:
    _NUMERIC["BF16"] = _BF16
_DATATYPE_OF = {dtype: name for name, dtype in _NUMERIC.items()}
# The InferTensorContents field each datatype's typed contents use.
CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", BYTES: "bytes_contents",
}
_LENGTH = struct.Struct("<I")
MAX_RANK = 32


def datatype_of(dtype: Any) -> str:
    """The OIP datatype of a numpy dtype (strings and objects are BYTES).

    Raises:
      ValueError: a dtype OIP cannot carry (complex, datetime, ...).
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "OSU":
        return BYTES
    name = _DATATYPE_OF.get(dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype)
    if name is None:
        raise ValueError(f"dtype {dtype} has no Open Inference Protocol datatype")
    return name


def numpy_dtype(datatype: str) -> np.dtype:
    """The numpy dtype an OIP datatype reads into (BYTES: object).

    Raises:
      ValueError: not an OIP datatype.
    """
    if datatype == BYTES:
        return np.dtype(object)
    if datatype not in _NUMERIC:
        raise ValueError(f"{datatype!r} is not an Open Inference Protocol datatype")
    return _NUMERIC[datatype]


def read_tensor(datatype: str, shape: Sequence[int], raw: bytes | None, contents: Any,
                dtype: np.dtype) -> np.ndarray:
    """The array a request's tensor holds, of `dtype` and `shape`.

    Args:
      datatype: the tensor's OIP datatype (already checked against `dtype`).
      shape: its shape (non-negative dimensions).
      raw: its raw contents, or None to read the typed `contents`.
      contents: its InferTensorContents (typed contents).
      dtype: the numpy dtype to read into (BYTES: an object array of bytes,
        or the spec's string dtype).

    Raises:
      ValueError: the contents do not hold the shape's elements.
    """
    shape = tuple(int(d) for d in shape)
    count = math.prod(shape)
    if datatype == BYTES:
        values = _split_bytes(raw, count) if raw is not None else list(contents.bytes_contents)
        if len(values) != count:
            raise ValueError(f"bytes_contents hold {len(values)} elements, shape {list(shape)} needs {count}")
        array = np.empty(count, dtype=object)
        array[:] = values
        return array.reshape(shape) if dtype.kind == "O" else array.reshape(shape).astype(dtype)
    wire = _NUMERIC[datatype]
    if raw is not None:
        if len(raw) != count * wire.itemsize:
            raise ValueError(f"raw contents hold {len(raw)} bytes, shape {list(shape)} of {datatype} needs "
                             f"{count * wire.itemsize}")
        return np.frombuffer(raw, wire).reshape(shape)
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise ValueError(f"{datatype} travels as raw contents only (raw_input_contents)")
    values = getattr(contents, field)
    if len(values) != count:
        raise ValueError(f"{field} hold {len(values)} elements, shape {list(shape)} needs {count}")
    return _typed(values, wire, field).reshape(shape)


def _typed(values: Any, dtype: np.dtype, field: str) -> np.ndarray:
    """Typed contents as an array of `dtype`, refusing values the dtype cannot hold."""
    if field in ("int_contents", "uint_contents") and dtype.itemsize < 4:
        wide = np.asarray(values, np.int64)
        info = np.iinfo(dtype)
        if wide.size and (wide.min() < info.min or wide.max() > info.max):
            raise ValueError(f"{field} hold values outside [{info.min}, {info.max}] of {dtype.name}")
        return wide.astype(dtype)
    return np.asarray(values, dtype)


def _split_bytes(raw: bytes, count: int) -> list[bytes]:
    """The elements of a raw BYTES tensor (each a 4-byte little-endian length, then the bytes)."""
    values, offset, view = [], 0, memoryview(raw)
    while offset < len(raw):
        if offset + 4 > len(raw) or len(values) == count:
            raise ValueError(f"raw BYTES contents do not hold {count} length-prefixed elements exactly")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise ValueError(f"raw BYTES element {len(values)} claims {length} bytes, {len(raw) - offset} remain")
        values.append(bytes(view[offset:offset + length]))
        offset += length
    return values


def raw_bytes(array: np.ndarray, datatype: str) -> bytes:
    """An array's raw contents for `raw_output_contents` (little-endian, row-major)."""
    if datatype == BYTES:
        parts = []
        for element in np.asarray(array, dtype=object).reshape(-1):
            data = element if isinstance(element, bytes) else str(element).encode("utf-8")
            parts += [_LENGTH.pack(len(data)), data]
        return b"".join(parts)
    return np.ascontiguousarray(array, _NUMERIC[datatype]).tobytes()
