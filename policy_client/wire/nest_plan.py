"""Per-policy plans: a spec nest compiled once, to check, encode and decode values leaf by leaf.

The generic codec (`nests`) walks any nest and names every problem. A plan
knows the structure in advance: it flattens a value with dm-tree, compares
each leaf's dtype and shape with its spec, and writes or reads the `Nest`
message following the compiled structure, without rebuilding nests. Anything
that does not fit the plan returns None, and the caller takes the generic
path, which raises the error that names the field.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tree

from policy_client.wire import tensors
from policy_client.wire.generated import types_pb2 as pb
from policy_client.wire.namedtuples import NAMED_TYPES, NamedTupleTypes
from policy_client.wire.specs import is_spec

_STRING = pb.DTYPE_STRING
_BOOL = pb.DTYPE_BOOL


class NestPlan:
    """One spec nest (e.g. a policy's time_step_spec), compiled.

    Args:
      spec: the nest of array specs.
      named_types: names the named tuples of the structure.

    Attributes:
      specs: the leaf specs, in dm-tree / tf.nest order.
      numeric: whether every leaf is numeric (strings take the generic path).
    """

    def __init__(self, spec: Any, named_types: NamedTupleTypes = NAMED_TYPES):
        self.structure = spec
        self.specs = tree.flatten(spec)
        self.dtypes = [np.dtype(s.dtype) for s in self.specs]
        self.shapes = [tuple(int(d) for d in s.shape) for s in self.specs]
        self.enums = [tensors.dtype_to_proto(d)[0] for d in self.dtypes]
        self.numeric = _STRING not in self.enums
        self.empty = not self.specs
        self._write = _compile_writer(spec, named_types, iter(range(len(self.specs))))
        self._read = _compile_reader(spec, named_types, iter(range(len(self.specs))))
        self._flatten = _compile_flattener(spec)
        self._build = _compile_builder(spec)

    def leaves(self, value: Any, outer: tuple[int, ...] = ()) -> list[np.ndarray] | None:
        """The value's leaves when it fits the plan exactly (the same containers,
        numpy arrays of the spec dtypes and of shape outer + spec shape, or numpy
        scalars of the spec dtypes where that shape is ()), else None."""
        if not self.numeric:
            return None
        flat = self.structure_leaves(value)
        if flat is None:
            return None
        for i, (leaf, dtype, shape) in enumerate(zip(flat, self.dtypes, self.shapes)):
            if type(leaf) is np.ndarray:
                if leaf.dtype == dtype and leaf.shape == outer + shape:
                    continue
            elif isinstance(leaf, np.generic) and leaf.dtype == dtype and not outer and not shape:
                flat[i] = np.asarray(leaf)  # np.int32(1) as a simulator writes it: a 0-d array, no copy of note
                continue
            return None
        return flat

    def structure_leaves(self, value: Any) -> list[Any] | None:
        """The value's leaves when its containers are the plan's (any leaves), else None."""
        out: list[Any] = []
        return out if self._flatten(value, out) else None

    def write(self, msg: pb.Nest, leaves: Sequence[np.ndarray]) -> None:
        """Encodes leaves that fit the plan (see `leaves`) into `msg`, as nests.write_nest would."""
        self._write(msg, leaves)

    def read(self, msg: pb.Nest, outer: tuple[int, ...] = ()) -> list[np.ndarray] | None:
        """The leaves of a Nest message that fits the plan (structure, dtypes,
        shapes outer + spec shape, byte lengths), as read-only views; else None."""
        if not self.numeric:
            return None
        out: list[Any] = [None] * len(self.specs)
        try:
            ok = self._read(msg, out)
        except (IndexError, KeyError, ValueError):
            return None
        if not ok:
            return None
        for i, (tensor, enum, dtype, shape) in enumerate(zip(out, self.enums, self.dtypes, self.shapes)):
            array = read_tensor(tensor, enum, dtype, outer + shape)
            if array is None:
                return None
            out[i] = array
        return out

    def unflatten(self, leaves: Sequence[Any]) -> Any:
        """The leaves in the plan's structure (its own container classes)."""
        return self._build(iter(leaves))


