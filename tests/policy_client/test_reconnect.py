"""A client whose server went away is back within half a second of the server serving again.

gRPC's own reconnect backoff grows to 120 s (1 s, 1.6 s, 2.56 s, 4.1 s, ...); the
channels here start at 0.1 s and stay under 0.5 s, so an actor waiting through
a restart does not wait seconds more once the server is back.
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from policy_client import PolicyClient
from policy_client.transport import channel
from policy_server.server import BackgroundServer
from tests.support.fakes import EchoBackend, echo_time_step

OUTAGE = 4.0  # long enough for gRPC's default backoff to have grown past 2.5 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_channels_backoff_is_short():
    assert channel.INITIAL_RECONNECT_BACKOFF_MS <= 100 and channel.MAX_RECONNECT_BACKOFF_MS <= 500


@pytest.mark.parametrize("transport", ["stream", "unary"])
def test_a_waiting_call_is_answered_soon_after_the_server_serves_again(transport):
    address = f"127.0.0.1:{free_port()}"
    step, state = echo_time_step(np.ones(3, np.float32)), {"count": np.array(0, np.int64)}
    server = BackgroundServer({"echo": EchoBackend()}, address=address)
    with PolicyClient(address, "echo", timeout=60, transport=transport, data_plane="grpc") as client:
        client.action(step, state)
        server.stop(grace=1.0)
        answered: list[float] = []
        waiting = threading.Thread(target=lambda: (client.action(step, state), answered.append(time.monotonic())))
        waiting.start()
        time.sleep(OUTAGE)
        assert not answered  # the scenario: the call waited through the outage
        server = BackgroundServer({"echo": EchoBackend()}, address=address)  # returns once it serves
        serving = time.monotonic()
        waiting.join(30)
        server.stop(grace=1.0)
    assert answered, "the waiting call was never answered"
    assert answered[0] - serving < 1.0, f"answered {answered[0] - serving:.2f} s after the server served"
