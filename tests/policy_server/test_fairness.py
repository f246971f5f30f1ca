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
