"""Exact comparison of a local answer with the remote one: containers, leaf types, dtypes, shapes, values.

Values are compared with `==` (np.array_equal, NaN equal to NaN; dtype and
shape equal too): no tolerance, unless a comparison passes `ulps` (float
leaves then may differ by that many units in the last place; the matrix does
so for one case only, where it says why). Leaf types must be the same, except for the
differences docs/exactly-like-local.md lists under "Remaining differences of type" (the
allow-list LEAF_TYPE_DIFFERENCES, by name); a comparison names the ones that
can occur in what it compares, and any other leaf-type difference fails.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import tensorflow as tf

# name -> (the local leaf type, what docs/exactly-like-local.md says). The remote leaf is always a numpy ndarray.
LEAF_TYPE_DIFFERENCES: dict[str, tuple[type, str]] = {
    "tf_state": (tf.Tensor, ("a TF policy's state leaves are EagerTensors locally (PyTFEagerPolicy returns the "
                             "policy's own state tensors), numpy arrays remotely")),
    "tf_batched_step": (tf.Tensor, ("for a batched time step, PyTFEagerPolicy(batch_time_steps=False) returns the "
                                    "action and info as EagerTensors too; remotely they are numpy arrays")),
    "numpy_scalar": (np.generic, "numpy scalars a Python policy returns (np.int32(1)) come back as 0-d ndarrays"),
    "tensor_passed_back": (tf.Tensor, ("a tf.Tensor a Python policy returns (one the caller passed in and it hands "
                                       "back, as ScriptedPyPolicy does with its state) comes back as a numpy array")),
}


def normalized(nest: Any) -> Any:
    """The containers of a nest (Keras-tracked ones as plain; dict keys sorted), leaves as 'leaf'."""
    nest = getattr(nest, "__wrapped__", nest)
    if isinstance(nest, tuple) and hasattr(type(nest), "_fields"):
        return (f"{type(nest).__module__}.{type(nest).__qualname__}", tuple(normalized(v) for v in nest))
    if isinstance(nest, dict) or type(nest).__name__ == "_DictWrapper":
        return ("dict", tuple((k, normalized(nest[k])) for k in sorted(nest)))
    if isinstance(nest, (list, tuple)) or type(nest).__name__ == "ListWrapper":
        return ("list" if isinstance(nest, list) or type(nest).__name__ == "ListWrapper" else "tuple",
                tuple(normalized(v) for v in nest))
    return "leaf"


def assert_same(local: Any, remote: Any, allow: Iterable[str] = (), ulps: int = 0) -> None:
    """Same containers; every leaf of the same type (but for the `allow`ed differences) and value.

    Array leaves (ndarray, numpy scalar, tensor): same dtype and shape, and
    np.array_equal (NaN == NaN). Other leaves (ScriptedPyPolicy's Python ints,
    None): same type and ==.
    """
    allow = frozenset(allow)
    unknown = allow - set(LEAF_TYPE_DIFFERENCES)
    assert not unknown, f"not a documented difference: {sorted(unknown)}"
    assert normalized(local) == normalized(remote)
    for index, (a, b) in enumerate(zip(tf.nest.flatten(local), tf.nest.flatten(remote))):
        where = f"leaf {index} of {normalized(local)}"
        if type(a) is not type(b):
            documented = [name for name in allow if isinstance(a, LEAF_TYPE_DIFFERENCES[name][0])]
            assert documented and type(b) is np.ndarray, \
                f"undocumented leaf-type difference at {where}: local {type(a).__name__}, remote {type(b).__name__}"
        if isinstance(a, (np.ndarray, np.generic, tf.Tensor)):
            assert_arrays_equal(np.asarray(a), b, where, ulps)
        else:
            assert a == b, f"{a!r} != {b!r} at {where}"


def assert_arrays_equal(a: np.ndarray, b: Any, where: str = "", ulps: int = 0) -> None:
    """Same dtype, shape and values (`==`; NaN equal to NaN in float and complex arrays).

    ulps > 0: floats may differ by that many units in the last place (NaNs still where they are).
    """
    assert isinstance(b, np.ndarray), f"remote leaf is {type(b).__name__}, not an ndarray ({where})"
    assert a.dtype == b.dtype and a.shape == b.shape, f"{a.dtype}{a.shape} != {b.dtype}{b.shape} ({where})"
    if ulps and np.issubdtype(a.dtype, np.floating):
        assert np.array_equal(np.isnan(a), np.isnan(b)), f"NaNs differ at {where}"
        np.testing.assert_array_max_ulp(np.nan_to_num(a), np.nan_to_num(b), maxulp=ulps)
        return
    exact = np.array_equal(a, b, equal_nan=np.issubdtype(a.dtype, np.inexact))
    assert exact, f"values differ at {where}: max |local - remote| = {_largest_difference(a, b)}"


def _largest_difference(a: np.ndarray, b: np.ndarray) -> Any:
    try:
        return np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))
    except (TypeError, ValueError):
        return "(not numbers)"


def raised(call) -> BaseException:
    """The exception `call()` raises (an AssertionError if it raises none): to compare local and remote errors."""
    try:
        call()
    except Exception as e:  # pylint: disable=broad-except  # the caller compares it
        return e
    raise AssertionError("no error")
