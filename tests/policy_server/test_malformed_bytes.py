"""Bytes that do not parse (garbage, nests past protobuf's depth limit) get INVALID_ARGUMENT."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from policy_client import PolicyClient
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import types_pb2
from tests.support.fakes import echo_time_step

SERVICE = "/tfa_policy_grpc.v1.PolicyService"


def too_deep_request() -> bytes:
    nest = types_pb2.Nest()
    inner = nest
    for _ in range(200):
        inner = inner.list.values.add()
    request = service_pb.ActionRequest(policy="echo")
    request.policy_state.CopyFrom(nest)
    return request.SerializeToString()


@pytest.mark.parametrize("data, methods", [
    (b"\xff\xff\xff garbage", ("Action", "GetSpecs", "GetInitialState", "GetStats")),
    (too_deep_request(), ("Action",)),
], ids=["garbage", "too_deep"])
def test_unary_gets_invalid_argument(echo_server, data, methods):
    with grpc.insecure_channel(echo_server.address) as channel:
        for method in methods:
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary(f"{SERVICE}/{method}")(data, timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method
            assert "malformed" in info.value.details()


def test_stream_answers_malformed_messages_and_keeps_serving(echo_server):
    good = PolicyClient(echo_server.address, "echo").encode_request(
        echo_time_step([1, 2, 3]), {"count": np.zeros((), np.int64)}).SerializeToString()
    with grpc.insecure_channel(echo_server.address) as channel:
        stream = channel.stream_stream(f"{SERVICE}/ActionStream")
        answers = [service_pb.ActionResponse.FromString(r)
                   for r in stream(iter([b"\xff\xff", too_deep_request(), good]), timeout=30)]
    assert [a.error.code for a in answers[:2]] == [grpc.StatusCode.INVALID_ARGUMENT.value[0]] * 2
    assert "malformed ActionRequest" in answers[0].error.message
    assert not answers[2].HasField("error") and answers[2].HasField("policy_step")
    # ... and other clients are still served.
    with PolicyClient(echo_server.address, "echo") as client:
        state = client.get_initial_state()
        assert client.action(echo_time_step([1, 1, 1]), state).policy_step.action.tolist() == [2, 2, 2]


def test_push_with_malformed_bytes_is_refused(echo_server):
    with grpc.insecure_channel(echo_server.address) as channel:
        push = channel.stream_unary(f"{SERVICE}/PushVariables")
        with pytest.raises(grpc.RpcError) as info:
            push(iter([b"\xff\xff"]), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
