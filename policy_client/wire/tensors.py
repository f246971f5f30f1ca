"""Tensors on the wire: numpy dtypes and arrays <-> `Tensor` messages.

Numeric tensors are raw little-endian C-order bytes, decoded with
`np.frombuffer` (a read-only view of the message, no copy); strings are
repeated bytes. Round trips are exact: dtype, shape and bits (NaN, -0.0).
Imports numpy and protobuf only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from google.protobuf import message as _message

from policy_client.wire.errors import CodecError
from policy_client.wire.generated import types_pb2 as pb

try:  # bfloat16 has no numpy dtype of its own; TensorFlow uses ml_dtypes'.
    import ml_dtypes

    _BFLOAT16: np.dtype | None = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes comes with TensorFlow.
    _BFLOAT16 = None

# numpy's own limit on the number of dimensions.
MAX_RANK = 32
# numpy's limit on the byte size of an array (the largest intp).
_MAX_BYTES = np.iinfo(np.intp).max
# Decoded fixed-width ("S"/"U") string tensors are allocated at
# string_itemsize per element whatever the wire size, so their size is capped.
MAX_FIXED_STRING_BYTES = 1 << 30
# ... and beyond FIXED_STRING_SLACK bytes, they may take at most
# MAX_STRING_PADDING times the bytes their elements take in the message: a
# tiny message cannot ask for a huge array (a width far beyond its elements').
FIXED_STRING_SLACK = 1 << 20
MAX_STRING_PADDING = 16

_NUMERIC = {
    pb.DTYPE_BOOL: np.dtype(np.bool_),
    pb.DTYPE_INT8: np.dtype("<i1"), pb.DTYPE_INT16: np.dtype("<i2"),
    pb.DTYPE_INT32: np.dtype("<i4"), pb.DTYPE_INT64: np.dtype("<i8"),
    pb.DTYPE_UINT8: np.dtype("<u1"), pb.DTYPE_UINT16: np.dtype("<u2"),
    pb.DTYPE_UINT32: np.dtype("<u4"), pb.DTYPE_UINT64: np.dtype("<u8"),
    pb.DTYPE_FLOAT16: np.dtype("<f2"), pb.DTYPE_FLOAT32: np.dtype("<f4"),
    pb.DTYPE_FLOAT64: np.dtype("<f8"),
}
if _BFLOAT16 is not None:
    _NUMERIC[pb.DTYPE_BFLOAT16] = _BFLOAT16
_ENUM_OF = {dtype: enum for enum, dtype in _NUMERIC.items()}


def dtype_to_proto(dtype: Any) -> tuple[int, int, int]:
    """Returns (DType enum, StringKind, string_itemsize) for a numpy dtype.

    Raises:
      CodecError: the dtype has no wire form (complex, datetime, structured...).
    """
    try:
        dtype = np.dtype(dtype)
    except (TypeError, ValueError) as e:
        raise CodecError(f"not a dtype: {dtype!r} ({e})") from None
    if dtype.kind == "O":
        return pb.DTYPE_STRING, pb.STRING_KIND_OBJECT, 0
    if dtype.kind == "S":
        return pb.DTYPE_STRING, pb.STRING_KIND_BYTES, dtype.itemsize
    if dtype.kind == "U":
        return pb.DTYPE_STRING, pb.STRING_KIND_UNICODE, dtype.itemsize // 4
    if dtype.kind == "T":  # numpy 2's variable-width StringDType: no fixed layout to send
        raise CodecError(f"dtype {dtype} (numpy's variable-width StringDType) cannot be sent: convert the array "
                         "with .astype(str) (fixed-width unicode), .astype(bytes) or .astype(object)")
    enum = _ENUM_OF.get(dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype)
    if enum is None:
        raise CodecError(f"dtype {dtype} cannot be sent: supported are bool, int8..int64, "
                         "uint8..uint64, float16, bfloat16, float32, float64 and strings")
    return enum, pb.STRING_KIND_OBJECT, 0


def dtype_from_proto(enum: int, string_kind: int = 0, string_itemsize: int = 0) -> np.dtype:
    """Returns the numpy dtype for a DType enum (and string kind / width).

    Raises:
      CodecError: unknown or unset enum values.
    """
    if enum in _NUMERIC:
        return _NUMERIC[enum]
    if enum == pb.DTYPE_STRING:
        if string_kind == pb.STRING_KIND_OBJECT:
            return np.dtype(object)
        if string_kind in (pb.STRING_KIND_BYTES, pb.STRING_KIND_UNICODE):
            return np.dtype(("S" if string_kind == pb.STRING_KIND_BYTES else "U") + str(string_itemsize or ""))
        raise CodecError(f"unknown string_kind {string_kind}")
    if enum == pb.DTYPE_BFLOAT16:
        raise CodecError("bfloat16 needs the ml_dtypes package, which is not installed")
    raise CodecError(f"unknown dtype enum {enum}" if enum else "dtype is not set (DTYPE_UNSPECIFIED)")


def checked_text(text: str, what: str) -> str:
    """Returns `text` after checking protobuf can carry it (valid UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise CodecError(f"{what} {text!r} cannot be sent as UTF-8: {e}") from None
    return text


def checked_shape(shape: Any, what: str, itemsize: int = 1) -> tuple[int, ...]:
    """Returns `shape` as a tuple after checking numpy can hold such an array.

    Raises:
      CodecError: too many dimensions, a negative or unknown dimension, or
        more bytes than numpy can address (zero dimensions aside, as numpy
        counts them).
    """
    shape = tuple(shape)
    if len(shape) > MAX_RANK:
        raise CodecError(f"{what}: rank {len(shape)} exceeds the maximum of {MAX_RANK}")
    if any(d is None for d in shape):
        raise CodecError(f"{what}: shape {list(shape)} has an unknown dimension")
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError) as e:
        raise CodecError(f"{what}: shape {list(shape)} is not a list of integers: {e}") from None
    if any(d < 0 for d in shape):
        raise CodecError(f"{what}: shape {list(shape)} has a negative dimension")
    if math.prod(d for d in shape if d) * max(itemsize, 1) > _MAX_BYTES:
        raise CodecError(f"{what}: shape {list(shape)} is too large for any array")
    return shape


