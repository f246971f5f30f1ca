"""ActionStream acknowledgements (ActionRequest.answers_read): a client that stops reading gets no more work.

A stream whose requests carry answers_read runs at most 16 answers ahead of
what its client read; one that does not is held back by HTTP/2 flow control
alone, unless the server requires acknowledgements (--stream-acks=required),
where its requests are refused uncomputed. Raw gRPC clients here, as a client
in another language would write them from the .proto.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time

import grpc
import numpy as np
import pytest

from policy_client.wire import STREAM_CAP_KEY, status
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_server.config import ServerConfig
from policy_server.native.servicer import MAX_INFLIGHT_PER_STREAM
from tests.reliability.clients import echo_request
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT, wait_until

pytestmark = pytest.mark.timeout(120)

CAP = MAX_INFLIGHT_PER_STREAM


class RawStream:
    """One ActionStream fed from a queue: the test decides what is written and when answers are read."""

    def __init__(self, stub, timeout: float = WAIT):
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.call = stub.ActionStream(iter(self.outbox.get, None), timeout=timeout)

    def request(self, i: int, answers_read: int | None) -> None:
        message = echo_request("echo", np.full(3, i, np.float32), request_id=i)
        if answers_read is not None:
            message.answers_read = answers_read
        self.outbox.put(message)

    def ack(self, answers_read: int) -> None:
        self.outbox.put(service_pb.ActionRequest(answers_read=answers_read))

    def read(self, n: int) -> list[service_pb.ActionResponse]:
        return [next(self.call) for _ in range(n)]

    def close(self) -> None:
        self.outbox.put(None)
        self.call.cancel()


def computed(stats_client) -> int:
    return stats_client.stats()[0]["requests"]


def settled(stats_client, quiet: float = 0.5) -> int:
    """The server's request count once it has stopped growing for `quiet` seconds (bounded by WAIT)."""
    deadline = time.monotonic() + WAIT
    last, since = computed(stats_client), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.05)
        if (now := computed(stats_client)) != last:
            last, since = now, time.monotonic()
    return last


@pytest.fixture
def echo(servers):
    server = servers.serve({"echo": EchoBackend(stateful=False)})
    return server, servers.client(server.address, "echo", transport="unary")


def test_the_server_says_its_cap_in_the_streams_metadata(echo, servers):
    server, _ = echo
    stream = RawStream(servers.stub(server.address))
    try:
        stream.request(1, answers_read=0)
        stream.read(1)
        assert (STREAM_CAP_KEY, str(CAP)) in tuple(stream.call.initial_metadata())
    finally:
        stream.close()


def test_a_client_that_acknowledges_and_stops_reading_gets_cap_answers_computed_and_no_more(echo, servers):
    server, stats = echo
    stream = RawStream(servers.stub(server.address))
    try:
        for i in range(1, 8 * CAP + 1):  # 128 requests written, none of their answers read
            stream.request(i, answers_read=0)
        assert settled(stats, quiet=1.0) == CAP
        answers = stream.read(CAP)  # reading without acknowledging frees nothing
        assert [a.request_id for a in answers] == list(range(1, CAP + 1))
        assert settled(stats) == CAP
    finally:
        stream.close()


