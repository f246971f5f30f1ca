"""One client cannot take the server: a stream that writes without reading is held back, and batches
share their rows fairly between clients (streams, unary peers)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from policy_client.wire import errors
from policy_server.shm import plane as shm
from policy_server.config import BatchingConfig
from policy_server.native.servicer import MAX_INFLIGHT_PER_STREAM
from tests.policy_server.test_batching import hold_first_batch, obs_rows, send
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT, GatedEchoBackend, wait_for_queue_depth

ROWS = 20_000  # ~0.5 MB per answer: a few fill the HTTP/2 window of a client that never reads


def test_a_client_that_never_reads_stops_being_read(servers):
    server = servers.serve({"echo": EchoBackend(stateful=False)})
    writer = servers.client(server.address, "echo")
    request = writer.encode_request(echo_time_step(np.zeros((ROWS, 3), np.float32), batch_size=ROWS),
                                    batch_size=ROWS)
    sent = threading.Event()
    stop = threading.Event()

    def flood():
        for i in range(400):
            if stop.is_set():
                return
            request.request_id = i
            yield request
        sent.set()

    call = servers.stub(server.address).ActionStream(flood())  # never read
    try:
        time.sleep(2.0)
        served = writer.stats()[0]["requests"]
        assert not sent.is_set(), "the server read every request of a client that reads nothing"
        assert served <= 100, served
        # Everyone else is served at once meanwhile.
        other = servers.client(server.address, "echo", timeout=WAIT)
        start = time.monotonic()
        for _ in range(20):
            other.action(echo_time_step(np.zeros(3, np.float32)))
        assert time.monotonic() - start < 5.0
        time.sleep(0.5)
        assert writer.stats()[0]["requests"] <= served + 20 + MAX_INFLIGHT_PER_STREAM
    finally:
        stop.set()
        call.cancel()


def test_other_requests_interleave_with_the_pieces_of_a_huge_one(servers):
    """A request split into pieces does not hold the queue: each piece queues behind what waits."""
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=2, max_batch_delay=0.0),
                           gates=(gate,))
    client = servers.client(server.address, "echo")
    blocker = hold_first_batch(client, backend)
    huge = send(client, obs_rows(0, 10), batched=True)  # five pieces of two rows
    wait_for_queue_depth(client, 1)
    small = send(client, np.full(3, 1000, np.float32), batched=False)
    wait_for_queue_depth(client, 2)
    gate.set()
    blocker.result(WAIT)
    np.testing.assert_array_equal(huge.result(WAIT).policy_step.action, 2 * obs_rows(0, 10))
    assert small.result(WAIT).policy_step.action[0] == 2000
    # The small request ran right after the first piece, not after all five.
    firsts = [obs[0, 0] for obs in backend.observations[1:]]
    assert firsts.index(1000) <= 2, firsts


# ----------------------------------------------------------------- fair batches between clients
# Each test holds one batch in flight (a gate), queues a known backlog, then
# opens the gate and checks which backend calls ran, in order.


def _held(servers, **batching):
    """A gated echo server, a heavy stream client, and its blocker request in flight."""
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate)
    batching.setdefault("max_batch_delay", 0.0)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(**batching), gates=(gate,))
    heavy = servers.client(server.address, "echo", data_plane="grpc")
    return server, backend, gate, heavy, hold_first_batch(heavy, backend)


@pytest.mark.parametrize("transport", ["stream", "unary"])
def test_a_light_client_is_served_in_the_next_batch_behind_a_heavy_backlog(servers, transport):
    """The issue's case: a stream has many full batches queued; a light actor does not wait for them."""
    server, backend, gate, heavy, blocker = _held(servers, max_batch_size=4)
    backlog = [(obs_rows(100 * i, 4), send(heavy, obs_rows(100 * i, 4), batched=True)) for i in range(6)]
    wait_for_queue_depth(heavy, 6)
    light = servers.client(server.address, "echo", transport=transport, data_plane="grpc")
    mine = [(np.full(3, 5000 + i, np.float32), send(light, np.full(3, 5000 + i, np.float32), batched=False))
            for i in range(2)]
    wait_for_queue_depth(heavy, 8)
    gate.set()
    blocker.result(WAIT)
    for obs, future in backlog + mine:
        np.testing.assert_array_equal(future.result(WAIT).policy_step.action, 2 * obs)
    # First come, first served would have run the light rows last: [1, 4, 4, 4, 4, 4, 4, 2].
    assert backend.batch_sizes == [1, 2, 4, 4, 4, 4, 4, 4]
    np.testing.assert_array_equal(backend.observations[1][:, 0], [5000, 5001])


