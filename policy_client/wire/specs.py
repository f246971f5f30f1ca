"""Array specs on the wire: ArraySpec / BoundedArraySpec <-> `ArraySpec` messages.

Bounds travel as tensors of the spec's dtype, scalar or of the spec's shape,
exactly (int64 and uint64 bounds keep every bit; float bounds keep their
finite extremes). Specs decode into the classes of the named-tuple types table (`namedtuples`):
TF-Agents' own once registered, else the numpy-only stand-ins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from policy_client.wire import tensors
from policy_client.wire.errors import CodecError
from policy_client.wire.generated import types_pb2 as pb
from policy_client.wire.namedtuples import NAMED_TYPES, NamedTupleTypes


# Classes (by name, so that TensorFlow need not be imported) whose instances and subclasses' are array specs.
_SPEC_CLASSES = frozenset({"ArraySpec", "BoundedArraySpec", "TensorSpec", "BoundedTensorSpec"})


def is_spec(value: Any) -> bool:
    """Whether `value` is an array spec (TF-Agents', TensorFlow's or a stand-in; not any object with a shape,
    a dtype and a name, such as a mock)."""
    return (any(cls.__name__ in _SPEC_CLASSES for cls in type(value).__mro__)
            and hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "name"))


def spec_to_proto(spec: Any) -> pb.ArraySpec:
    """Encodes an ArraySpec or BoundedArraySpec (TF-Agents' or a stand-in).

    Raises:
      CodecError: a dtype with no wire form, or bounds that do not fit the shape.
    """
    enum, kind, itemsize = tensors.dtype_to_proto(spec.dtype)
    shape = tensors.checked_shape(spec.shape, f"spec {spec.name!r}")
    msg = pb.ArraySpec(name=tensors.checked_text(spec.name or "", "spec name"), shape=shape, dtype=enum,
                       string_kind=kind, string_itemsize=itemsize)
    if hasattr(spec, "minimum") and hasattr(spec, "maximum"):
        tensors.write_array(msg.bounds.minimum, _wire_bound(spec.minimum, spec, shape))
        tensors.write_array(msg.bounds.maximum, _wire_bound(spec.maximum, spec, shape))
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


def spec_from_proto(msg: pb.ArraySpec, named_types: NamedTupleTypes = NAMED_TYPES) -> Any:
    """Decodes an ArraySpec message into the table's ArraySpec or BoundedArraySpec.

    Raises:
      CodecError: bad dtype or shape, or bounds that do not fit the shape.
    """
    what = f"spec {msg.name!r}"
    dtype = tensors.checked_dtype(msg.dtype, msg.string_kind, msg.string_itemsize, what)
    shape = tensors.checked_shape(msg.shape, what, dtype.itemsize)
    if not msg.HasField("bounds"):
        return named_types.array_spec(shape, dtype, name=msg.name or None)
    bounds = {}
    for name in ("minimum", "maximum"):
        if not msg.bounds.HasField(name):
            raise CodecError(f"{what}: bounds.{name} is not set")
        try:
            bounds[name] = tensors.array_from_proto(getattr(msg.bounds, name), copy=True)
        except CodecError as e:
            raise CodecError(f"{what}: bounds.{name}: {e}") from None
        if bounds[name].dtype != dtype:
            raise CodecError(f"{what}: bounds.{name} has dtype {bounds[name].dtype}, the spec {dtype}")
    try:
        return named_types.bounded_array_spec(shape, dtype, minimum=bounds["minimum"], maximum=bounds["maximum"],
                                           name=msg.name or None)
    except (ValueError, TypeError) as e:
        raise CodecError(f"{what}: invalid bounds: {e}") from None
