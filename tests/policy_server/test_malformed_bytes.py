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


def _every_method(address: str) -> list[tuple[str, bool, bool]]:
    """(path, client streaming, server streaming) of every method of every service, found through reflection."""
    from google.protobuf.descriptor_pool import DescriptorPool  # pylint: disable=import-outside-toplevel
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # pylint: disable=import-outside-toplevel
        ProtoReflectionDescriptorDatabase)

    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = DescriptorPool(database)
        found = []
        for name in database.get_services():
            service = pool.FindServiceByName(name)
            found += [(f"/{service.full_name}/{m.name}", m.client_streaming, m.server_streaming)
                      for m in service.methods]
    return found


# Bytes that are not any message: an unterminated varint, a length past the end, a group never closed,
# field number 0, and a nest past protobuf's depth limit.
MALFORMED = (b"\xff\xff\xff garbage", b"\x0a\xff\x01abc", b"\x0b\x10\x01", b"\x00\x01", too_deep_request())


def test_every_method_of_every_service_answers_malformed_bytes_without_unknown(servers):
    """Health, reflection, the shared-memory service, the OIP and the PolicyService: found through
    reflection, every method gets each malformed request, and none answers UNKNOWN or INTERNAL."""
    from tests.support.fakes import EchoBackend  # pylint: disable=import-outside-toplevel

    server = servers.serve({"echo": EchoBackend()})
    methods = _every_method(server.address)
    services = {path.split("/")[1] for path, _, _ in methods}
    assert {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "inference.GRPCInferenceService",
            "tfa_policy_grpc.v1.PolicyService"} <= services
    codes: dict[str, set] = {}
    garbage: dict[str, str] = {}  # path -> the code for MALFORMED[0], which no message of ours parses
    with grpc.insecure_channel(server.address) as channel:
        for path, client_streaming, server_streaming in methods:
            for index, data in enumerate(MALFORMED):
                call = {(False, False): channel.unary_unary, (True, False): channel.stream_unary,
                        (False, True): channel.unary_stream, (True, True): channel.stream_stream}[
                    (client_streaming, server_streaming)](path)
                argument = iter([data]) if client_streaming else data
                try:
                    result = call(argument, timeout=5)
                    if server_streaming:
                        for _ in result:  # a stream's own per-message errors answer in its messages
                            pass
                    code = "OK"
                except grpc.RpcError as e:
                    code = e.code().name
                codes.setdefault(path, set()).add(code)
                if index == 0:
                    garbage[path] = code
    bad = {path: found for path, found in codes.items() if found & {"UNKNOWN", "INTERNAL"}}
    assert not bad, bad
    assert len(codes) == len(methods)
    # Bytes that are no message at all are refused as what they are (some of the others parse as another
    # service's message, with unknown fields, and get that service's answer).
    refused = [p for p, code in garbage.items() if code == "INVALID_ARGUMENT"]
    for path in ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
                 "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"):
        assert path in refused, (path, garbage[path])
    if "tfa_policy_grpc.v1.SharedMemoryService" in services:
        assert "/tfa_policy_grpc.v1.SharedMemoryService/OpenSlot" in refused


def test_a_raw_stream_survives_an_over_limit_and_a_malformed_message(servers):
    """A client in another language sends request 2 over the server's limit and request 3 broken at its end:
    each gets its own error answer, keyed by its request_id; the requests before and after are answered."""
    from tests.support.fakes import EchoBackend  # pylint: disable=import-outside-toplevel

    limit = 4096
    server = servers.serve({"echo": EchoBackend()}, max_message_bytes=limit)
    client = PolicyClient(server.address, "echo")

    def request(request_id: int, rows: int = 0) -> bytes:
        observation = np.ones((rows, 3) if rows else 3, np.float32)
        state = {"count": np.zeros((rows,) if rows else (), np.int64)}
        message = client.encode_request(echo_time_step(observation, rows or None), state, batch_size=rows)
        message.request_id = request_id
        return message.SerializeToString()

    too_large = request(2, rows=200)
    assert limit < len(too_large) < 2 * limit  # over the server's limit, under gRPC's own (twice it)
    broken = request(3) + b"\xff\xff"  # its request_id (field 6) reads fine; its end does not parse
    with grpc.insecure_channel(server.address) as channel:
        stream = channel.stream_stream(f"{SERVICE}/ActionStream")
        answers = [service_pb.ActionResponse.FromString(r)
                   for r in stream(iter([request(1), too_large, broken, request(4)]), timeout=30)]
    client.close()
    assert [a.request_id for a in answers] == [1, 2, 3, 4]
    assert not answers[0].HasField("error") and not answers[3].HasField("error")
    assert answers[1].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert f"over the server's message limit of {limit} bytes" in answers[1].error.message
    assert answers[2].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_a_unary_call_over_the_limit_is_resource_exhausted_naming_the_limit(servers):
    from tests.support.fakes import EchoBackend  # pylint: disable=import-outside-toplevel

    server = servers.serve({"echo": EchoBackend()}, max_message_bytes=4096)
    with grpc.insecure_channel(server.address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(f"{SERVICE}/GetSpecs")(b"\x0a" + b"\x88\x27" + b"x" * 5000, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "message limit of 4096 bytes" in info.value.details()
