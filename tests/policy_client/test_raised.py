"""An exception raised by the hosted policy reaches the caller with the type the local policy raises."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import py_policy
from tf_agents.specs import array_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

from policy_client import RemoteError, RemotePolicy
from policy_client.wire import errors, raised, status
from policy_server.backends.py_policy import PyPolicyBackend
from policy_server.server import BackgroundServer


class Picky(Exception):
    """A policy's own exception type: not portable, travels as INTERNAL."""


class SpecTooNarrow(ValueError):
    """A subclass of a portable type travels as that type."""


# Factories, so that no raised exception (nor the server frames of its traceback) outlives its test.
RAISES = {1: lambda: ValueError("obs must be positive"), 2: lambda: TypeError("obs has the wrong type"),
          3: lambda: KeyError("missing"), 4: lambda: tf.errors.InvalidArgumentError(None, None, "bad tensor"),
          5: lambda: NotImplementedError("not this one"), 6: lambda: Picky("my own"),
          7: lambda: SpecTooNarrow("narrow"),
          # Every other family of the builtin types rebuilt (raised.BUILTIN), one or more each.
          8: lambda: OSError(2, "no such file"),  # OSError's constructor makes it a FileNotFoundError
          9: lambda: FileNotFoundError(2, "no such file", "policy.bin"), 10: lambda: PermissionError("denied"),
          11: lambda: IsADirectoryError("a directory"), 12: lambda: OSError("plain os error"),
          13: lambda: ConnectionResetError("peer reset"), 14: lambda: TimeoutError("too slow"),
          15: lambda: MemoryError("out of memory"), 16: lambda: StopIteration("no more steps"),
          17: lambda: StopAsyncIteration("no more async steps"), 18: lambda: ZeroDivisionError("division by zero"),
          19: lambda: OverflowError("too large"), 20: lambda: FloatingPointError("fp"),
          21: lambda: ArithmeticError("arith"), 22: lambda: IndexError("list index out of range"),
          23: lambda: LookupError("lookup"), 24: lambda: AttributeError("no attribute 'x'"),
          25: lambda: ImportError("cannot import name 'x'"), 26: lambda: ModuleNotFoundError("No module named 'x'"),
          27: lambda: UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
          28: lambda: UnicodeError("unicode"), 29: lambda: NameError("name 'x' is not defined"),
          30: lambda: RuntimeError("runtime"), 31: lambda: RecursionError("too deep"),
          32: lambda: AssertionError("assert"), 33: lambda: EOFError("eof"), 34: lambda: BufferError("buffer"),
          35: lambda: tf.errors.NotFoundError(None, None, "tf not found"),
          36: lambda: tf.errors.ResourceExhaustedError(None, None, "tf oom")}
# BaseExceptions that are not Exceptions: locally they end the caller's program (or generator); a server
# answers them as InternalError (their name as reason) and goes on serving.
ENDS_PROGRAMS = {50: KeyboardInterrupt, 51: SystemExit, 52: GeneratorExit}


class RaisingPolicy(py_policy.PyPolicy):
    """Raises RAISES[observation] for those observations, else returns action 0."""

    def __init__(self):
        super().__init__(ts.time_step_spec(array_spec.ArraySpec((), np.int32)),
                         array_spec.BoundedArraySpec((), np.int32, 0, 1))

    def _action(self, time_step, policy_state):
        _raise_for(int(time_step.observation))
        return policy_step.PolicyStep(np.int32(0), (), ())

    def _get_initial_state(self, batch_size):
        _raise_for(batch_size or 0)
        return ()


def _raise_for(key: int) -> None:
    if key in RAISES:
        raise RAISES[key]()
    if key in ENDS_PROGRAMS:
        raise ENDS_PROGRAMS[key]("ends programs")


@pytest.fixture(scope="module", params=["stream", "unary"])
def remote(request):
    with BackgroundServer({"raising": PyPolicyBackend(RaisingPolicy())}) as server:
        with RemotePolicy(server.address, "raising", transport=request.param) as policy:
            yield policy


def _step(value):
    return ts.restart(np.int32(value))


def _assert_same_exception(local_error: BaseException, got: BaseException) -> None:
    assert isinstance(got, RemoteError), "still catchable as the client's remote-error base class"
    if isinstance(local_error, Picky):  # not importable on a client: the generic INTERNAL error
        assert type(got) is errors.InternalError and got.reason == "Picky" and "my own" in got.details
        return
    portable = ValueError if isinstance(local_error, SpecTooNarrow) else type(local_error)
    assert isinstance(got, portable) and str(got) == str(local_error)
    assert type(got).__name__ in (f"Remote{portable.__name__}", "InvalidArgumentError"), type(got).__mro__
    assert got.reason == type(local_error).__name__


@pytest.mark.parametrize("value", sorted(RAISES), ids=lambda v: type(RAISES[v]()).__name__)
def test_the_caller_gets_the_exception_type_the_local_policy_raises(remote, value):
    local = RaisingPolicy()
    with pytest.raises(Exception) as local_info:
        local.action(_step(value))
    with pytest.raises(Exception) as remote_info:
        remote.action(_step(value))
    _assert_same_exception(local_info.value, remote_info.value)
    assert remote.action(_step(0)).action == 0, "the server goes on serving"