def test_batches_take_rows_round_robin_and_each_stream_in_order(servers):
    server, backend, gate, heavy, blocker = _held(servers, max_batch_size=4)
    heavy_rows = [send(heavy, np.full(3, 100 + i, np.float32), batched=False) for i in range(6)]
    wait_for_queue_depth(heavy, 6)  # with the blocker, 7 of the client's 8 threads wait
    light = servers.client(server.address, "echo", data_plane="grpc")
    light_rows = [send(light, np.full(3, 900 + i, np.float32), batched=False) for i in range(3)]
    wait_for_queue_depth(heavy, 9)
    gate.set()
    blocker.result(WAIT)
    for base, futures in ((100, heavy_rows), (900, light_rows)):  # each stream's answers, in its order
        assert [f.result(WAIT).policy_step.action[0] for f in futures] == [2 * (base + i) for i in
                                                                          range(len(futures))]
    ran = [[int(o[0]) for o in obs] for obs in backend.observations[1:]]
    assert ran == [[900, 100, 901, 101], [902, 102, 103, 104], [105]], ran


def test_a_seeded_request_still_runs_alone(servers):
    server, backend, gate, heavy, blocker = _held(servers, max_batch_size=8)
    joined = [send(heavy, np.full(3, 100 + i, np.float32), batched=False) for i in range(3)]
    wait_for_queue_depth(heavy, 3)
    light = servers.client(server.address, "echo", data_plane="grpc")
    seeded = send(light, np.full(3, 900, np.float32), batched=False, seed=1007)
    after = send(light, np.full(3, 901, np.float32), batched=False)
    wait_for_queue_depth(heavy, 5)
    gate.set()
    blocker.result(WAIT)
    np.testing.assert_array_equal(seeded.result(WAIT).policy_step.action, 2 * np.full(3, 900) + 7)
    assert after.result(WAIT).policy_step.action[0] == 1802
    assert [f.result(WAIT).policy_step.action[0] for f in joined] == [200, 202, 204]
    # The seeded request heads the next batch, alone; the light stream's next request waits behind it.
    assert backend.batch_sizes == [1, 1, 4] and backend.seeds == [None, 1007, None]
    assert sorted(int(o[0]) for o in backend.observations[2]) == [100, 101, 102, 901]


@pytest.mark.parametrize("transport", ["stream", "unary"])
def test_the_queue_bound_counts_every_client(servers, transport):
    server, backend, gate, heavy, blocker = _held(servers, max_batch_size=1, max_queue_size=4)
    light = servers.client(server.address, "echo", transport=transport, data_plane="grpc")
    queued = []
    for i, client in enumerate((heavy, heavy, light, light)):
        queued.append(send(client, np.full(3, i, np.float32), batched=False))
        wait_for_queue_depth(heavy, i + 1)
    other = servers.client(server.address, "echo", transport=transport, data_plane="grpc", timeout=0.3)
    with pytest.raises(errors.ResourceExhaustedError, match="queue is full"):
        send(other, np.zeros(3, np.float32), batched=False).result(WAIT)
    assert heavy.stats()[0]["queue_depth"] == 4
    gate.set()
    blocker.result(WAIT)
    assert [f.result(WAIT).policy_step.action[0] for f in queued] == [0, 2, 4, 6]
    assert backend.batch_sizes == [1] * 5


@pytest.mark.skipif(not shm.available(), reason="no POSIX shared memory")
def test_a_shared_memory_slot_is_a_client_of_its_own(servers):
    from tests.shm.test_plane import deadline, leaves_of, open_slot  # pylint: disable=import-outside-toplevel

    server, backend, gate, heavy, blocker = _held(servers, max_batch_size=4)
    backlog = [send(heavy, obs_rows(100 * i, 4), batched=True) for i in range(3)]
    wait_for_queue_depth(heavy, 3)
    slot = open_slot(server)
    answers = []
    caller = threading.Thread(target=lambda: answers.append(
        slot.call(leaves_of(backend, np.full(3, 9, np.float32)), 0, None, deadline())))
    caller.start()
    wait_for_queue_depth(heavy, 4)
    gate.set()
    caller.join(WAIT)
    blocker.result(WAIT)
    for future in backlog:
        future.result(WAIT)
    np.testing.assert_array_equal(answers[0][2][0], [18] * 3)
    assert backend.batch_sizes == [1, 1, 4, 4, 4]
    np.testing.assert_array_equal(backend.observations[1], [[9, 9, 9]])
    slot.close()
