"""One client cannot take the server: a stream that writes without reading is held back."""

from __future__ import annotations

import threading
import time

import numpy as np

from policy_server.handlers import MAX_INFLIGHT_PER_STREAM
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT

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
    from policy_server.config import BatchingConfig  # pylint: disable=import-outside-toplevel
    from tests.policy_server.test_batching import hold_first_batch, obs_rows, send  # pylint: disable=import-outside-toplevel
    from tests.support.servers import GatedEchoBackend, wait_for_queue_depth  # pylint: disable=import-outside-toplevel

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