def array_to_proto(value: Any) -> pb.Tensor:
    """Encodes a numpy array (or anything np.asarray takes) as a Tensor.

    Raises:
      CodecError: unsupported dtype, or string elements that are not bytes/str.
    """
    msg = pb.Tensor()
    write_array(msg, value)
    return msg


def write_array(msg: pb.Tensor, value: Any) -> None:
    """Encodes `value` into `msg` in place (no copy of the message afterwards).

    Raises:
      CodecError: unsupported dtype, or string elements that are not bytes/str.
    """
    array = np.asarray(value)
    enum, kind, itemsize = dtype_to_proto(array.dtype)
    msg.dtype = enum
    msg.shape.extend(array.shape)
    if enum != pb.DTYPE_STRING:
        if enum == pb.DTYPE_BOOL:  # A bool byte other than 0/1 is sent as 1.
            array = array.view(np.uint8) != 0
        elif array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        msg.content = array.tobytes(order="C")
        return
    if kind != pb.STRING_KIND_OBJECT and array.nbytes > MAX_FIXED_STRING_BYTES:
        raise CodecError(f"fixed-width string tensor of {array.nbytes} bytes exceeds "
                         f"{MAX_FIXED_STRING_BYTES}; send an object array instead")
    msg.string_kind = kind
    msg.string_itemsize = itemsize
    flat = [_as_bytes(s) for s in array.ravel(order="C").tolist()]
    if kind != pb.STRING_KIND_OBJECT:
        check_string_padding(flat, array.nbytes, itemsize)
    msg.string_val.extend(flat)


def _as_bytes(element: Any) -> bytes:
    if isinstance(element, bytes):
        return element
    if isinstance(element, str):
        try:
            return element.encode("utf-8")
        except UnicodeEncodeError as e:
            raise CodecError(f"string {element!r} cannot be sent as UTF-8: {e}") from None
    raise CodecError(f"object arrays can be sent only when they hold bytes or str, "
                     f"got an element of type {type(element).__name__}")


def array_from_proto(msg: pb.Tensor, *, copy: bool = False) -> np.ndarray:
    """Decodes a Tensor into a numpy array.

    Numeric tensors are views of the message bytes (read-only) unless `copy`.

    Raises:
      CodecError: unknown dtype, bad shape, or content whose length does not
        match dtype x shape.
    """
    dtype = _NUMERIC.get(msg.dtype)
    if dtype is not None and msg.dtype != pb.DTYPE_BOOL and not msg.string_val:
        # Fast path: the bytes are there, so the shape cannot ask for more memory.
        shape = tuple(msg.shape)
        content = msg.content
        if len(shape) <= MAX_RANK and min(shape, default=0) >= 0 and content and \
                len(content) == math.prod(shape) * dtype.itemsize:
            array = np.frombuffer(content, dtype=dtype).reshape(shape)
            return array.copy() if copy else array
    dtype = checked_dtype(msg.dtype, msg.string_kind, msg.string_itemsize, "tensor")
    shape = checked_shape(msg.shape, "tensor", dtype.itemsize)
    count = math.prod(shape)
    if msg.dtype == pb.DTYPE_STRING:
        return _strings_from_proto(msg, dtype, shape, count)
    if msg.string_val:
        raise CodecError(f"{pb.DType.Name(msg.dtype)} tensor must carry its elements in "
                         "content, not string_val")
    content = msg.content
    if len(content) != count * dtype.itemsize:
        raise CodecError(
            f"tensor content has {len(content)} bytes but shape {list(shape)} of "
            f"{pb.DType.Name(msg.dtype)} needs {count} x {dtype.itemsize} = {count * dtype.itemsize}")
    array = np.frombuffer(content, dtype=dtype).reshape(shape)
    if msg.dtype == pb.DTYPE_BOOL and count and array.view(np.uint8).max() > 1:
        raise CodecError("bool tensor holds bytes other than 0 and 1")
    return array.copy() if copy else array