def read_tensor(tensor: pb.Tensor, enum: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray | None:
    """A numeric Tensor message as a read-only view when it has exactly this dtype and shape, else None."""
    if tensor.dtype != enum or tuple(tensor.shape) != shape or tensor.string_val \
            or len(tensor.content) != dtype.itemsize * _count(shape):
        return None
    array = np.frombuffer(tensor.content, dtype=dtype).reshape(shape)
    if enum == _BOOL and array.size and array.view(np.uint8).max() > 1:
        return None
    return array


def _count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


Writer = Callable[[pb.Nest, Sequence[np.ndarray]], None]
Flattener = Callable[[Any, list], bool]
Builder = Callable[[Any], Any]


def _compile_flattener(spec: Any) -> Flattener:
    """A function appending a value's leaves to `out` in dm-tree order; False when its containers differ."""
    if is_spec(spec):
        def leaf(value: Any, out: list) -> bool:
            if isinstance(value, (list, tuple, Mapping)) or value is None:
                return False
            out.append(value)
            return True
        return leaf
    if spec is None:
        return lambda value, out: value is None
    if isinstance(spec, Mapping):
        cls, keys = type(spec), sorted(spec)
        parts = [(k, _compile_flattener(spec[k])) for k in keys]
        key_set = set(keys)

        def flatten_dict(value: Any, out: list) -> bool:
            if type(value) is not cls or value.keys() != key_set:
                return False
            return all(part(value[k], out) for k, part in parts)
        return flatten_dict
    if isinstance(spec, (list, tuple)):
        cls = type(spec)
        fields = getattr(cls, "_fields", None)
        parts = [_compile_flattener(s) for s in spec]
        count = len(parts)

        def flatten_seq(value: Any, out: list) -> bool:
            if type(value) is not cls and not (fields is not None and getattr(type(value), "_fields", None) == fields
                                              and isinstance(value, tuple)):
                return False
            return len(value) == count and all(part(v, out) for part, v in zip(parts, value))
        return flatten_seq
    raise TypeError(f"cannot plan a nest holding {type(spec).__name__}")


def _compile_builder(spec: Any) -> Builder:
    """A function building the spec's structure from an iterator of leaves (dm-tree order)."""
    if is_spec(spec):
        return next
    if spec is None:
        return lambda leaves: None
    if isinstance(spec, Mapping):
        cls = type(spec)
        keys = sorted(spec)
        parts = [_compile_builder(spec[k]) for k in keys]
        order = list(spec)  # the spec's own key order, for the result
        if cls is dict:
            return lambda leaves: (lambda built: {k: built[k] for k in order})(
                {k: part(leaves) for k, part in zip(keys, parts)})
        return lambda leaves: (lambda built: cls((k, built[k]) for k in order))(
            {k: part(leaves) for k, part in zip(keys, parts)})
    if isinstance(spec, tuple) and hasattr(type(spec), "_fields"):
        cls = type(spec)
        parts = [_compile_builder(s) for s in spec]
        return lambda leaves: cls(*[part(leaves) for part in parts])
    if isinstance(spec, (list, tuple)):
        cls = type(spec)
        parts = [_compile_builder(s) for s in spec]
        return lambda leaves: cls(part(leaves) for part in parts)
    raise TypeError(f"cannot plan a nest holding {type(spec).__name__}")
Reader = Callable[[pb.Nest, list], bool]


def _compile_writer(spec: Any, named_types: NamedTupleTypes, index: Any) -> Writer:
    if is_spec(spec):
        i = next(index)
        return lambda msg, leaves: tensors.write_array(msg.tensor, leaves[i])
    if spec is None:
        return lambda msg, leaves: msg.none.SetInParent()
    if isinstance(spec, Mapping):
        ordered = type(spec).__name__ == "OrderedDict"
        # Leaves are numbered in sorted-key order (dm-tree's); the wire takes
        # every mapping in its own key order (it comes back in that order).
        compiled = {k: _compile_writer(spec[k], named_types, index) for k in sorted(spec)}
        parts = [(k, compiled[k]) for k in spec]

        def write_dict(msg: pb.Nest, leaves: Sequence[np.ndarray]) -> None:
            msg.dict.SetInParent()
            msg.dict.ordered = ordered
            for key, write in parts:
                write(msg.dict.entries.add(key=key).value, leaves)
        return write_dict
    if isinstance(spec, tuple) and hasattr(type(spec), "_fields"):
        name = named_types.wire_name(type(spec))
        parts = [(f, _compile_writer(s, named_types, index)) for f, s in zip(type(spec)._fields, spec)]

        def write_named(msg: pb.Nest, leaves: Sequence[np.ndarray]) -> None:
            msg.named_tuple.type_name = name
            for field, write in parts:
                write(msg.named_tuple.fields.add(key=field).value, leaves)
        return write_named
    if isinstance(spec, (list, tuple)):
        kind = "list" if isinstance(spec, list) else "tuple"
        parts = [_compile_writer(s, named_types, index) for s in spec]

        def write_seq(msg: pb.Nest, leaves: Sequence[np.ndarray]) -> None:
            seq = getattr(msg, kind)
            seq.SetInParent()
            for write in parts:
                write(seq.values.add(), leaves)
        return write_seq
    raise TypeError(f"cannot plan a nest holding {type(spec).__name__}")


def _compile_reader(spec: Any, named_types: NamedTupleTypes, index: Any) -> Reader:
    """A function that stores the nest's Tensor messages in `out` by leaf index; False on misfit."""
    if is_spec(spec):
        i = next(index)

        def read_leaf(msg: pb.Nest, out: list) -> bool:
            if msg.WhichOneof("value") != "tensor":
                return False
            out[i] = msg.tensor
            return True
        return read_leaf
    if spec is None:
        return lambda msg, out: msg.WhichOneof("value") == "none"
    if isinstance(spec, Mapping):
        keys = sorted(spec)
        parts = {k: _compile_reader(spec[k], named_types, index) for k in keys}  # leaves in sorted-key order

        def read_dict(msg: pb.Nest, out: list) -> bool:
            if msg.WhichOneof("value") != "dict" or len(msg.dict.entries) != len(keys):
                return False
            seen = set()
            for entry in msg.dict.entries:
                read = parts.get(entry.key)
                if read is None or entry.key in seen or not read(entry.value, out):
                    return False
                seen.add(entry.key)
            return True
        return read_dict
    if isinstance(spec, tuple) and hasattr(type(spec), "_fields"):
        fields = tuple(type(spec)._fields)
        parts = [_compile_reader(s, named_types, index) for s in spec]

        def read_named(msg: pb.Nest, out: list) -> bool:
            if msg.WhichOneof("value") != "named_tuple" or len(msg.named_tuple.fields) != len(fields):
                return False
            return all(f.key == name and read(f.value, out)
                       for f, name, read in zip(msg.named_tuple.fields, fields, parts))
        return read_named
    if isinstance(spec, (list, tuple)):
        parts = [_compile_reader(s, named_types, index) for s in spec]
        expected = "list" if isinstance(spec, list) else "tuple"

        def read_seq(msg: pb.Nest, out: list) -> bool:
            kind = msg.WhichOneof("value")
            if kind != expected:
                return False
            seq = getattr(msg, kind)
            return len(seq.values) == len(parts) and all(read(v, out) for v, read in zip(seq.values, parts))
        return read_seq
    raise TypeError(f"cannot plan a nest holding {type(spec).__name__}")