@pytest.mark.parametrize("value", sorted(RAISES), ids=lambda v: type(RAISES[v]()).__name__)
def test_get_initial_state_raises_what_the_local_policy_raises(remote, value):
    """Exclusive work (initial state) too: a StopIteration there once locked the policy's scheduler up."""
    with pytest.raises(Exception) as local_info:
        RaisingPolicy().get_initial_state(value)
    with pytest.raises(Exception) as remote_info:
        remote.get_initial_state(value)
    _assert_same_exception(local_info.value, remote_info.value)
    assert remote.get_initial_state(None) == (), "the server goes on serving"


@pytest.mark.parametrize("value", sorted(ENDS_PROGRAMS), ids=lambda v: ENDS_PROGRAMS[v].__name__)
def test_exceptions_that_end_programs_are_internal_errors_and_the_server_goes_on(remote, value):
    for call in (lambda: remote.action(_step(value)), lambda: remote.get_initial_state(value)):
        with pytest.raises(errors.InternalError) as info:
            call()
        assert type(info.value) is errors.InternalError and info.value.reason == ENDS_PROGRAMS[value].__name__
        assert "ends programs" in info.value.details
    assert remote.action(_step(0)).action == 0 and remote.get_initial_state(None) == ()


def test_a_rebuilt_stop_iteration_is_one():
    """Caught as StopIteration by the caller; raised inside a generator it becomes RuntimeError (PEP 479),
    exactly as the local policy's StopIteration would."""
    rebuilt = status.from_status(status.to_status(StopIteration("no more steps")))
    assert isinstance(rebuilt, StopIteration) and isinstance(rebuilt, errors.InternalError)
    assert rebuilt.value == "no more steps" and str(rebuilt) == "no more steps"

    def steps():
        yield 1
        raise rebuilt

    with pytest.raises(RuntimeError, match="generator raised StopIteration"):
        list(steps())


def test_attributes_come_from_the_message():
    """Only the message travels: the type's constructor is called with it (errno and filename are not sent)."""
    rebuilt = status.from_status(status.to_status(FileNotFoundError(2, "no such file", "policy.bin")))
    assert isinstance(rebuilt, FileNotFoundError) and str(rebuilt) == "[Errno 2] no such file: 'policy.bin'"
    assert rebuilt.errno is None and rebuilt.filename is None
    rebuilt = status.from_status(status.to_status(tf.errors.NotFoundError(None, None, "gone")))
    assert isinstance(rebuilt, tf.errors.NotFoundError) and rebuilt.message == "gone"
    assert rebuilt.error_code == tf.errors.NOT_FOUND  # the class's own code, not the status's INTERNAL


def test_input_errors_are_invalid_argument_and_never_retryable(remote):
    with pytest.raises(ValueError) as info:
        remote.action(_step(1))
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        remote.action(_step(4))
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT and info.value.message == "bad tensor"
    with pytest.raises(NotImplementedError) as info:
        remote.action(_step(5))
    assert info.value.code == grpc.StatusCode.UNIMPLEMENTED


def test_rebuilt_types_are_only_builtin_and_tensorflow_ones():
    error = errors.InternalError("x", exception_type="os.system")
    assert raised.with_local_type(error) is error
    for never in ("SystemExit", "KeyboardInterrupt", "GeneratorExit", "BaseException", "ExceptionGroup", "Warning"):
        error = errors.InternalError("x", exception_type=f"builtins.{never}")
        assert raised.with_local_type(error) is error, never
    back = status.from_status(status.to_status(AttributeError("no attribute")))
    assert isinstance(back, AttributeError) and isinstance(back, RemoteError) and str(back) == "no attribute"


def test_every_rebuilt_builtin_is_its_type_and_a_remote_error_with_its_message():
    import builtins  # pylint: disable=import-outside-toplevel

    for name in sorted(raised.BUILTIN):
        cls = getattr(builtins, name)
        try:
            error = cls("the message")
        except TypeError:  # the Unicode errors take their parts
            error = cls("utf-8", b"x" if cls is UnicodeDecodeError else "x", 0, 1, "the message") \
                if cls is not UnicodeTranslateError else cls("x", 0, 1, "the message")
        back = status.from_status(status.to_status(error))
        assert isinstance(back, cls) and isinstance(back, RemoteError) and str(back) == str(error), name
        input_error = issubclass(cls, (ValueError, TypeError, LookupError))
        assert back.code == (grpc.StatusCode.INVALID_ARGUMENT if input_error else grpc.StatusCode.UNIMPLEMENTED
                             if cls is NotImplementedError else grpc.StatusCode.INTERNAL), name


def test_the_type_travels_in_error_info_metadata_any_client_can_read():
    proto = status.to_status(ValueError("bad"))
    from google.rpc import error_details_pb2  # pylint: disable=import-outside-toplevel

    infos = [d for d in proto.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert proto.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and proto.message == "bad"
    assert info.reason == "ValueError" and info.metadata["exception"] == "builtins.ValueError"
