"""A full queue refuses at admission with a retry hint (google.rpc.RetryInfo), and the clients honour it.

The refusal comes before the request's inputs are read (a request that would
be invalid is refused RESOURCE_EXHAUSTED, not INVALID_ARGUMENT); it names the
policy's queue and carries the reason QUEUE_FULL and a retry delay. A client
sends the call again after the delay while its deadline allows, over gRPC
and over shared memory, and on a target of several replicas the retry goes
to another replica.
"""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from policy_server.shm import plane as shm
from policy_client.wire import errors, status
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_server.config import BatchingConfig
from policy_server.server import BackgroundServer
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT, GatedEchoBackend, wait_for_queue_depth, wait_until

OBS = np.zeros(3, np.float32)
STATE = {"count": np.array(0, np.int64)}


def test_retry_info_travels_in_the_status_and_back():
    error = errors.ResourceExhaustedError("full", reason=errors.QUEUE_FULL, retry_delay=0.0125)
    rich = status.to_status(error)
    kinds = [d.TypeName() for d in rich.details]
    assert "google.rpc.RetryInfo" in kinds and "google.rpc.ErrorInfo" in kinds
    back = status.from_status(rich)
    assert isinstance(back, errors.ResourceExhaustedError)
    assert back.reason == errors.QUEUE_FULL and back.retry_delay == pytest.approx(0.0125)
    assert status.from_status(status.to_status(errors.ResourceExhaustedError("too big"))).retry_delay is None


def _full(servers, before=None):
    """A server of a gated echo policy whose queue (of 1) is full: (server, backend, gate, held futures).

    `before(address)` runs while the policy still answers (with the gate open).
    """
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=1, max_batch_delay=0.0,
                                                                      max_queue_size=1, inline_threshold=0.0))
    if before is not None:
        gate.set()
        before(server.address)
        gate.clear()
        backend.entered.clear()
    holder = servers.client(server.address, "echo", data_plane="grpc")
    held = [holder.action_async(echo_time_step(OBS), STATE)]
    assert backend.entered.wait(WAIT), "the first request never reached the policy"
    held.append(holder.action_async(echo_time_step(OBS), STATE))
    wait_for_queue_depth(holder, 1)
    return server, backend, gate, held


def test_a_full_queue_refuses_before_reading_the_request_and_names_the_queue(servers):
    server, _, gate, held = _full(servers)
    request = service_pb.ActionRequest(policy="echo", request_id=7)  # no time step at all: invalid if read
    with pytest.raises(grpc.RpcError) as raised:
        servers.stub(server.address).Action(request, timeout=WAIT)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "policy 'echo''s queue is full (1 requests waiting, --max-queue-size)" in raised.value.details()
    rich = rpc_status.from_call(raised.value)
    retry = [d for d in rich.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    assert len(retry) == 1
    info = error_details_pb2.RetryInfo()
    retry[0].Unpack(info)
    assert 0.001 <= info.retry_delay.ToNanoseconds() / 1e9 <= 1.0
    # On a stream the same refusal is that request's answer, and the stream goes on.
    answers = servers.stub(server.address).ActionStream(iter([request]), timeout=WAIT)
    answer = next(answers)
    assert answer.request_id == 7 and answer.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in answer.error.details)
    gate.set()
    for future in held:
        future.result(WAIT)
    with pytest.raises(grpc.RpcError) as raised:  # with room again, the same request is read: invalid
        servers.stub(server.address).Action(request, timeout=WAIT)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


PLANES = [("grpc", "stream"), ("grpc", "unary"),
          pytest.param("shm", "stream", marks=pytest.mark.skipif(not shm.available(), reason="no POSIX shm"))]


@pytest.mark.parametrize("plane, transport", PLANES)
def test_a_refused_call_goes_again_after_the_hint_and_is_served(servers, plane, transport):
    clients = []

    def warm(address):  # a first answer teaches the client its plans, a second takes the slot
        clients.append(servers.client(address, "echo", data_plane=plane, transport=transport))
        for _ in range(2):
            clients[0].action(echo_time_step(OBS), STATE)
        wait_until(lambda: clients[0].data_plane == plane, f"the {plane} plane")

    server, backend, gate, held = _full(servers, before=warm)
    client = clients[0]
    refusals_before = client.stats()[0]["errors"]
    future = client.action_async(echo_time_step(np.full(3, 4, np.float32)), STATE)
    wait_until(lambda: client.stats()[0]["errors"] >= refusals_before + 3, "three refusals of the call")
    assert not future.done()
    gate.set()  # room again: the next retry is served
    np.testing.assert_array_equal(future.result(WAIT).policy_step.action, np.full(3, 8, np.float32))
    for f in held:
        f.result(WAIT)
    assert [len(obs) for obs in backend.observations][-1] == 1


def test_on_several_replicas_a_refused_call_goes_to_another(servers):
    full, _, gate, held = _full(servers)
    free = BackgroundServer({"echo": EchoBackend()})
    try:
        target = f"ipv4:{full.address},{free.address}"
        # Unary: round robin takes each call to the next ready replica (a stream stays on one). The full
        # replica's connection may be ready later than the free one's: calls go on until it refused some.
        with servers.client(target, "echo", timeout=WAIT, transport="unary") as client:
            sender = client._router.current.sender  # pylint: disable=protected-access
            calls, until = 0, time.monotonic() + WAIT
            while calls < 20 or (sender.queue_full < 3 and time.monotonic() < until):
                action = client.action(echo_time_step(np.full(3, calls, np.float32)), STATE).policy_step.action
                np.testing.assert_array_equal(action, np.full(3, 2 * calls, np.float32))
                calls += 1
            assert sender.queue_full >= 3, "the full replica refused calls, which went again"
        with servers.client(free.address, "echo") as other:
            assert other.stats()[0]["requests"] == calls  # every call was served by the free replica
    finally:
        gate.set()
        for f in held:
            f.result(WAIT)
        free.stop()
