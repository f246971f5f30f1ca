"""What a hosted policy's code returned or raised, carried back from the inference thread as a value.

asyncio cannot carry every exception out of a thread: `StopIteration` cannot
be set on a future at all (the awaiting call is never answered, and the
policy's scheduler loop, which awaits it, stops for good), and the
`BaseException`s that are not `Exception`s (`KeyboardInterrupt`,
`SystemExit`, `GeneratorExit`, `asyncio.CancelledError`) would end the task or
the event loop that awaits them. So every call into a policy runs through
`capture`, which returns what it raised as a `Raised` value, and the awaiting
side turns that back into an exception with `unwrap`: the exception itself
when asyncio can carry it, else the `RemoteError` it is answered with
(`portable`), which names its type so that the client raises that type
(a `StopIteration` from `get_initial_state` arrives as one, as locally).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Callable

import grpc

from policy_client.wire import errors, raised, status
from policy_server.backends.base import Backend

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Raised:
    """An exception a call raised, held as a value."""

    error: BaseException


def capture(fn: Callable[[], Any]) -> Any:
    """fn(), or `Raised(what it raised)`: every exception, StopIteration and BaseExceptions included.

    Only a `KeyboardInterrupt` on the main thread propagates: there it may be
    a real Ctrl-C (a policy run inline on the event loop of a server in the
    main thread). On another thread it can only come from the policy's code.
    """
    try:
        return fn()
    except BaseException as e:  # pylint: disable=broad-except
        if isinstance(e, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
            raise
        return Raised(e)


def unwrap(outcome: Any) -> Any:
    """The value of a `capture`d call; raises what it raised (as `portable` gives it)."""
    if isinstance(outcome, Raised):
        error = portable(outcome.error)
        raise error
    return outcome


def portable(error: BaseException) -> BaseException:
    """`error` when asyncio can carry it (an Exception, not StopIteration/StopAsyncIteration), else
    the RemoteError it is answered with (its type travels by name)."""
    if isinstance(error, Exception) and not isinstance(error, (StopIteration, StopAsyncIteration)):
        return error
    logger.warning("the policy's code raised %s (answered as an error)", type(error).__name__, exc_info=error)
    return raised.from_policy(error)


def guarded(fn: Callable[[], Any], backend: Backend) -> Any:
    """fn(), or the RemoteError its exception is answered with."""
    outcome = capture(fn)
    return logged_error(outcome.error, backend) if isinstance(outcome, Raised) else outcome


def logged_error(error: BaseException, backend: Backend | None = None) -> errors.RemoteError:
    """The RemoteError answering an exception of the policy's code (`status.as_remote_error`, the one
    mapping), logged: INTERNAL ones with their traceback, a policy refusing its input as one line."""
    remote = status.as_remote_error(error)
    if isinstance(error, (errors.RemoteError, errors.FieldError)):
        return remote  # refused on purpose (e.g. a seed the backend cannot take): the answer says it all
    kind = backend.kind if backend is not None else "hosted"
    if remote.code == grpc.StatusCode.INTERNAL:
        logger.error("inference failed on %s backend", kind, exc_info=error)
    else:  # the policy refused its input, as it would locally: the caller gets the exception
        logger.info("the %s policy raised %s: %s", kind, type(error).__name__, error)
    return remote
