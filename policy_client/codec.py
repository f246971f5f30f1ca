"""Conversions between numpy / TF-Agents values and the tfa_policy_grpc.v1 protos.

Every conversion is a `*_to_proto` / `*_from_proto` pair; round trips are
exact (dtype, shape and bits). This module imports numpy and protobuf only,
never TensorFlow: when `tf_agents` is already imported, specs and step tuples
decode into TF-Agents' own classes, otherwise into the stand-ins of
`policy_client.specs`.
"""

from __future__ import annotations

import collections
import math
import sys
from typing import Any, Callable, Mapping

import numpy as np
from google.protobuf import message as _message

from policy_client import specs as light
from policy_client.errors import CodecError
from policy_client.spec_check import is_spec
from policy_client.generated import types_pb2 as pb

try:  # bfloat16 has no numpy dtype of its own; TensorFlow uses ml_dtypes'.
    import ml_dtypes

    _BFLOAT16: np.dtype | None = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes comes with TensorFlow.
    _BFLOAT16 = None

# Deeper nests are refused: no policy has them, and the receiver could not parse
# them. Every dict / named tuple level costs three levels of protobuf message
# nesting (Nest, NestMapping, NestEntry) and protobuf parsers (upb, C++, Java)
# refuse messages nested more than 100 deep; 24 levels leave room for the
# enclosing request (e.g. GetSpecsResponse.specs.time_step_spec.observation)
# and a bounded spec leaf (Nest, ArraySpec, Bounds, Tensor).
MAX_NEST_DEPTH = 24
# numpy's own limit on the number of dimensions.
MAX_RANK = 32
# numpy's limit on the byte size of an array (the largest intp).
_MAX_BYTES = np.iinfo(np.intp).max
# Decoded fixed-width ("S"/"U") string tensors are allocated at
# string_itemsize per element whatever the wire size, so their size is capped.
MAX_FIXED_STRING_BYTES = 1 << 30
# Named tuple classes made up for unknown type names; capped so that a peer
# sending ever new names cannot grow it without bound.
_MAX_DYNAMIC_TUPLES = 1024

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

# Light stand-ins travel under TF-Agents' names, so both sides agree.
_LIGHT_TUPLES = {
    "tf_agents.trajectories.time_step.TimeStep": light.TimeStep,
    "tf_agents.trajectories.policy_step.PolicyStep": light.PolicyStep,
    "tf_agents.trajectories.trajectory.Trajectory": light.Trajectory,
}
_WIRE_NAME_OF_LIGHT = {cls: name for name, cls in _LIGHT_TUPLES.items()}
_DYNAMIC_TUPLES: dict[tuple[str, tuple[str, ...]], type] = {}


# ----------------------------------------------------------------- dtypes


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


