"""Nests on the wire: tf.nest structures of arrays or specs <-> `Nest` messages.

A nest is a tensor or spec leaf, None, a list, a tuple, a string-keyed mapping
(entries in the mapping's own order, so that a dict comes back with its keys
in the order they had; `ordered` tells an OrderedDict) or a named tuple (its wire name and fields,
see `namedtuples`). `()` is TF-Agents' "no state / no info" and round-trips as `()`.
Plain Python numbers, booleans and strings travel as `Scalar`s and come back
as they were (numpy scalars and arrays keep their dtype as Tensors).
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Mapping

import numpy as np

from policy_client.wire import specs, tensors
from policy_client.wire.errors import CodecError, NotANestError
from policy_client.wire.generated import types_pb2 as pb
from policy_client.wire.namedtuples import NAMED_TYPES, NamedTupleTypes

# Deeper nests are refused: no policy has them, and the receiver could not parse
# them. Every dict / named tuple level costs three levels of protobuf message
# nesting (Nest, NestMapping, NestEntry) and protobuf parsers (upb, C++, Java)
# refuse messages nested more than 100 deep; 24 levels leave room for the
# enclosing request (e.g. GetSpecsResponse.specs.time_step_spec.observation)
# and a bounded spec leaf (Nest, ArraySpec, Bounds, Tensor).
MAX_NEST_DEPTH = 24

Leaf = Callable[[Any], Any]


def nest_to_proto(value: Any, *, leaf: Leaf | None = None, named_types: NamedTupleTypes = NAMED_TYPES) -> pb.Nest:
    """Encodes a nest of arrays, numbers, specs or None as a Nest.

    Args:
      value: the nest.
      leaf: optional hook called on every leaf (anything but None, a list,
        tuple, named tuple or mapping) before encoding, e.g. to convert
        TensorFlow tensors. It may return a nest, encoded in turn.
      named_types: names named tuple classes.

    Raises:
      CodecError: unsupported leaves, non-string keys, or a nest deeper than
        MAX_NEST_DEPTH; `field` names where.
    """
    msg = pb.Nest()
    write_nest(msg, value, leaf=leaf, named_types=named_types)
    return msg


def write_nest(msg: pb.Nest, value: Any, *, path: str = "", depth: int = 0, leaf: Leaf | None = None,
               named_types: NamedTupleTypes = NAMED_TYPES) -> None:
    """Encodes a nest into `msg` in place (see nest_to_proto); `path` names the root in errors."""
    try:
        _Writer(leaf, named_types).write(msg, value, depth, path)
    except RecursionError:  # an object whose every attribute is another object (a mock), met in a leaf converter
        raise NotANestError(f"cannot encode {type(value).__name__} at {path or 'the root'}: not a nest of arrays",
                            path) from None


class _Writer:
    def __init__(self, leaf: Leaf | None, named_types: NamedTupleTypes):
        self.leaf = leaf
        self.named_types = named_types

    def write(self, msg: pb.Nest, value: Any, depth: int, path: str) -> None:
        if depth > MAX_NEST_DEPTH:
            raise CodecError(f"nest is deeper than {MAX_NEST_DEPTH} levels at {path or 'the root'}", path)
        if self.leaf is not None and not (value is None or isinstance(value, (list, tuple, Mapping))):
            value = self.leaf(value)
        if isinstance(value, np.ndarray):  # the common case first
            write_leaf(msg.tensor, value, path)
        elif value is None:
            msg.none.SetInParent()
        elif isinstance(getattr(value, "__wrapped__", None), (dict, list, tuple)):  # Keras-tracked containers
            self.write(msg, value.__wrapped__, depth, path)
        elif isinstance(value, np.generic):
            write_leaf(msg.tensor, value, path)
        elif isinstance(value, (int, float, bool, bytes, str)):
            write_scalar(msg.scalar, value, path)
        elif isinstance(value, tuple) and hasattr(type(value), "_fields"):
            msg.named_tuple.type_name = self.named_types.wire_name(type(value))
            for name, item in zip(type(value)._fields, value):
                self.write(msg.named_tuple.fields.add(key=name).value, item, depth + 1, f"{path}.{name}")
        elif isinstance(value, (list, tuple)):
            seq = msg.list if isinstance(value, list) else msg.tuple
            seq.SetInParent()
            for i, item in enumerate(value):
                self.write(seq.values.add(), item, depth + 1, f"{path}[{i}]")
        elif isinstance(value, Mapping):
            self._mapping(msg, value, depth, path)
        elif specs.is_spec(value):
            msg.spec.CopyFrom(specs.spec_to_proto(value))
        elif hasattr(value, "__array__"):
            write_leaf(msg.tensor, value, path)
        else:
            raise NotANestError(f"cannot encode {type(value).__name__} at {path or 'the root'}: not a nest of "
                                "arrays (numpy arrays or scalars, Python scalars, strings, None, in tuples, "
                                "named tuples, lists and dicts)", path)

    def _mapping(self, msg: pb.Nest, value: Mapping, depth: int, path: str) -> None:
        msg.dict.SetInParent()
        msg.dict.ordered = isinstance(value, collections.OrderedDict)
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise CodecError(f"mapping keys must be strings, got {bad[0]!r} at {path or 'the root'}", path)
        for key in value:
            tensors.checked_text(key, f"mapping key at {path or 'the root'}:")
        for key in value:  # in the mapping's own order: it comes back in it (tf.nest flattens sorted anyway)
            self.write(msg.dict.entries.add(key=key).value, value[key], depth + 1, f"{path}[{key!r}]")


def write_scalar(msg: pb.Scalar, value: Any, path: str) -> None:
    """Encodes a plain Python bool, int, float, str or bytes (subclasses as their base type)."""
    if isinstance(value, bool):
        msg.bool_value = value
    elif isinstance(value, int):
        if not -2**63 <= value < 2**63:
            raise CodecError(f"{path or 'the root'}: integer {value} does not fit in 64 bits", path)
        msg.int_value = int(value)
    elif isinstance(value, float):
        msg.float_value = value
    elif isinstance(value, str):
        msg.string_value = tensors.checked_text(value, f"{path or 'the root'}:")
    else:
        msg.bytes_value = bytes(value)


def scalar_from_proto(msg: pb.Scalar, path: str = "") -> Any:
    """The Python value of a Scalar."""
    kind = msg.WhichOneof("value")
    if kind is None:
        raise CodecError(f"scalar value is not set at {path or 'the root'}", path)
    return getattr(msg, kind)


def write_leaf(msg: pb.Tensor, value: Any, path: str) -> None:
    """Encodes one array into `msg`; a CodecError names `path`."""
    try:
        tensors.write_array(msg, value)
    except CodecError as e:
        raise CodecError(f"{path or 'the root'}: {e}", path) from None


def nest_from_proto(msg: pb.Nest, *, copy: bool = False, path: str = "", depth: int = 0,
                    named_types: NamedTupleTypes = NAMED_TYPES) -> Any:
    """Decodes a Nest into numpy arrays / specs in lists, tuples, dicts and named tuples.

    Args:
      msg: the message.
      copy: copy tensor bytes into writeable arrays instead of read-only views.
      path: how errors name the root (e.g. "time_step.observation").
      depth: the nesting depth of the root.
      named_types: the classes named tuples and specs decode into.

    Raises:
      CodecError: an unset value, duplicate keys, a malformed leaf, or a nest
        deeper than MAX_NEST_DEPTH; `field` names where.
    """
    return _Reader(copy, named_types).read(msg, depth, path)


class _Reader:
    def __init__(self, copy: bool, named_types: NamedTupleTypes):
        self.copy = copy
        self.named_types = named_types

    def read(self, msg: pb.Nest, depth: int, path: str) -> Any:
        if depth > MAX_NEST_DEPTH:
            raise CodecError(f"nest is deeper than {MAX_NEST_DEPTH} levels at {path or 'the root'}", path)
        kind = msg.WhichOneof("value")
        try:
            if kind == "tensor":
                return tensors.array_from_proto(msg.tensor, copy=self.copy)
            if kind == "spec":
                return specs.spec_from_proto(msg.spec, self.named_types)
        except CodecError as e:
            raise CodecError(f"{path or 'the root'}: {e}", path) from None
        if kind in ("list", "tuple"):
            seq = msg.list if kind == "list" else msg.tuple
            items = [self.read(v, depth + 1, f"{path}[{i}]") for i, v in enumerate(seq.values)]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            return self._mapping(msg.dict, depth, path)
        if kind == "named_tuple":
            fields = tuple(f.key for f in msg.named_tuple.fields)
            try:
                cls = self.named_types.namedtuple_class(msg.named_tuple.type_name, fields)
            except CodecError as e:
                raise CodecError(f"{path or 'the root'}: {e}", path) from None
            return cls._make(self.read(f.value, depth + 1, f"{path}.{f.key}") for f in msg.named_tuple.fields)
        if kind == "none":
            return None
        if kind == "scalar":
            return scalar_from_proto(msg.scalar, path)
        raise CodecError(f"nest value is not set at {path or 'the root'}", path)

    def _mapping(self, msg: pb.NestMapping, depth: int, path: str) -> dict:
        result = collections.OrderedDict() if msg.ordered else {}
        for entry in msg.entries:
            if entry.key in result:
                raise CodecError(f"duplicate key {entry.key!r} at {path or 'the root'}", path)
            result[entry.key] = self.read(entry.value, depth + 1, f"{path}[{entry.key!r}]")
        return result
