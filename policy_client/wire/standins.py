"""Numpy-only stand-ins for TF-Agents' specs and step tuples.

The client core must import without TensorFlow, and `tf_agents.specs` imports
it. The codec decodes into these unless TF-Agents' own classes are registered
(`policy_client.wire.tf_agents_types.register`, which RemotePolicy and the
server do); they have the same fields, the same `==` and the same repr format.
"""

from __future__ import annotations

import collections
import numbers
from typing import Any, Iterable

import numpy as np


def _dtype_range(dtype: np.dtype) -> tuple[Any, Any] | None:
    """The (lowest, highest) finite values of a numeric dtype, None for others."""
    if dtype.kind == "b":
        return False, True
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return info.min, info.max
    if dtype.kind == "f":
        info = np.finfo(dtype)
        return info.min, info.max
    try:  # bfloat16 and friends: numpy cannot describe them, ml_dtypes can.
        import ml_dtypes

        info = ml_dtypes.finfo(dtype)
        return info.min, info.max
    except (ImportError, ValueError, TypeError):
        return None


class ArraySpec:
    """Shape, dtype and name of a numpy array (as tf_agents' ArraySpec)."""

    __hash__ = None  # type: ignore[assignment]
    __slots__ = ("_shape", "_dtype", "_name")

    def __init__(self, shape: Iterable[int], dtype: Any, name: str | None = None):
        self._shape = tuple(int(d) for d in shape)
        self._dtype = np.dtype(dtype)
        self._name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def name(self) -> str | None:
        return self._name

    def __repr__(self) -> str:
        return f"ArraySpec(shape={self.shape}, dtype={self.dtype!r}, name={self.name!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArraySpec):
            return False
        return self.shape == other.shape and self.dtype == other.dtype

    def check_array(self, array: Any) -> bool:
        """Returns whether `array` is an ndarray (or number) of this shape and dtype."""
        if isinstance(array, np.ndarray):
            return array.shape == self.shape and array.dtype == self.dtype
        if isinstance(array, numbers.Number):
            return self.shape == () and self.dtype == np.dtype(type(array))
        return False


class BoundedArraySpec(ArraySpec):
    """An ArraySpec with inclusive minimum and maximum (scalar or per element).

    As TF-Agents' BoundedArraySpec: a missing bound defaults to the dtype's
    range, infinite float bounds become the dtype's finite extremes, and
    bounds must broadcast to the shape, lie in the dtype's range and have
    minimum <= maximum.
    """

    __hash__ = None  # type: ignore[assignment]
    __slots__ = ("_minimum", "_maximum")

    def __init__(self, shape: Iterable[int], dtype: Any, minimum: Any = None,
                 maximum: Any = None, name: str | None = None):
        """Initializes the spec.

        Args:
          shape: The array shape.
          dtype: The numpy dtype.
          minimum: Inclusive lower bound, broadcastable to `shape`; None for
            the dtype's lowest value.
          maximum: Inclusive upper bound, broadcastable to `shape`; None for
            the dtype's highest value.
          name: Optional name.

        Raises:
          ValueError: bounds that do not broadcast to `shape`, lie outside the
            dtype's range, or have minimum > maximum.
          TypeError: a missing bound for a dtype without a range (strings).
        """
        super().__init__(shape, dtype, name)
        dtype_range = _dtype_range(self.dtype)
        bounds = []
        for what, bound, index in (("minimum", minimum, 0), ("maximum", maximum, 1)):
            if bound is None:
                if dtype_range is None:
                    raise TypeError(f"{what} is required for dtype {self.dtype}")
                bound = dtype_range[index]
            try:
                np.broadcast_to(bound, self.shape)
            except ValueError as e:
                raise ValueError(f"{what} is not compatible with shape {self.shape}: {e}") from None
            bound = np.array(bound)
            if dtype_range is not None and self.dtype.kind in "fV" and bound.dtype.kind in "fV":
                bound[bound == -np.inf] = dtype_range[0]
                bound[bound == np.inf] = dtype_range[1]
            bounds.append(bound)
        low, high = bounds
        if np.any(low > high):
            raise ValueError(f"Spec bounds min has values greater than max: [{low},{high}]")
        if dtype_range is not None and any(
                np.any(b < dtype_range[0]) or np.any(b > dtype_range[1]) for b in bounds):
            raise ValueError(f"Spec bounds [{low},{high}] not within the range "
                             f"[{dtype_range[0]}, {dtype_range[1]}] of the given dtype ({self.dtype})")
        self._minimum = low.astype(self.dtype)
        self._maximum = high.astype(self.dtype)
        self._minimum.setflags(write=False)
        self._maximum.setflags(write=False)

    @property
    def minimum(self) -> np.ndarray:
        return self._minimum

    @property
    def maximum(self) -> np.ndarray:
        return self._maximum

    def __repr__(self) -> str:
        return (f"BoundedArraySpec(shape={self.shape}, dtype={self.dtype!r}, name={self.name!r}, "
                f"minimum={self._minimum}, maximum={self._maximum})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BoundedArraySpec):
            return False
        return (super().__eq__(other) and bool(np.all(self.minimum == other.minimum))
                and bool(np.all(self.maximum == other.maximum)))

    def check_array(self, array: Any) -> bool:
        """Returns whether `array` conforms to shape, dtype and bounds."""
        return (super().check_array(array) and bool(np.all(array >= self.minimum))
                and bool(np.all(array <= self.maximum)))


TimeStep = collections.namedtuple("TimeStep", ["step_type", "reward", "discount", "observation"])
PolicyStep = collections.namedtuple("PolicyStep", ["action", "state", "info"])
Trajectory = collections.namedtuple(
    "Trajectory",
    ["step_type", "observation", "action", "policy_info", "next_step_type", "reward", "discount"])


class PolicySpecs(collections.namedtuple(
        "PolicySpecs",
        ["time_step_spec", "action_spec", "policy_state_spec", "info_spec", "collect_data_spec"])):
    """Every spec of a policy; collect_data_spec is None when unknown."""

    __slots__ = ()
