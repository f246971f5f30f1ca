"""Clients whose address is a target source follow their replicas when they move (as a Ray fleet's do).

Two servers stand for a replica before and after it moved: EchoBackend's
action is 2 * observation + version, so each answer says which server gave
it. The source is a plain function; a fleet's ReplicaSet is one too.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from policy_client import FanOutPublisher, PolicyClient, RemotePolicy
from policy_client.transport import connection
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT, wait_until

OBS = np.ones(3, np.float32)


class Source:
    """A target source the test moves, counting its reads."""

    def __init__(self, target: str):
        self.target, self.reads = target, 0

    def __call__(self) -> str:
        self.reads += 1
        return self.target


def version_of(client: PolicyClient) -> int:
    """Which server answered: its version, read off the action (2 * obs + version)."""
    action = client.action(echo_time_step(OBS), {"count": np.array(0, np.int64)}).policy_step.action
    return int(round(float(action[0] - 2)))


@pytest.fixture
def fast_watch(monkeypatch):
    monkeypatch.setattr(connection, "REFRESH_INTERVAL", 0.05)


@pytest.mark.parametrize("transport", ["stream", "unary"])
def test_a_client_follows_its_source_to_the_new_target(servers, fast_watch, transport):
    old, new = servers.serve({"echo": EchoBackend(version=1)}), servers.serve({"echo": EchoBackend(version=2)})
    source = Source(old.address)
    with PolicyClient(source, "echo", timeout=WAIT, transport=transport) as client:
        assert client.address == old.address and version_of(client) == 1
        source.target = new.address
        wait_until(lambda: client.address == new.address, "the client moved")
        assert version_of(client) == 2
        assert client.get_specs()[1] == 2  # unary metadata calls go to the new target too


def test_calls_in_flight_when_the_old_server_goes_are_answered_by_the_new_one(servers, fast_watch):
    """Actors keep calling while their server stops and the source names another: no call fails."""
    old, new = servers.serve({"echo": EchoBackend(version=1)}), servers.serve({"echo": EchoBackend(version=2)})
    source = Source(old.address)
    stop, failures, answers = threading.Event(), [], []

    def actor(client: PolicyClient) -> None:
        while not stop.is_set():
            try:
                answers.append(version_of(client))
            except Exception as e:  # pylint: disable=broad-except
                failures.append(e)

    clients = [PolicyClient(source, "echo", timeout=WAIT, transport=t, data_plane="grpc")
               for t in ("stream", "stream", "unary")]
    threads = [threading.Thread(target=actor, args=(c,), daemon=True) for c in clients]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(answers) >= 30, "answers from the old server")
    stopping = threading.Thread(target=old.stop, kwargs={"grace": 2.0})  # the old server drains and goes
    stopping.start()
    stopping.join(WAIT)
    time.sleep(0.3)  # the actors' calls now find no server, and wait
    source.target = new.address
    wait_until(lambda: answers[-1:] == [2] and answers.count(2) >= 30, "answers from the new server")
    stop.set()
    for thread in threads:
        thread.join(WAIT)
    for client in clients:
        client.close()
    assert not failures, failures[:3]
    assert set(answers) == {1, 2} and answers.index(2) > 0
    # The scenario happened: calls were waiting on the old connection when the client moved, and went again.
    assert sum(c._router.resent for c in clients) >= 1  # pylint: disable=protected-access


def test_a_call_that_finds_no_server_reads_the_source_at_once(servers, monkeypatch):
    """With a long refresh interval, only the poke of a failed call can move the client in time."""
    monkeypatch.setattr(connection, "REFRESH_INTERVAL", 3600.0)
    old, new = servers.serve({"echo": EchoBackend(version=1)}), servers.serve({"echo": EchoBackend(version=2)})
    source = Source(old.address)
    with PolicyClient(source, "echo", timeout=WAIT, data_plane="grpc") as client:
        assert version_of(client) == 1
        reads = source.reads
        source.target = new.address
        old.stop(grace=1.0)
        started = time.monotonic()
        assert version_of(client) == 2
        assert source.reads > reads and time.monotonic() - started < WAIT


def test_remote_policy_and_fan_out_take_a_source_too(servers, fast_watch):
    a, b = servers.serve({"echo": EchoBackend()}), servers.serve({"echo": EchoBackend()})
    source = Source(a.address)
    with RemotePolicy(source, "echo", timeout=WAIT) as policy:
        policy.action(echo_time_step(OBS), policy.get_initial_state())
        source.target = f"ipv4:{a.address},{b.address}"
        wait_until(lambda: policy.address == source.target, "the policy moved")
        policy.action(echo_time_step(OBS), policy.get_initial_state())
    with FanOutPublisher(source, "echo", timeout=WAIT) as publisher:
        result = publisher.push([np.float32(5.0)], 7)
        assert result.complete and result.versions == {a.address: 7, b.address: 7}
        source.target = b.address  # a left the set: the next push reaches b alone
        assert publisher.push([np.float32(6.0)], 8).versions == {b.address: 8}


def test_a_source_that_fails_keeps_the_target_in_use(servers, fast_watch):
    server = servers.serve({"echo": EchoBackend(version=3)})
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("the directory is restarting")
        return server.address

    with PolicyClient(flaky, "echo", timeout=WAIT) as client:
        wait_until(lambda: len(calls) >= 5, "several failed reads")
        assert client.address == server.address and version_of(client) == 3
