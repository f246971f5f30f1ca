"""Exceptions a hosted policy raised, carried to the caller with their type.

A local policy that rejects its input raises `ValueError`, `TypeError` or
`tf.errors.InvalidArgumentError`, and code written for it catches exactly
those. When the hosted policy raises, the server answers with:

- a status code chosen by the exception type (`code_for`): INVALID_ARGUMENT
  for input errors (`ValueError`, `TypeError`, `LookupError`, TensorFlow's
  `InvalidArgumentError` and `OutOfRangeError`), UNIMPLEMENTED for
  `NotImplementedError`, INTERNAL for anything else. Never a retryable code
  (UNAVAILABLE, RESOURCE_EXHAUSTED, ...), so a policy error is not resent;
- the message of the exception, unchanged;
- `google.rpc.ErrorInfo.metadata["exception"]`: the qualified name of the
  nearest portable type in the exception's class hierarchy, e.g.
  "builtins.ValueError" or "tensorflow.errors.InvalidArgumentError".

The client raises a class that is both its own `RemoteError` for the code and
that type (`with_local_type`), so `except ValueError` and `except
RemoteError` both catch it. Only the builtin types in `BUILTIN` and
TensorFlow's `tf.errors` classes are rebuilt, the latter only when the client
process has TensorFlow loaded already: a server never makes a client import
anything.
"""

from __future__ import annotations

import builtins
import sys
from typing import Any

import grpc

from policy_client.wire import errors

METADATA_KEY = "exception"
TF_PREFIX = "tensorflow.errors."
# Builtin exception types rebuilt on the client, most specific first.
BUILTIN = ("KeyError", "IndexError", "LookupError", "ZeroDivisionError", "OverflowError", "FloatingPointError",
           "ArithmeticError", "NotImplementedError", "RecursionError", "RuntimeError", "AssertionError",
           "TypeError", "ValueError", "AttributeError")
_INPUT_ERRORS = ("ValueError", "TypeError", "LookupError", "KeyError", "IndexError")
_TF_INPUT_ERRORS = ("InvalidArgumentError", "OutOfRangeError")
_COMBINED: dict[tuple[type, type], type] = {}


def portable_name(error: BaseException) -> str:
    """The qualified name of the nearest rebuildable type of `error` ('' when none)."""
    for cls in type(error).__mro__:
        if cls.__module__ == "builtins" and cls.__name__ in BUILTIN:
            return f"builtins.{cls.__name__}"
        if cls.__module__.startswith("tensorflow.") and _tf_error(cls.__name__) is cls:
            return TF_PREFIX + cls.__name__
    return ""


def code_for(name: str) -> grpc.StatusCode:
    """The status code a policy's exception of portable type `name` travels with."""
    short = name.rsplit(".", 1)[-1]
    if name.startswith("builtins.") and short in _INPUT_ERRORS or name.startswith(TF_PREFIX) and \
            short in _TF_INPUT_ERRORS:
        return grpc.StatusCode.INVALID_ARGUMENT
    if name == "builtins.NotImplementedError":
        return grpc.StatusCode.UNIMPLEMENTED
    return grpc.StatusCode.INTERNAL


def from_policy(error: BaseException) -> errors.RemoteError:
    """The RemoteError answering an exception that the hosted policy raised."""
    name = portable_name(error)
    code = code_for(name)
    cls = errors.BY_CODE.get(code, errors.RemoteError)
    message = str(error) if name else f"{type(error).__name__}: {error}"
    return cls(message, None if cls is not errors.RemoteError else code, reason=type(error).__name__,
               exception_type=name)


def with_local_type(error: errors.RemoteError) -> errors.RemoteError:
    """`error` as an instance of a class that also derives from its `exception_type`.

    Unknown or unavailable types leave `error` as it is.
    """
    local = _resolve(error.exception_type)
    if local is None or isinstance(error, local):
        return error
    combined = _combined(type(error), local)
    if combined is None:
        return error
    rebuilt = combined.__new__(combined)
    Exception.__init__(rebuilt, error.details)
    rebuilt.fill(error.details, error.code, error.fields, error.reason, error.exception_type)
    if hasattr(local, "error_code"):  # a tf.errors.OpError: fill what its __init__ would
        rebuilt._node_def, rebuilt._op, rebuilt._message = None, None, error.details  # pylint: disable=protected-access
        rebuilt._error_code = error.code.value[0]  # pylint: disable=protected-access
        rebuilt._experimental_payloads = {}  # pylint: disable=protected-access
    return rebuilt


def _resolve(name: str) -> type | None:
    if name.startswith("builtins.") and name[len("builtins."):] in BUILTIN:
        return getattr(builtins, name[len("builtins."):])
    if name.startswith(TF_PREFIX):
        return _tf_error(name[len(TF_PREFIX):])
    return None


def _tf_error(short: str) -> type | None:
    tf = sys.modules.get("tensorflow")
    tf_errors = getattr(tf, "errors", None) if tf is not None else None
    cls = getattr(tf_errors, short, None) if tf_errors is not None else None
    return cls if isinstance(cls, type) and issubclass(cls, Exception) else None


def _combined(remote: type, local: type) -> type | None:
    key = (remote, local)
    if key not in _COMBINED:
        try:
            _COMBINED[key] = type(f"Remote{local.__name__}", (remote, local), {
                "__str__": _message, "__module__": __name__,
                "__doc__": f"{local.__name__} raised by the hosted policy (also a {remote.__name__})."})
        except TypeError:  # incompatible layouts (e.g. AttributeError's own fields)
            _COMBINED[key] = None  # type: ignore[assignment]
    return _COMBINED[key]


def _message(self: Any) -> str:
    return self.details
