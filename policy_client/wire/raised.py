"""Exceptions a hosted policy raised, carried to the caller with their type.

A local policy that rejects its input raises `ValueError`, `TypeError` or
`tf.errors.InvalidArgumentError`, and code written for it catches exactly
those. When the hosted policy raises, the server answers with:

- a status code chosen by the exception type (`code_for`): INVALID_ARGUMENT
  for input errors (`ValueError`, `TypeError`, `LookupError` and their
  subclasses, TensorFlow's `InvalidArgumentError` and `OutOfRangeError`),
  UNIMPLEMENTED for `NotImplementedError`, INTERNAL for anything else. Never
  a retryable code (UNAVAILABLE, RESOURCE_EXHAUSTED, ...), so a policy error
  is not resent, even when its type is `ConnectionError` or `TimeoutError`;
- the message of the exception, unchanged;
- `google.rpc.ErrorInfo.metadata["exception"]`: the qualified name of the
  nearest portable type in the exception's class hierarchy, e.g.
  "builtins.ValueError" or "tensorflow.errors.InvalidArgumentError".

The client raises a class that is both its own `RemoteError` for the code and
that type (`with_local_type`), so `except ValueError` and `except
RemoteError` both catch it. Only the builtin types in `BUILTIN` and
TensorFlow's `tf.errors` classes are rebuilt, the latter only when the client
process has TensorFlow loaded already: a server never makes a client import
anything. A subclass of them travels as the nearest one (a policy's own
`class SpecError(ValueError)` arrives as a `ValueError`); any other type
(the policy's own `Exception` subclasses, `SystemExit`, `KeyboardInterrupt`,
`GeneratorExit`, `ExceptionGroup`) arrives as `InternalError`, its type name
as `reason`. Only the message travels: attributes such as `OSError.errno`,
`KeyError.args[0]` or `StopIteration.value` are rebuilt from the message
(the constructor of the type called with it) or left unset.

A rebuilt `StopIteration` behaves as one: raised inside a generator it becomes
`RuntimeError` (PEP 479), as the local policy's would.
"""

from __future__ import annotations

import builtins
import sys
from typing import Any

import grpc

from policy_client.wire import errors

METADATA_KEY = "exception"
TF_PREFIX = "tensorflow.errors."
# Builtin exception types rebuilt on the client (a subclass travels as its nearest one of these).
BUILTIN = frozenset((
    "ValueError", "UnicodeError", "UnicodeDecodeError", "UnicodeEncodeError", "UnicodeTranslateError",
    "TypeError", "LookupError", "KeyError", "IndexError",
    "ArithmeticError", "ZeroDivisionError", "OverflowError", "FloatingPointError",
    "AttributeError", "NameError", "UnboundLocalError", "ImportError", "ModuleNotFoundError",
    "RuntimeError", "NotImplementedError", "RecursionError", "AssertionError",
    "OSError", "FileNotFoundError", "FileExistsError", "PermissionError", "IsADirectoryError",
    "NotADirectoryError", "TimeoutError", "InterruptedError", "BlockingIOError", "ChildProcessError",
    "ProcessLookupError", "ConnectionError", "BrokenPipeError", "ConnectionAbortedError",
    "ConnectionRefusedError", "ConnectionResetError",
    "MemoryError", "BufferError", "EOFError", "ReferenceError", "SystemError",
    "StopIteration", "StopAsyncIteration"))
_INPUT_ERRORS = (ValueError, TypeError, LookupError)
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
    builtin = _builtin(name)
    if builtin is not None and issubclass(builtin, _INPUT_ERRORS) or name.startswith(TF_PREFIX) and \
            short in _TF_INPUT_ERRORS:
        return grpc.StatusCode.INVALID_ARGUMENT
    if builtin is not None and issubclass(builtin, NotImplementedError):
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
    try:
        rebuilt = combined.__new__(combined)
    except TypeError:  # a base whose __new__ is not the one the class got (MemoryError's free list)
        rebuilt = BaseException.__new__(combined)
    try:  # what the type's own constructor makes of the message (OSError.strerror, StopIteration.value, ...)
        local.__init__(rebuilt, error.details)
    except TypeError:  # a constructor that needs more (UnicodeDecodeError, tf.errors.OpError)
        Exception.__init__(rebuilt, error.details)
    rebuilt.fill(error.details, error.code, error.fields, error.reason, error.exception_type)
    rebuilt.retry_delay = error.retry_delay
    if hasattr(local, "error_code"):  # a tf.errors.OpError: fill what its __init__ would
        rebuilt._node_def, rebuilt._op, rebuilt._message = None, None, error.details  # pylint: disable=protected-access
        rebuilt._error_code = _tf_code(local, error.code.value[0])  # pylint: disable=protected-access
        rebuilt._experimental_payloads = {}  # pylint: disable=protected-access
    return rebuilt


def _builtin(name: str) -> type | None:
    short = name[len("builtins."):]
    return getattr(builtins, short) if name.startswith("builtins.") and short in BUILTIN else None


def _resolve(name: str) -> type | None:
    if name.startswith("builtins."):
        return _builtin(name)
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


def _tf_code(cls: type, default: int) -> int:
    """The error code a tf.errors class carries (its own, e.g. NOT_FOUND for NotFoundError)."""
    impl = getattr(sys.modules.get("tensorflow.python.framework.errors_impl"), "error_code_from_exception_type", None)
    try:
        return int(impl(cls)) if impl is not None else default
    except (KeyError, TypeError, ValueError):
        return default
