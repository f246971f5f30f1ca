"""How `policy-client` prints: nested specs with bounds, nests of values, and tables (numpy only).

Every leaf gets one row: its path in the nest (`observation['pixels']`,
`observation.position`, `observation[0]`), dtype, shape, and its bounds or
value. Bounds that are the same for every element print as `[min, max]`,
others element by element; the dtype's extremes print as `min`/`max` of the
dtype (e.g. `float32.max`), which is how TF-Agents writes infinite bounds.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from policy_client.cli.inputs import is_leaf_spec

_ARRAY = {"precision": 6, "threshold": 12, "edgeitems": 3, "max_line_width": 100, "separator": ", "}


def rows(nest: Any, path: str = "") -> list[tuple[str, Any]]:
    """(path, leaf) of every leaf of a nest of specs or values, in order; an empty nest is one row of ()."""
    if nest is None or is_leaf_spec(nest) or isinstance(nest, (np.ndarray, np.generic, int, float, bool, str,
                                                                   bytes)):
        return [(path, nest)]
    if isinstance(nest, Mapping):
        items = [(f"{path}[{k!r}]", v) for k, v in nest.items()]
    elif isinstance(nest, tuple) and hasattr(type(nest), "_fields"):
        items = [(f"{path}.{f}" if path else f, getattr(nest, f)) for f in type(nest)._fields]
    elif isinstance(nest, (list, tuple)):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(nest)]
    else:
        return [(path, nest)]
    if not items:
        return [(path, ())]
    return [row for child_path, child in items for row in rows(child, child_path)]


def format_specs(title: str, spec: Any) -> list[str]:
    """`title` and one indented line per leaf spec (dtype, shape, bounds)."""
    found = rows(spec)
    if _empty(found):
        return [f"{title}: ()"]
    if len(found) == 1 and not found[0][0]:
        return [f"{title}: {_spec_line(found[0][1], title)}"]
    width = max(len(path) for path, _ in found)
    return [f"{title}:"] + [f"  {path.ljust(width)}  {_spec_line(leaf, _last_key(path))}" for path, leaf in found]


def _empty(found: list[tuple[str, Any]]) -> bool:
    """Whether rows() found only an empty nest (or None) at the root."""
    if len(found) != 1 or found[0][0]:
        return False
    leaf = found[0][1]
    return leaf is None or (isinstance(leaf, (tuple, list, dict)) and not leaf)


def _spec_line(leaf: Any, key: str) -> str:
    if not is_leaf_spec(leaf):
        return repr(leaf)
    name = f"  name={leaf.name!r}" if leaf.name and leaf.name != key else ""
    return f"{describe_dtype(leaf.dtype):8s} {str(tuple(leaf.shape)):10s}{format_bounds(leaf)}{name}".rstrip()


def _last_key(path: str) -> str:
    return path.rsplit(".", 1)[-1].rsplit("[", 1)[-1].strip("]'\"")


def describe_dtype(dtype: Any) -> str:
    dtype = np.dtype(dtype)
    return "string" if dtype.kind in "OSU" else str(dtype)


def format_bounds(spec: Any) -> str:
    """"[min, max]" of a bounded spec (element by element when they differ), "" for an unbounded one."""
    if not (hasattr(spec, "minimum") and hasattr(spec, "maximum")):
        return ""
    low, high = np.asarray(spec.minimum), np.asarray(spec.maximum)
    if _uniform(low) and _uniform(high):
        return f"[{_scalar(low.flat[0], spec.dtype)}, {_scalar(high.flat[0], spec.dtype)}]"
    return f"min {_elements(low, spec.dtype)}  max {_elements(high, spec.dtype)}"


def _uniform(array: np.ndarray) -> bool:
    return array.size <= 1 or bool(np.all(array == array.flat[0]))


def _scalar(value: Any, dtype: Any) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        info = np.finfo(dtype)
        if value == info.max:
            return f"{dtype}.max"
        if value == info.min:
            return f"-{dtype}.max"
        return f"{float(value):.7g}"
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return f"{dtype}.max" if value == info.max else f"{dtype}.min" if value == info.min and value else str(value)
    return repr(value.item() if hasattr(value, "item") else value)


def _elements(array: np.ndarray, dtype: Any) -> str:
    flat = [_scalar(v, dtype) for v in array.flat[:_ARRAY["threshold"]]]
    more = ", ..." if array.size > _ARRAY["threshold"] else ""
    return f"[{', '.join(flat)}{more}]" + (f" (shape {array.shape})" if array.ndim > 1 else "")


def format_value(value: Any) -> str:
    """A leaf value on one line (numpy's compact form)."""
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.dtype.kind in "OSU":
            return repr(array.tolist())
        return np.array2string(array, **_ARRAY).replace("\n", " ")
    return repr(value)


def format_values(title: str, nest: Any) -> list[str]:
    """`title` and one line per leaf value (dtype, shape, value)."""
    found = rows(nest)
    if _empty(found):
        return [f"{title}: ()"]
    if len(found) == 1 and not found[0][0]:
        return [f"{title}: {_leaf_line(found[0][1])}"]
    width = max(len(path) for path, _ in found)
    return [f"{title}:"] + [f"  {path.ljust(width)}  {_leaf_line(leaf)}" for path, leaf in found]


def _leaf_line(leaf: Any) -> str:
    if isinstance(leaf, (np.ndarray, np.generic)):
        array = np.asarray(leaf)
        return f"{describe_dtype(array.dtype):8s} {str(array.shape):10s}{format_value(array)}"
    return format_value(leaf)


def table(headers: Sequence[str], body: Iterable[Sequence[Any]]) -> list[str]:
    """Left-aligned columns (numbers right-aligned)."""
    body = [[_cell(c) for c in row] for row in body]
    widths = [max([len(h)] + [len(row[i]) for row in body]) for i, h in enumerate(headers)]
    numeric = [all(_is_number(row[i]) for row in body) and bool(body) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric)).rstrip()

    return [line(list(headers))] + [line(row) for row in body]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
