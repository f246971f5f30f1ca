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
from policy_server.backend import PyPolicyBackend
from policy_server.server import BackgroundServer


class Picky(Exception):
    """A policy's own exception type: not portable, travels as INTERNAL."""


class SpecTooNarrow(ValueError):
    """A subclass of a portable type travels as that type."""


# Factories, so that no raised exception (nor the server frames of its traceback) outlives its test.
RAISES = {1: lambda: ValueError("obs must be positive"), 2: lambda: TypeError("obs has the wrong type"),
          3: lambda: KeyError("missing"), 4: lambda: tf.errors.InvalidArgumentError(None, None, "bad tensor"),
          5: lambda: NotImplementedError("not this one"), 6: lambda: Picky("my own"),
          7: lambda: SpecTooNarrow("narrow")}


class RaisingPolicy(py_policy.PyPolicy):
    """Raises RAISES[observation] for those observations, else returns action 0."""

    def __init__(self):
        super().__init__(ts.time_step_spec(array_spec.ArraySpec((), np.int32)),
                         array_spec.BoundedArraySpec((), np.int32, 0, 1))

    def _action(self, time_step, policy_state):
        error = RAISES.get(int(time_step.observation))
        if error is not None:
            raise error()
        return policy_step.PolicyStep(np.int32(0), (), ())


@pytest.fixture(scope="module", params=["stream", "unary"])
def remote(request):
    with BackgroundServer({"raising": PyPolicyBackend(RaisingPolicy())}) as server:
        with RemotePolicy(server.address, "raising", transport=request.param) as policy:
            yield policy


def _step(value):
    return ts.restart(np.int32(value))


@pytest.mark.parametrize("value", sorted(RAISES), ids=lambda v: type(RAISES[v]()).__name__)
def test_the_caller_gets_the_exception_type_the_local_policy_raises(remote, value):
    local = RaisingPolicy()
    with pytest.raises(Exception) as local_info:
        local.action(_step(value))
    with pytest.raises(Exception) as remote_info:
        remote.action(_step(value))
    got = remote_info.value
    assert isinstance(got, RemoteError), "still catchable as the client's remote-error base class"
    if isinstance(local_info.value, Picky):  # not importable on a client: the generic INTERNAL error
        assert type(got) is errors.InternalError and got.reason == "Picky" and "my own" in got.details
        return
    portable = ValueError if isinstance(local_info.value, SpecTooNarrow) else type(local_info.value)
    assert isinstance(got, portable) and str(got) == str(local_info.value)
    assert got.reason == type(local_info.value).__name__
    assert remote.action(_step(0)).action == 0, "the server goes on serving"


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
    error = errors.InternalError("x", exception_type="builtins.SystemExit")
    assert raised.with_local_type(error) is error
    back = status.from_status(status.to_status(AttributeError("no attribute")))
    assert isinstance(back, RemoteError) and "no attribute" in str(back)  # a layout that cannot combine


def test_the_type_travels_in_error_info_metadata_any_client_can_read():
    proto = status.to_status(ValueError("bad"))
    from google.rpc import error_details_pb2  # pylint: disable=import-outside-toplevel

    infos = [d for d in proto.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    info = error_details_pb2.ErrorInfo()
    infos[0].Unpack(info)
    assert proto.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and proto.message == "bad"
    assert info.reason == "ValueError" and info.metadata["exception"] == "builtins.ValueError"
