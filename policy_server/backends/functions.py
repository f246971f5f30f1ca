"""The functions a SavedModel policy carries besides its action: `get_metadata`, and those saved with
`PolicySaver.register_function`.

SavedModelPyTFEagerPolicy forwards unknown attributes to its loaded SavedModel
(`__getattr__`), which is how users call them locally. The server finds them
on the loaded model (callable TensorFlow functions that are not the policy's
own methods), reads each one's saved input signature, and calls them on the
inference thread (`ListFunctions`, `CallFunction`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import tree

from policy_server.backends.base import TensorSignature, plain_nest, to_numpy

# The policy's own methods, served through their own RPCs.
_OWN = frozenset({"action", "distribution", "get_initial_state", "get_train_step"})


def saved_functions(loaded: Any) -> dict[str, tuple[Callable[..., Any], list[TensorSignature]]]:
    """The loaded SavedModel's other functions: name -> (the function, its input signature)."""
    found = {}
    for name in dir(loaded):
        if name.startswith("_") or name in _OWN:
            continue
        try:
            attr = getattr(loaded, name)
        except Exception:  # pylint: disable=broad-except  # a property that fails is no function
            continue
        if callable(attr) and _is_tf_function(attr):
            found[name] = (attr, _signature(attr))
    return found


def call(fn: Callable[..., Any], args: tuple) -> Any:
    """Calls a saved function with numpy arguments; its result as numpy, in plain containers."""
    return to_numpy(plain_nest(fn(*args)))


def _is_tf_function(attr: Any) -> bool:
    # A restored tf.function (RestoredFunction), or a saved signature's wrapper (get_metadata).
    return hasattr(attr, "concrete_functions") or type(attr).__name__ in ("_WrapperFunction", "RestoredFunction")


def _signature(fn: Any) -> list[TensorSignature]:
    concretes = getattr(fn, "concrete_functions", None) or []
    if not concretes:
        return []
    args, _ = concretes[0].structured_input_signature
    out = []
    for path, spec in tree.flatten_with_path(args):
        if not hasattr(spec, "shape") or not hasattr(spec, "dtype"):
            continue
        where = "args" + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in path)
        shape = tuple(None if d is None else int(d) for d in spec.shape.as_list()) if spec.shape.rank is not None \
            else ()
        out.append(TensorSignature(where, np.dtype(spec.dtype.as_numpy_dtype), shape, getattr(spec, "name", "") or ""))
    return out