def checked_dtype(enum: int, string_kind: int, string_itemsize: int, what: str) -> np.dtype:
    """dtype_from_proto, also refusing string widths numpy cannot allocate sanely.

    Raises:
      CodecError: as dtype_from_proto, or a string_itemsize over
        MAX_FIXED_STRING_BYTES; the message starts with `what`.
    """
    if enum == pb.DTYPE_STRING and string_kind in (pb.STRING_KIND_BYTES, pb.STRING_KIND_UNICODE):
        char_size = 1 if string_kind == pb.STRING_KIND_BYTES else 4
        if string_itemsize * char_size > MAX_FIXED_STRING_BYTES:
            raise CodecError(f"{what}: string_itemsize {string_itemsize} exceeds "
                             f"{MAX_FIXED_STRING_BYTES // char_size}")
    try:
        return dtype_from_proto(enum, string_kind, string_itemsize)
    except CodecError as e:
        raise CodecError(f"{what}: {e}") from None


def check_string_padding(elements: list[bytes], array_bytes: int, width: int) -> None:
    """Refuses a fixed-width string array far larger than its elements (see MAX_STRING_PADDING).

    Args:
      elements: the elements as they travel (UTF-8 or bytes).
      array_bytes: the bytes of the numpy array (count x itemsize).
      width: its string_itemsize, for the message.

    Raises:
      CodecError: the array takes more than FIXED_STRING_SLACK bytes and more
        than MAX_STRING_PADDING times the bytes of its elements on the wire.
    """
    if array_bytes <= FIXED_STRING_SLACK:
        return
    carried = sum(len(e) + 2 for e in elements)  # + a tag and a length byte each
    if array_bytes > MAX_STRING_PADDING * carried:
        raise CodecError(f"fixed-width string tensor: string_itemsize {width} makes its {len(elements)} "
                         f"elements take {array_bytes} bytes, more than {MAX_STRING_PADDING} times the "
                         f"{carried} bytes they take in the message; use the width of the longest element "
                         "(or an object array)")


def _strings_from_proto(msg: pb.Tensor, dtype: np.dtype, shape: tuple[int, ...], count: int) -> np.ndarray:
    if len(msg.string_val) != count:
        raise CodecError(f"string tensor has {len(msg.string_val)} elements but shape "
                         f"{list(shape)} needs {count}")
    if msg.content:
        raise CodecError("string tensor must carry its elements in string_val, not content")
    values = list(msg.string_val)
    if dtype.kind == "O":
        array = np.empty(count, dtype=object)
        array[:] = values
        return array.reshape(shape)
    # Checked before anything of the array's size is allocated.
    if count * dtype.itemsize > MAX_FIXED_STRING_BYTES:
        raise CodecError(f"fixed-width string tensor of {count} x {msg.string_itemsize} characters exceeds "
                         f"{MAX_FIXED_STRING_BYTES} bytes")
    check_string_padding(values, count * dtype.itemsize, msg.string_itemsize)
    if dtype.kind == "U":
        try:
            values = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError as e:
            raise CodecError(f"unicode string tensor holds invalid UTF-8: {e}") from None
    width = dtype.itemsize // (4 if dtype.kind == "U" else 1)
    if width and any(len(v) > width for v in values):  # numpy would cut them silently.
        raise CodecError(f"string tensor holds an element longer than its "
                         f"string_itemsize {width}")
    return np.array(values, dtype=dtype).reshape(shape)


def parse_message(message_type: type[_message.Message], data: bytes) -> _message.Message:
    """Parses serialized bytes into a message of `message_type`.

    Protobuf refuses messages nested more than 100 deep (and other malformed
    bytes) with google.protobuf.message.DecodeError; this turns that into a
    CodecError like every other malformed input.

    Raises:
      CodecError: the bytes are not a valid `message_type`.
    """
    try:
        return message_type.FromString(data)
    except _message.DecodeError as e:
        raise CodecError(f"cannot parse {len(data)} bytes as {message_type.DESCRIPTOR.full_name}: "
                         f"{e} (malformed, or nested more than 100 deep)") from None
