"""Values for `policy-client act` and `push`/`pull`: random valid time steps, JSON and npz files (numpy only).

Random values follow the specs: bounded specs are sampled within their bounds
(floats within [-1, 1] where the bounds allow it, so that huge float32 bounds
such as CartPole's do not give absurd observations), unbounded floats from a
standard normal, unbounded integers from [-10, 10]. A time step's step_type is
FIRST for the first step and MID after it, its discount 1.

Files name the time step's fields as paths: in JSON an object with
`observation` (and optionally `step_type`, `reward`, `discount`), nested as
the specs are (objects for dicts and named tuples, arrays for lists and
tuples); in npz the same paths joined by "/" ("observation/pixels",
"observation/0"). Leaves with one more leading dimension than their spec are
a batch.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping

import numpy as np
import tree

from policy_client.wire.standins import TimeStep

FIRST, MID = 0, 1
_FIELDS = ("step_type", "reward", "discount", "observation")


def is_leaf_spec(spec: Any) -> bool:
    return hasattr(spec, "shape") and hasattr(spec, "dtype") and not isinstance(spec, (np.ndarray, np.generic))


def map_spec(fn: Callable[[Any, str], Any], spec: Any, path: str = "") -> Any:
    """`spec` with every leaf spec replaced by fn(leaf, path) (path: "a/b/0"); containers are kept."""
    if is_leaf_spec(spec) or spec is None:
        return fn(spec, path) if spec is not None else None
    join = (lambda key: f"{path}/{key}" if path else str(key))
    if isinstance(spec, Mapping):
        return type(spec)((k, map_spec(fn, v, join(k))) for k, v in spec.items())
    if isinstance(spec, tuple) and hasattr(type(spec), "_fields"):
        return type(spec)(*(map_spec(fn, getattr(spec, f), join(f)) for f in type(spec)._fields))
    if isinstance(spec, (list, tuple)):
        return type(spec)(map_spec(fn, v, join(i)) for i, v in enumerate(spec))
    raise ValueError(f"{path or 'spec'}: unsupported spec {spec!r}")


def random_value(spec: Any, rng: np.random.Generator, outer: tuple[int, ...] = ()) -> np.ndarray:
    """A random array that fits `spec` (with `outer` leading dimensions)."""
    shape, dtype = outer + tuple(spec.shape), np.dtype(spec.dtype)
    if dtype.kind in "OSU":
        return np.full(shape, b"" if dtype.kind != "U" else "", dtype=dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    bounded = hasattr(spec, "minimum") and hasattr(spec, "maximum")
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low = np.broadcast_to(spec.minimum, spec.shape).astype(np.int64) if bounded else \
            np.full(spec.shape, max(-10, int(info.min)), np.int64)
        high = np.broadcast_to(spec.maximum, spec.shape).astype(np.float64) if bounded else \
            np.full(spec.shape, 10.0)
        high = np.minimum(high, np.iinfo(np.int64).max - 1).astype(np.int64)  # uint64 bounds past int64
        return rng.integers(low, high, size=shape, endpoint=True).astype(dtype)
    if not bounded:
        return rng.standard_normal(size=shape).astype(dtype)
    low = np.broadcast_to(np.asarray(spec.minimum, np.float64), spec.shape)
    high = np.broadcast_to(np.asarray(spec.maximum, np.float64), spec.shape)
    narrow_low, narrow_high = np.maximum(low, -1.0), np.minimum(high, 1.0)
    outside = narrow_low > narrow_high  # bounds that exclude [-1, 1]: the first 2 units of their own range
    narrow_low = np.where(outside, low, narrow_low)
    narrow_high = np.where(outside, np.minimum(high, low + 2.0), narrow_high)
    return np.clip(rng.uniform(narrow_low, narrow_high, size=shape).astype(dtype), spec.minimum, spec.maximum)


def random_time_step(time_step_spec: Any, rng: np.random.Generator, outer: tuple[int, ...] = (),
                     first: bool = True) -> Any:
    """A time step with random observation and reward, FIRST (or MID) and discount 1."""
    observation = map_spec(lambda s, _: random_value(s, rng, outer), time_step_spec.observation)
    reward = map_spec(lambda s, _: np.zeros(outer + tuple(s.shape), s.dtype), time_step_spec.reward)
    return TimeStep(np.full(outer, FIRST if first else MID, np.dtype(time_step_spec.step_type.dtype)), reward,
                    np.ones(outer, np.dtype(time_step_spec.discount.dtype)), observation)


def load_time_step(path: str, time_step_spec: Any) -> tuple[Any, int]:
    """(time step, batch size or 0) from a JSON or npz file (see the module doc).

    Raises:
      ValueError: unreadable file, a missing observation, values that do not fit the specs.
    """
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as data:
            values = {key: data[key] for key in data.files}
        get = (lambda key: values.pop(key, None))
    else:
        try:
            with open(path, encoding="utf-8") as f:
                document = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read {path!r}: {e}") from None
        if not isinstance(document, dict):
            raise ValueError(f"{path}: expected a JSON object with an 'observation'")
        values = {key: document.pop(key) for key in list(document) if key in _FIELDS}
        if document:
            raise ValueError(f"{path}: unknown fields {sorted(document)}; a time step has {', '.join(_FIELDS)}")
        get = _json_getter(values)
    fields = {name: _read_field(get, getattr(time_step_spec, name), name, path) for name in _FIELDS}
    if fields["observation"] is None:
        raise ValueError(f"{path}: no observation")
    if path.endswith(".npz") and values:
        raise ValueError(f"{path}: unknown arrays {sorted(values)} (expected paths under {', '.join(_FIELDS)})")
    first_leaf, first_spec = tree.flatten(fields["observation"])[0], tree.flatten(time_step_spec.observation)[0]
    outer = first_leaf.shape[:first_leaf.ndim - len(first_spec.shape)]
    if len(outer) > 1:
        raise ValueError(f"{path}: observation has shape {first_leaf.shape} for a spec of shape {first_spec.shape}")
    for name, default in (("step_type", FIRST), ("reward", 0), ("discount", 1)):
        if fields[name] is None:
            fields[name] = map_spec(lambda s, _, d=default: np.full(outer + tuple(s.shape), d, s.dtype),
                                    getattr(time_step_spec, name))
    return TimeStep(**fields), outer[0] if outer else 0


def _json_getter(values: Mapping[str, Any]) -> Callable[[str], Any]:
    def get(path: str) -> Any:
        node: Any = values
        for part in path.split("/"):
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
            if node is None:
                return None
        return node
    return get


def _read_field(get: Callable[[str], Any], spec: Any, name: str, path: str) -> Any:
    if is_leaf_spec(spec):
        value = get(name)
        return None if value is None else _as_array(value, spec, name, path)
    found = map_spec(lambda s, p: (lambda v: None if v is None else _as_array(v, s, p, path))(get(p)), spec, name)
    leaves = tree.flatten(found)
    if all(leaf is None for leaf in leaves):
        return None
    missing = [p for p, leaf in zip(_paths(spec, name), leaves) if leaf is None]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    return found


def _paths(spec: Any, root: str) -> list[str]:
    paths: list[str] = []
    map_spec(lambda s, p: paths.append(p), spec, root)
    return paths


def _as_array(value: Any, spec: Any, where: str, path: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=spec.dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {where}: cannot be {np.dtype(spec.dtype)}: {e}") from None
    if array.shape[array.ndim - len(spec.shape):] != tuple(spec.shape) or array.ndim > len(spec.shape) + 1:
        raise ValueError(f"{path}: {where}: shape {array.shape} does not fit the spec's {tuple(spec.shape)} "
                         "(with at most one batch dimension)")
    return array


def to_json(value: Any) -> Any:
    """A nest of arrays as JSON values (dicts for dicts and named tuples, lists for lists and tuples)."""
    if isinstance(value, np.ndarray) or isinstance(value, np.generic):
        array = np.asarray(value)
        if array.dtype.kind in "OS":
            return np.vectorize(lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b),
                                otypes=[object])(array).tolist() if array.size else array.tolist()
        return array.tolist()
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):
        return {f: to_json(getattr(value, f)) for f in type(value)._fields}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def save_variables(path: str, variables: list[dict[str, Any]]) -> list[str]:
    """Writes variables (VariablePublisher.variables(include_values=True)) to an npz file; returns the keys.

    Keys are the variable names when they are unique and non-empty, else "variable_<index>".
    """
    names = [v["name"] for v in variables]
    keys = names if all(names) and len(set(names)) == len(names) else [f"variable_{v['index']}" for v in variables]
    np.savez(path, **{key: np.asarray(v["value"]) for key, v in zip(keys, variables)})
    return keys


def load_variables(path: str, served: list[dict[str, Any]]) -> list[np.ndarray]:
    """The arrays of an npz file, in the served variables' order when its keys are their names.

    Raises:
      ValueError: the file cannot be read.
    """
    if not os.path.exists(path):
        raise ValueError(f"no such file {path!r}")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    names = [v["name"] for v in served]
    if set(arrays) == set(names) and len(names) == len(arrays):
        return [arrays[name] for name in names]
    return list(arrays.values())
