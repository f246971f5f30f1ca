"""The one exception <-> status mapping, with google.rpc.Status details, on both sides of real calls."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from policy_client import PolicyClient
from policy_client.wire import errors, status, steps
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import policy_service_pb2_grpc as service_grpc
from tests.support.fakes import echo_time_step


@pytest.mark.parametrize("cls", sorted(errors.BY_CODE.values(), key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_remote_error_round_trips_with_its_fields_and_reason(cls):
    error = cls("what went wrong", fields=(("time_step.observation", "expected shape (4,)"),), reason="Why")
    back = status.from_status(status.to_status(error))
    assert type(back) is cls and back.code == cls.code
    assert back.details == "what went wrong" and back.reason == "Why"
    assert back.fields == (("time_step.observation", "expected shape (4,)"),)


def test_field_errors_become_invalid_argument_naming_the_field():
    remote = status.as_remote_error(errors.SpecMismatchError("policy_state: expected ()", "policy_state"))
    assert type(remote) is errors.InvalidArgumentError and isinstance(remote, ValueError)
    assert remote.fields == (("policy_state", "expected ()"),) and remote.reason == "SpecMismatchError"


def test_other_exceptions_travel_with_their_type_as_reason():
    remote = status.as_remote_error(KeyError("k"))
    assert isinstance(remote, errors.InvalidArgumentError) and remote.reason == "KeyError"
    assert remote.exception_type == "builtins.KeyError"
    remote = status.as_remote_error(OSError("disk"))
    assert type(remote) is errors.InternalError and remote.reason == "OSError" and remote.details == "disk"
    assert remote.exception_type == "builtins.OSError"

    class DiskFull(Exception):
        pass

    remote = status.as_remote_error(DiskFull("disk"))  # not portable: its name goes in the message
    assert type(remote) is errors.InternalError and remote.reason == "DiskFull" and "DiskFull: disk" in remote.details
    assert remote.exception_type == ""


def test_unknown_codes_keep_their_code():
    back = status.from_status(status.to_status(errors.RemoteError("x", grpc.StatusCode.ABORTED)))
    assert type(back) is errors.RemoteError and back.code == grpc.StatusCode.ABORTED


def test_long_text_is_truncated_to_fit_grpc_metadata():
    huge = "p" * 10_000
    proto = status.to_status(errors.PolicyNotFoundError(f"no policy named {huge}", fields=((huge, huge),)))
    assert len(proto.message) <= status.MAX_MESSAGE_CHARS and "more characters]" in proto.message
    assert len(proto.SerializeToString()) < 4096


def test_server_errors_carry_bad_request_details_any_client_can_read(echo_server):
    """A raw stub and grpcio-status alone (what any language has) read the field violations."""
    with grpc.insecure_channel(echo_server.address) as channel:
        stub = service_grpc.PolicyServiceStub(channel)
        request = service_pb.ActionRequest(policy="echo")
        steps.write_time_step(request.time_step, echo_time_step(np.zeros(4, np.float32)))  # spec: (3,)
        with pytest.raises(grpc.RpcError) as info:
            stub.Action(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        rich = rpc_status.from_call(info.value)
        bad_request = error_details_pb2.BadRequest()
        assert rich.details[0].Unpack(bad_request)
        assert bad_request.field_violations[0].field == "time_step.observation"
        description = bad_request.field_violations[0].description
        assert "expected shape (3,)" in description and not description.startswith("time_step.observation")

        responses = list(stub.ActionStream(iter([request]), timeout=10))
        assert responses[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert responses[0].error.details[0].Unpack(bad_request)
        assert bad_request.field_violations[0].field == "time_step.observation"


@pytest.mark.parametrize("transport", ["unary", "stream"])
def test_client_raises_the_same_class_with_fields(echo_server, transport):
    with PolicyClient(echo_server.address, "echo", transport=transport, timeout=10) as client:
        with pytest.raises(errors.InvalidArgumentError) as info:
            client.action(echo_time_step(np.zeros(4, np.float32)), {"count": np.array(0, np.int64)})
    assert info.value.fields[0][0] == "time_step.observation"


@pytest.mark.parametrize("transport", ["unary", "stream"])
def test_a_huge_policy_name_still_gets_not_found(echo_server, transport):
    with PolicyClient(echo_server.address, "x" * 20_000, transport=transport, timeout=10) as client:
        with pytest.raises(errors.PolicyNotFoundError, match="more characters"):
            client.action(echo_time_step(np.zeros(3, np.float32)), {"count": np.array(0, np.int64)})
