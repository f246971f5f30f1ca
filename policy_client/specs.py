"""Numpy-only stand-ins for TF-Agents' specs and step tuples.

The client core must import without TensorFlow, and `tf_agents.specs` imports
it. When `tf_agents` is already imported the codec decodes into TF-Agents' own
classes; otherwise into these, which have the same fields, the same `==` and
the same repr format.
"""

from __future__ import annotations

import collections
from typing import Any, Iterable

import numpy as np


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
        """Returns whether `array` is an ndarray of this shape and dtype."""
        return isinstance(array, np.ndarray) and array.shape == self.shape and array.dtype == self.dtype


class BoundedArraySpec(ArraySpec):
    """An ArraySpec with inclusive minimum and maximum (scalar or per element)."""

    __hash__ = None  # type: ignore[assignment]
    __slots__ = ("_minimum", "_maximum")

    def __init__(self, shape: Iterable[int], dtype: Any, minimum: Any, maximum: Any,
                 name: str | None = None):
        super().__init__(shape, dtype, name)
        self._minimum = np.array(minimum, dtype=self.dtype)
        self._maximum = np.array(maximum, dtype=self.dtype)
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
        return (super().__eq__(other) and bool((self.minimum == other.minimum).all())
                and bool((self.maximum == other.maximum).all()))

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
