"""When PolicyClient sends an Action again, and how a request over a size limit fails alone."""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
import time

import grpc
import numpy as np
import pytest

from policy_client import PolicyClient
from policy_client.wire import errors
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import types_pb2 as pb
from tests.reliability.scenarios import stream_consumer_threads
from tests.support.fakes import echo_time_step
from tests.support.servers import WAIT, GatedEchoBackend

pytestmark = pytest.mark.timeout(60)


def answer() -> bytes:
    response = service_pb.ActionResponse(version=3)
    response.policy_step.action.tensor.CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[3], content=bytes(12)))
    response.policy_step.state.tuple.SetInParent()
    response.policy_step.info.tuple.SetInParent()
    return response.SerializeToString()


class FailingFirst:
    """A fake PolicyService whose first `failures` Action calls end with `code` (then it answers)."""

    def __init__(self, code: grpc.StatusCode, failures: int, hold: threading.Event | None = None):
        self.code, self.failures, self.hold = code, failures, hold
        self.calls = 0
        self.entered = threading.Event()

    def action(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.calls += 1
        self.entered.set()
        if self.hold is not None:
            self.hold.wait(WAIT)
        if self.calls <= self.failures:
            context.abort(self.code, f"{self.code.name} by the fake server")
        return answer()


@contextlib.contextmanager
def fake_server(fake: FailingFirst):
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "tfa_policy_grpc.v1.PolicyService", {"Action": grpc.unary_unary_rpc_method_handler(fake.action)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        if fake.hold is not None:
            fake.hold.set()
        server.stop(None)


def unary_client(address: str, timeout: float) -> PolicyClient:
    return PolicyClient(address, "echo", transport="unary", timeout=timeout, use_plans=False)


def test_unary_calls_are_sent_again_while_unavailable_beyond_the_channels_retries():
    fake = FailingFirst(grpc.StatusCode.UNAVAILABLE, failures=8)  # the channel's retry policy makes 5 attempts
    with fake_server(fake) as address, unary_client(address, WAIT) as client:
        assert client.action(echo_time_step(np.zeros(3, np.float32))).version == 3
    assert fake.calls == 9


def test_a_server_that_cancels_every_call_ends_in_unavailable_at_the_deadline():
    fake = FailingFirst(grpc.StatusCode.CANCELLED, failures=10**6)
    with fake_server(fake) as address, unary_client(address, 1.0) as client:
        started = time.monotonic()
        with pytest.raises(errors.UnavailableError, match="the server cancelled the call"):
            client.action(echo_time_step(np.zeros(3, np.float32)))
    assert time.monotonic() - started < 5 and fake.calls > 1


def test_a_call_the_client_cancels_by_closing_is_not_sent_again():
    hold = threading.Event()
    fake = FailingFirst(grpc.StatusCode.CANCELLED, failures=0, hold=hold)
    with fake_server(fake) as address:
        client = unary_client(address, WAIT)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.action, echo_time_step(np.zeros(3, np.float32)))
            assert fake.entered.wait(WAIT)
            client.close()
            with pytest.raises(errors.RemoteError) as info:
                pending.result(WAIT)
        hold.set()
    assert info.value.code == grpc.StatusCode.CANCELLED and fake.calls == 1


# ----------------------------------------------------------------- size limits


def test_a_request_over_the_clients_own_limit_fails_at_once_and_the_stream_goes_on(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate, stateful=False)
    server = servers.serve({"echo": backend})
    client = servers.client(server.address, "echo", options=[("grpc.max_send_message_length", 1 << 20)],
                            use_plans=False)  # every request as an ActionRequest over gRPC
    small = client.action_async(echo_time_step(np.ones(3, np.float32)))
    assert backend.entered.wait(WAIT)
    rows = 200_000
    with pytest.raises(errors.ResourceExhaustedError, match="grpc.max_send_message_length of 1048576"):
        client.action(echo_time_step(np.zeros((rows, 3), np.float32), rows), batch_size=rows)
    gate.set()
    np.testing.assert_array_equal(small.result(WAIT).policy_step.action, [2, 2, 2])
    assert backend.calls == 1  # the small request was not sent again


def test_after_an_oversized_request_broke_a_stream_requests_that_large_go_alone(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate, stateful=False)
    server = servers.serve({"echo": backend}, max_message_bytes=1 << 20)
    client = servers.client(server.address, "echo", options=[("grpc.max_send_message_length", 64 << 20)],
                            use_plans=False)  # every request as an ActionRequest over gRPC
    before = stream_consumer_threads()
    rows = 200_000
    big = echo_time_step(np.zeros((rows, 3), np.float32), rows)
    for value in (7, 8):
        gate.clear()
        small = client.action_async(echo_time_step(np.full(3, value, np.float32)))
        assert backend.entered.wait(WAIT)
        with pytest.raises(errors.ResourceExhaustedError, match=r"larger than max.*send fewer rows per call"):
            client.action(big, batch_size=rows)
        gate.set()
        np.testing.assert_array_equal(small.result(WAIT).policy_step.action, np.full(3, 2 * value))
        backend.entered.clear()
    sent = [int(o.reshape(-1)[0]) for o in backend.observations]
    assert sent.count(7) == 2, "the first small request is sent again after the stream broke"
    assert sent.count(8) == 1, "the second oversized request broke the stream again"
    deadline = time.monotonic() + 2
    while stream_consumer_threads() > before + 1 and time.monotonic() < deadline:  # + the live stream's
        time.sleep(0.05)
    assert stream_consumer_threads() <= before + 1


def test_an_oversized_unary_request_says_what_to_do(servers):
    server = servers.serve({"echo": GatedEchoBackend(stateful=False)}, max_message_bytes=1 << 20)
    client = servers.client(server.address, "echo", transport="unary", use_plans=False)
    rows = 200_000
    with pytest.raises(errors.ResourceExhaustedError, match=r"request of \d+ bytes, or its answer, is over"):
        client.action(echo_time_step(np.zeros((rows, 3), np.float32), rows), batch_size=rows)
    assert client.action(echo_time_step(np.ones(3, np.float32))).version == 0
