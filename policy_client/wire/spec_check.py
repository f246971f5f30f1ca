"""Checks a nest of numpy arrays against a nest of array specs, naming the field."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from policy_client.wire.errors import SpecMismatchError
from policy_client.wire.specs import is_spec

__all__ = ["SpecMismatchError", "check_nest"]


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, (tuple, list, dict)) and not value)


def _describe_dtype(dtype: np.dtype) -> str:
    return "string" if dtype.kind in "OSU" else str(dtype)


def check_nest(value: Any, spec: Any, *, outer_shape: Sequence[int] = (), path: str = "") -> None:
    """Raises SpecMismatchError unless `value` matches `spec` with `outer_shape`.

    Containers must match in kind (mapping, named tuple fields, sequence length;
    lists and tuples are interchangeable). Leaves must be numpy arrays of the
    spec's dtype whose shape is `outer_shape + spec.shape`. An empty spec nest
    (no state, no info) matches any empty value or None.

    Args:
      value: the nest to check.
      spec: the nest of specs it should match.
      outer_shape: batch dimensions every leaf carries in front of its spec.
      path: how to name the root in messages (e.g. "time_step").

    Raises:
      SpecMismatchError: the first mismatch found, naming the field, what was
        expected and what was got.
    """
    _check(value, spec, tuple(outer_shape), path or "value")


def _check(value: Any, spec: Any, outer: tuple[int, ...], path: str) -> None:
    if is_spec(spec):
        _check_leaf(value, spec, outer, path)
    elif isinstance(spec, Mapping):
        _check_mapping(value, spec, outer, path)
    elif isinstance(spec, tuple) and hasattr(type(spec), "_fields"):
        fields = type(spec)._fields
        if not (isinstance(value, tuple) and getattr(type(value), "_fields", None) == fields):
            raise SpecMismatchError(
                f"{path}: expected a {type(spec).__name__} with fields {list(fields)}, "
                f"got {_kind(value)}", path)
        for name in fields:
            _check(getattr(value, name), getattr(spec, name), outer, f"{path}.{name}")
    elif isinstance(spec, (list, tuple)):
        if not spec:
            if not _is_empty(value):
                raise SpecMismatchError(f"{path}: expected an empty nest (), got {_kind(value)}", path)
            return
        if not isinstance(value, (list, tuple)) or len(value) != len(spec):
            raise SpecMismatchError(f"{path}: expected a sequence of {len(spec)} items, got {_kind(value)}", path)
        for i, (v, s) in enumerate(zip(value, spec)):
            _check(v, s, outer, f"{path}[{i}]")
    elif spec is None:
        if value is not None:
            raise SpecMismatchError(f"{path}: expected None, got {_kind(value)}", path)
    else:
        raise SpecMismatchError(f"{path}: unsupported spec {spec!r}", path)


def _check_mapping(value: Any, spec: Mapping, outer: tuple[int, ...], path: str) -> None:
    if not spec:
        if not _is_empty(value):
            raise SpecMismatchError(f"{path}: expected an empty mapping, got {_kind(value)}", path)
        return
    if not isinstance(value, Mapping):
        raise SpecMismatchError(f"{path}: expected a mapping with keys {sorted(spec)}, got {_kind(value)}", path)
    if set(value) != set(spec):
        missing, extra = sorted(set(spec) - set(value)), sorted(set(value) - set(spec), key=str)
        raise SpecMismatchError(f"{path}: expected keys {sorted(spec)}; missing {missing}, unexpected {extra}", path)
    for key in spec:
        _check(value[key], spec[key], outer, f"{path}[{key!r}]")


def _check_leaf(value: Any, spec: Any, outer: tuple[int, ...], path: str) -> None:
    shape = outer + tuple(spec.shape)
    spec_dtype = spec.dtype
    if (isinstance(value, np.ndarray) and value.shape == shape
            and (value.dtype == spec_dtype or (value.dtype.kind in "OSU" and np.dtype(spec_dtype).kind in "OSU"))):
        return
    expected = f"shape {shape} and dtype {_describe_dtype(np.dtype(spec_dtype))}"
    if not isinstance(value, np.ndarray):
        raise SpecMismatchError(f"{path}: expected an array of {expected}, got {_kind(value)}", path)
    raise SpecMismatchError(
        f"{path}: expected {expected}, got shape {value.shape} and dtype {_describe_dtype(value.dtype)}", path)


def _kind(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):
        return f"a {type(value).__name__} with fields {list(type(value)._fields)}"
    if isinstance(value, Mapping):
        return f"a mapping with keys {sorted(value, key=str)}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"{type(value).__name__} {value!r}"[:120]