def _checked_text(text: str, what: str) -> str:
    """Returns `text` after checking protobuf can carry it (valid UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise CodecError(f"{what} {text!r} cannot be sent as UTF-8: {e}") from None
    return text


def _checked_shape(shape: Any, what: str, itemsize: int = 1) -> tuple[int, ...]:
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


# ----------------------------------------------------------------- arrays


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
    flat = array.ravel(order="C").tolist()
    msg.string_val.extend(_as_bytes(s) for s in flat)


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
    dtype = _checked_dtype(msg.dtype, msg.string_kind, msg.string_itemsize, "tensor")
    shape = _checked_shape(msg.shape, "tensor", dtype.itemsize)
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


def _checked_dtype(enum: int, string_kind: int, string_itemsize: int, what: str) -> np.dtype:
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
    if dtype.kind == "U":
        try:
            values = [v.decode("utf-8") for v in values]
        except UnicodeDecodeError as e:
            raise CodecError(f"unicode string tensor holds invalid UTF-8: {e}") from None
    width = dtype.itemsize // (4 if dtype.kind == "U" else 1)
    if width and any(len(v) > width for v in values):  # numpy would cut them silently.
        raise CodecError(f"string tensor holds an element longer than its "
                         f"string_itemsize {width}")
    if count * width * (4 if dtype.kind == "U" else 1) > MAX_FIXED_STRING_BYTES:
        raise CodecError(f"fixed-width string tensor of {count} x {width} characters exceeds "
                         f"{MAX_FIXED_STRING_BYTES} bytes")
    return np.array(values, dtype=dtype).reshape(shape)


# ----------------------------------------------------------------- specs


def _spec_classes() -> tuple[type, type]:
    module = sys.modules.get("tf_agents.specs.array_spec")
    if module is not None:
        return module.ArraySpec, module.BoundedArraySpec
    return light.ArraySpec, light.BoundedArraySpec


def spec_to_proto(spec: Any) -> pb.ArraySpec:
    """Encodes an ArraySpec or BoundedArraySpec (TF-Agents' or ours).

    Raises:
      CodecError: a dtype with no wire form.
    """
    enum, kind, itemsize = dtype_to_proto(spec.dtype)
    shape = _checked_shape(spec.shape, f"spec {spec.name!r}")
    msg = pb.ArraySpec(name=_checked_text(spec.name or "", "spec name"), shape=shape, dtype=enum,
                       string_kind=kind, string_itemsize=itemsize)
    if hasattr(spec, "minimum") and hasattr(spec, "maximum"):
        msg.bounds.minimum.CopyFrom(array_to_proto(_wire_bound(spec.minimum, spec, shape)))
        msg.bounds.maximum.CopyFrom(array_to_proto(_wire_bound(spec.maximum, spec, shape)))
    return msg


def _wire_bound(bound: Any, spec: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A bound as the wire wants it: the spec's dtype, scalar or the spec's shape."""
    bound = np.asarray(bound, dtype=spec.dtype)
    if bound.shape not in ((), shape):  # TF-Agents accepts any broadcastable shape.
        try:
            bound = np.broadcast_to(bound, shape)
        except ValueError as e:
            raise CodecError(f"spec {spec.name!r}: bound of shape {bound.shape} does not fit "
                             f"shape {shape}: {e}") from None
    return bound


def spec_from_proto(msg: pb.ArraySpec) -> Any:
    """Decodes an ArraySpec message into ArraySpec or BoundedArraySpec.

    Raises:
      CodecError: bad dtype or shape, or bounds that do not fit the shape.
    """
    what = f"spec {msg.name!r}"
    dtype = _checked_dtype(msg.dtype, msg.string_kind, msg.string_itemsize, what)
    shape = _checked_shape(msg.shape, what, dtype.itemsize)
    array_spec, bounded_spec = _spec_classes()
    if not msg.HasField("bounds"):
        return array_spec(shape, dtype, name=msg.name or None)
    bounds = {}
    for name in ("minimum", "maximum"):
        if not msg.bounds.HasField(name):
            raise CodecError(f"{what}: bounds.{name} is not set")
        try:
            bounds[name] = array_from_proto(getattr(msg.bounds, name), copy=True)
        except CodecError as e:
            raise CodecError(f"{what}: bounds.{name}: {e}") from None
        if bounds[name].dtype != dtype:
            raise CodecError(f"{what}: bounds.{name} has dtype {bounds[name].dtype}, "
                             f"the spec {dtype}")
    minimum, maximum = bounds["minimum"], bounds["maximum"]
    try:
        return bounded_spec(shape, dtype, minimum=minimum, maximum=maximum, name=msg.name or None)
    except (ValueError, TypeError) as e:
        raise CodecError(f"spec {msg.name!r}: invalid bounds: {e}") from None


# ----------------------------------------------------------------- nests


def _wire_name(cls: type) -> str:
    return _WIRE_NAME_OF_LIGHT.get(cls) or f"{cls.__module__}.{cls.__qualname__}"


def _imported_class(type_name: str) -> Any:
    """The object `type_name` names in an already imported module, else None.

    Never imports anything: a peer must not make us run a module's code. Names
    are looked up in `__dict__`s only, so lazy-loading modules' `__getattr__`
    (TensorFlow has them) and descriptors are never triggered.
    """
    parts = type_name.split(".")
    for i in range(len(parts) - 1, 0, -1):  # Longest module prefix first.
        obj = sys.modules.get(".".join(parts[:i]))
        if obj is None:
            continue
        for attr in parts[i:]:  # Classes nested in classes: "module.Outer.Inner".
            obj = getattr(obj, "__dict__", {}).get(attr)
        return obj
    return None


def _namedtuple_class(type_name: str, fields: tuple[str, ...]) -> type:
    """The class to rebuild a named tuple with: TF-Agents' own when imported."""
    cls = _imported_class(type_name)
    if (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_make")
            and tuple(getattr(cls, "_fields", ())) == fields):
        return cls
    cls = _LIGHT_TUPLES.get(type_name)
    if cls is not None and cls._fields == fields:
        return cls
    key = (type_name, fields)
    if key in _DYNAMIC_TUPLES:
        return _DYNAMIC_TUPLES[key]
    class_name = type_name.rpartition(".")[2]
    if not class_name.isidentifier() or not all(f.isidentifier() and not f.startswith("_") for f in fields):
        raise CodecError(f"named tuple {type_name!r} has invalid type or field names {list(fields)}")
    try:
        cls = collections.namedtuple(class_name, fields)
    except ValueError as e:  # Keywords, duplicate field names.
        raise CodecError(f"named tuple {type_name!r} with fields {list(fields)}: {e}") from None
    if len(_DYNAMIC_TUPLES) < _MAX_DYNAMIC_TUPLES:
        _DYNAMIC_TUPLES[key] = cls
    return cls


def nest_to_proto(value: Any, *, leaf: Callable[[Any], Any] | None = None) -> pb.Nest:
    """Encodes a nest (tf.nest structure) of arrays, or of specs, as a Nest.

    Args:
      value: arrays, numbers, specs or None in lists, tuples, named tuples and
        string-keyed mappings.
      leaf: optional hook called on every leaf (anything but None, a list,
        tuple, named tuple or mapping) before encoding, e.g. to convert
        TensorFlow specs or tensors. It may return a nest, encoded in turn.

    Raises:
      CodecError: unsupported leaves, non-string keys, or a nest deeper than
        MAX_NEST_DEPTH.
    """
    msg = pb.Nest()
    _write_nest(msg, value, leaf, 0, "")
    return msg


def write_nest(msg: pb.Nest, value: Any) -> None:
    """Encodes a nest into `msg` in place (see nest_to_proto)."""
    _write_nest(msg, value, None, 0, "")


def _write_nest(msg: pb.Nest, value: Any, leaf: Callable[[Any], Any] | None, depth: int, path: str) -> None:
    if depth > MAX_NEST_DEPTH:
        raise CodecError(f"nest is deeper than {MAX_NEST_DEPTH} levels at {path or 'the root'}")
    if leaf is not None and not (value is None or isinstance(value, (list, tuple, Mapping))):
        value = leaf(value)
    if isinstance(value, np.ndarray):  # the common case first
        _write_leaf(msg.tensor, value, path)
    elif value is None:
        msg.none.SetInParent()
    elif isinstance(value, (np.generic, int, float, bool, bytes, str)):
        _write_leaf(msg.tensor, value, path)
    elif isinstance(value, tuple) and hasattr(type(value), "_fields"):
        msg.named_tuple.type_name = _wire_name(type(value))
        for name, item in zip(type(value)._fields, value):
            _write_nest(msg.named_tuple.fields.add(key=name).value, item, leaf, depth + 1, f"{path}.{name}")
    elif isinstance(value, (list, tuple)):
        seq = msg.list if isinstance(value, list) else msg.tuple
        seq.SetInParent()
        for i, item in enumerate(value):
            _write_nest(seq.values.add(), item, leaf, depth + 1, f"{path}[{i}]")
    elif isinstance(value, Mapping):
        _mapping_to_proto(value, msg, leaf, depth, path)
    elif is_spec(value):
        msg.spec.CopyFrom(spec_to_proto(value))
    elif hasattr(value, "__array__"):
        _write_leaf(msg.tensor, value, path)
    else:
        raise CodecError(f"cannot encode {type(value).__name__} at {path or 'the root'}")


def _write_leaf(msg: pb.Tensor, value: Any, path: str) -> None:
    try:
        write_array(msg, value)
    except CodecError as e:
        raise CodecError(f"{path or 'the root'}: {e}") from None


def _mapping_to_proto(value: Mapping, msg: pb.Nest, leaf: Callable[[Any], Any] | None,
                      depth: int, path: str) -> None:
    msg.dict.SetInParent()
    msg.dict.ordered = isinstance(value, collections.OrderedDict)
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise CodecError(f"mapping keys must be strings, got {bad[0]!r} at {path or 'the root'}")
    for key in value:
        _checked_text(key, f"mapping key at {path or 'the root'}:")
    keys = list(value) if msg.dict.ordered else sorted(value)
    for key in keys:
        _write_nest(msg.dict.entries.add(key=key).value, value[key], leaf, depth + 1, f"{path}[{key!r}]")


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


def nest_from_proto(msg: pb.Nest, *, copy: bool = False) -> Any:
    """Decodes a Nest into numpy arrays / specs in lists, tuples, dicts and named tuples.

    Args:
      msg: the message.
      copy: copy tensor bytes into writeable arrays instead of read-only views.

    Raises:
      CodecError: an unset value, duplicate keys, a malformed leaf, or a nest
        deeper than MAX_NEST_DEPTH.
    """
    return _nest_from_proto(msg, copy, 0, "")


def _nest_from_proto(msg: pb.Nest, copy: bool, depth: int, path: str) -> Any:
    if depth > MAX_NEST_DEPTH:
        raise CodecError(f"nest is deeper than {MAX_NEST_DEPTH} levels at {path or 'the root'}")
    kind = msg.WhichOneof("value")
    try:
        if kind == "tensor":
            return array_from_proto(msg.tensor, copy=copy)
        if kind == "spec":
            return spec_from_proto(msg.spec)
    except CodecError as e:
        raise CodecError(f"{path or 'the root'}: {e}") from None
    if kind in ("list", "tuple"):
        seq = msg.list if kind == "list" else msg.tuple
        items = [_nest_from_proto(v, copy, depth + 1, f"{path}[{i}]") for i, v in enumerate(seq.values)]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return _mapping_from_proto(msg.dict, copy, depth, path)
    if kind == "named_tuple":
        fields = tuple(f.key for f in msg.named_tuple.fields)
        cls = _namedtuple_class(msg.named_tuple.type_name, fields)
        return cls._make(_nest_from_proto(f.value, copy, depth + 1, f"{path}.{f.key}")
                         for f in msg.named_tuple.fields)
    if kind == "none":
        return None
    raise CodecError(f"nest value is not set at {path or 'the root'}")


def _mapping_from_proto(msg: pb.NestMapping, copy: bool, depth: int, path: str) -> dict:
    result = collections.OrderedDict() if msg.ordered else {}
    for entry in msg.entries:
        if entry.key in result:
            raise CodecError(f"duplicate key {entry.key!r} at {path or 'the root'}")
        result[entry.key] = _nest_from_proto(entry.value, copy, depth + 1, f"{path}[{entry.key!r}]")
    return result


# ----------------------------------------------------------------- steps


def _time_step_class() -> type:
    module = sys.modules.get("tf_agents.trajectories.time_step")
    return module.TimeStep if module is not None else light.TimeStep


def _policy_step_class() -> type:
    module = sys.modules.get("tf_agents.trajectories.policy_step")
    return module.PolicyStep if module is not None else light.PolicyStep


def time_step_to_proto(time_step: Any) -> pb.TimeStep:
    """Encodes a TimeStep (any object with its four fields).

    Raises:
      CodecError: a field that cannot be encoded (the message names it).
    """
    msg = pb.TimeStep()
    write_time_step(msg, time_step)
    return msg


def write_time_step(msg: pb.TimeStep, time_step: Any) -> None:
    """Encodes a TimeStep into `msg` in place (see time_step_to_proto)."""
    _write_leaf(msg.step_type, time_step.step_type, "time_step.step_type")
    _write_leaf(msg.discount, time_step.discount, "time_step.discount")
    _write_nest(msg.reward, time_step.reward, None, 1, "time_step.reward")
    _write_nest(msg.observation, time_step.observation, None, 1, "time_step.observation")


def time_step_from_proto(msg: pb.TimeStep, *, copy: bool = False) -> Any:
    """Decodes a TimeStep message (TF-Agents' TimeStep when tf_agents is imported).

    Raises:
      CodecError: a missing or malformed field (the message names it).
    """
    fields = {}
    for name in ("step_type", "discount"):
        if not msg.HasField(name):
            raise CodecError(f"time_step.{name} is not set")
        try:
            fields[name] = array_from_proto(getattr(msg, name), copy=copy)
        except CodecError as e:
            raise CodecError(f"time_step.{name}: {e}") from None
    for name in ("reward", "observation"):
        if not msg.HasField(name):
            raise CodecError(f"time_step.{name} is not set")
        fields[name] = _nest_from_proto(getattr(msg, name), copy, 1, f"time_step.{name}")
    return _time_step_class()(**fields)


def policy_step_to_proto(policy_step: Any) -> pb.PolicyStep:
    """Encodes a PolicyStep (action, state, info).

    Raises:
      CodecError: a field that cannot be encoded (the message names it).
    """
    msg = pb.PolicyStep()
    write_policy_step(msg, policy_step)
    return msg


def write_policy_step(msg: pb.PolicyStep, policy_step: Any) -> None:
    """Encodes a PolicyStep into `msg` in place (see policy_step_to_proto)."""
    _write_nest(msg.action, policy_step.action, None, 1, "policy_step.action")
    _write_nest(msg.state, policy_step.state, None, 1, "policy_step.state")
    _write_nest(msg.info, policy_step.info, None, 1, "policy_step.info")


def policy_step_from_proto(msg: pb.PolicyStep, *, copy: bool = False) -> Any:
    """Decodes a PolicyStep; unset state/info decode as `()`.

    Raises:
      CodecError: a missing action or a malformed field.
    """
    if not msg.HasField("action"):
        raise CodecError("policy_step.action is not set")
    fields = {name: _nest_from_proto(getattr(msg, name), copy, 1, f"policy_step.{name}")
              if msg.HasField(name) else () for name in ("action", "state", "info")}
    return _policy_step_class()(**fields)


# ----------------------------------------------------------------- policy specs


def time_step_spec_to_proto(spec: Any) -> pb.TimeStepSpec:
    """Encodes a TimeStep of specs."""
    msg = pb.TimeStepSpec(step_type=spec_to_proto(spec.step_type), discount=spec_to_proto(spec.discount))
    msg.reward.CopyFrom(nest_to_proto(spec.reward))
    msg.observation.CopyFrom(nest_to_proto(spec.observation))
    return msg


def time_step_spec_from_proto(msg: pb.TimeStepSpec) -> Any:
    """Decodes a TimeStepSpec into a TimeStep of specs.

    Raises:
      CodecError: a missing or malformed field.
    """
    for name in ("step_type", "discount", "reward", "observation"):
        if not msg.HasField(name):
            raise CodecError(f"time_step_spec.{name} is not set")
    return _time_step_class()(
        step_type=spec_from_proto(msg.step_type), reward=nest_from_proto(msg.reward),
        discount=spec_from_proto(msg.discount), observation=nest_from_proto(msg.observation))


def policy_specs_to_proto(specs: light.PolicySpecs) -> pb.PolicySpecs:
    """Encodes every spec of a policy (collect_data_spec only when not None)."""
    msg = pb.PolicySpecs(time_step_spec=time_step_spec_to_proto(specs.time_step_spec))
    msg.action_spec.CopyFrom(nest_to_proto(specs.action_spec))
    msg.policy_state_spec.CopyFrom(nest_to_proto(specs.policy_state_spec))
    msg.info_spec.CopyFrom(nest_to_proto(specs.info_spec))
    if specs.collect_data_spec is not None:
        msg.collect_data_spec.CopyFrom(nest_to_proto(specs.collect_data_spec))
    return msg


def policy_specs_from_proto(msg: pb.PolicySpecs) -> light.PolicySpecs:
    """Decodes PolicySpecs; unset state/info specs decode as `()`.

    Raises:
      CodecError: a missing time_step_spec/action_spec or a malformed spec.
    """
    for name in ("time_step_spec", "action_spec"):
        if not msg.HasField(name):
            raise CodecError(f"policy_specs.{name} is not set")

    def optional(name: str, default: Any) -> Any:
        return nest_from_proto(getattr(msg, name)) if msg.HasField(name) else default

    return light.PolicySpecs(
        time_step_spec=time_step_spec_from_proto(msg.time_step_spec),
        action_spec=nest_from_proto(msg.action_spec),
        policy_state_spec=optional("policy_state_spec", ()),
        info_spec=optional("info_spec", ()),
        collect_data_spec=optional("collect_data_spec", None))