def test_acknowledgements_let_the_stream_go_on_as_far_as_the_client_read(echo, servers):
    server, stats = echo
    stream = RawStream(servers.stub(server.address))
    try:
        n = CAP + CAP // 2  # 16 start, 8 wait (read: their acknowledgements could come after them)
        for i in range(1, n + 1):
            stream.request(i, answers_read=0)
        assert settled(stats) == CAP
        stream.ack(CAP // 2)  # true of nothing read yet, but acknowledged answers count as read: 8 more start
        assert settled(stats) == n
        answers = stream.read(n)
        assert [a.request_id for a in answers] == list(range(1, n + 1))
        for a in answers:
            assert not a.HasField("error"), a.error
            np.testing.assert_array_equal(np.frombuffer(a.policy_step.action.tensor.content, np.float32),
                                          np.full(3, 2 * a.request_id, np.float32))
        for i in range(n + 1, n + 1 + CAP):  # a client that keeps the rule: its requests carry what it read
            stream.request(i, answers_read=i - 1)
            (answer,) = stream.read(1)
            assert answer.request_id == i and not answer.HasField("error")
        assert computed(stats) == n + CAP
    finally:
        stream.close()


def test_an_acknowledgement_alone_gets_no_answer_and_counts_are_clamped(echo, servers):
    server, stats = echo
    stream = RawStream(servers.stub(server.address))
    try:
        stream.request(1, answers_read=0)
        assert stream.read(1)[0].request_id == 1
        stream.ack(10**9)  # more than was ever written: counts as 1
        stream.ack(1)
        for i in range(2, 2 + 2 * CAP):
            stream.request(i, answers_read=1)
        assert settled(stats) == 1 + CAP  # the huge count did not lift the cap
        answers = stream.read(CAP)
        assert [a.request_id for a in answers] == list(range(2, 2 + CAP))  # no answer to either ack
    finally:
        stream.close()


def test_without_acknowledgements_a_stream_is_served_as_before(echo, servers):
    server, _ = echo
    stream = RawStream(servers.stub(server.address))
    try:
        for i in range(1, 3 * CAP + 1):
            stream.request(i, answers_read=None)
        answers = stream.read(3 * CAP)  # answers taken by gRPC free the stream's credit: no ack needed
        assert [a.request_id for a in answers] == list(range(1, 3 * CAP + 1))
        assert not any(a.HasField("error") for a in answers)
    finally:
        stream.close()


def test_a_server_that_requires_acknowledgements_refuses_the_others_uncomputed_and_goes_on(servers):
    server = servers.serve({"echo": EchoBackend(stateful=False)}, stream_acks="required")
    stats = servers.client(server.address, "echo", transport="unary")
    stream = RawStream(servers.stub(server.address))
    try:
        for i in range(1, 3 * CAP + 1):
            stream.request(i, answers_read=None)
        refused = stream.read(3 * CAP)
        assert [a.request_id for a in refused] == list(range(1, 3 * CAP + 1))
        error = status.from_status(refused[0].error)
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == "StreamAcksRequired"
        assert "--stream-acks=required" in str(error) and error.fields[0][0] == "answers_read"
        assert computed(stats) == 0
        stream.request(100, answers_read=3 * CAP)  # the same stream, acknowledging now: served
        (answer,) = stream.read(1)
        assert answer.request_id == 100 and not answer.HasField("error")
        assert computed(stats) == 1
    finally:
        stream.close()


def test_a_non_reader_on_a_server_that_requires_acknowledgements_gets_only_refusals(servers):
    """The raw non-reader of the fault suite (no answers_read, never reads): nothing computed for it."""
    server = servers.serve({"echo": EchoBackend(stateful=False)}, stream_acks="required")
    stats = servers.client(server.address, "echo", transport="unary")
    stream = RawStream(servers.stub(server.address))
    try:
        for i in range(1, 10 * CAP):
            stream.request(i, answers_read=None)
        time.sleep(0.5)
        assert computed(stats) == 0
    finally:
        stream.close()


@pytest.mark.parametrize("stream_acks", ["optional", "required"])
def test_policy_client_threads_past_the_cap_on_one_stream_are_all_answered(servers, stream_acks):
    """More callers than the cap share one stream: the client acknowledges alone, so none waits for the others."""
    server = servers.serve({"echo": EchoBackend(stateful=False, delay=0.002)}, stream_acks=stream_acks)
    client = servers.client(server.address, "echo", transport="stream", data_plane="grpc")
    threads, calls = 3 * CAP, 20

    def actor(k: int) -> list[bool]:
        return [np.array_equal(client.action(echo_time_step(np.full(3, k * 100 + j, np.float32))).policy_step.action,
                               np.full(3, 2 * (k * 100 + j), np.float32)) for j in range(calls)]

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(actor, range(threads), timeout=WAIT))
    assert all(all(r) for r in results)
    assert client.stats()[0]["requests"] == threads * calls


def test_a_stopping_server_answers_the_requests_waiting_for_acknowledgements(servers):
    """Requests read but held back by the cap still get exactly one answer when the server stops."""
    server = servers.serve({"echo": EchoBackend(stateful=False)})
    stats = servers.client(server.address, "echo", transport="unary")
    stream = RawStream(servers.stub(server.address))
    try:
        for i in range(1, 2 * CAP + 1):  # 16 started, 16 read and held (the stream's read-ahead)
            stream.request(i, answers_read=0)
        assert settled(stats) == CAP
        stopper = threading.Thread(target=server.stop, kwargs={"grace": 10.0})
        stopper.start()
        answers = []
        with pytest.raises(grpc.RpcError) as info:
            while True:
                answers.append(next(stream.call))
        stopper.join(WAIT)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert [a.request_id for a in answers] == list(range(1, 2 * CAP + 1))
        assert all(not a.HasField("error") for a in answers[:CAP])
        assert all(status.from_status(a.error).code == grpc.StatusCode.UNAVAILABLE for a in answers[CAP:])
    finally:
        stream.close()
        wait_until(lambda: not stopper.is_alive(), "the server to stop")


def test_stream_acks_takes_optional_or_required():
    assert ServerConfig().stream_acks == "optional"
    with pytest.raises(ValueError, match="stream_acks must be 'optional' or 'required'"):
        ServerConfig(stream_acks="sometimes")
