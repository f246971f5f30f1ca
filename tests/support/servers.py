"""Servers and clients for tests that always get cleaned up, and gated test backends.

Every server listens on 127.0.0.1 with port 0 (BackgroundServer). Tests that
hold a batch in flight use `GatedEchoBackend`: its `entered` event tells the
test that the backend call started, its gate (a threading.Event) decides when
it finishes. Every gate handed to `serve` is opened at teardown, so a failing
test never leaves the server stuck.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import grpc
import numpy as np
import pytest

from policy_client import PolicyClient
from policy_client.wire.generated import policy_service_pb2_grpc as service_grpc
from policy_server.server import BackgroundServer
from tests.support.fakes import EchoBackend, FailingBackend

# Upper bound of any wait on a condition in these tests (seconds).
WAIT = 20.0


class GatedMixin:
    """Records each call's observations and signals each call's start."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.calls = 0
        self.observations: list[np.ndarray] = []

    def action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        self.calls += 1
        self.observations.append(np.array(time_step.observation, copy=True))
        self.entered.set()
        return super().action(time_step, policy_state, seed)


class GatedEchoBackend(GatedMixin, EchoBackend):
    """EchoBackend that records every call's observations and sets `entered` on each call."""


class GatedFailingBackend(GatedMixin, FailingBackend):
    """FailingBackend (raises on NaN) that records every attempted call."""


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Polls `predicate` (for state that has no event to wait on) until true or fails."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.005)


def queue_depth(client: PolicyClient) -> int:
    """The server's queue depth of the client's policy (from GetStats)."""
    return client.stats()[0]["queue_depth"]


def wait_for_queue_depth(client: PolicyClient, depth: int) -> None:
    wait_until(lambda: queue_depth(client) == depth, f"queue depth {depth}")


class Servers:
    """Starts servers and clients for one test; stops and closes them all at teardown."""

    def __init__(self) -> None:
        self._servers: list[BackgroundServer] = []
        self._clients: list[PolicyClient] = []
        self._channels: list[grpc.Channel] = []
        self._gates: list[threading.Event] = []

    def serve(self, policies: dict, *, gates: tuple[threading.Event, ...] = (), **kwargs) -> BackgroundServer:
        self._gates.extend(gates)
        for backend in policies.values():
            if getattr(backend, "gate", None) is not None:
                self._gates.append(backend.gate)
        server = BackgroundServer(policies, **kwargs)
        self._servers.append(server)
        return server

    def client(self, address: str, policy: str = "", **kwargs) -> PolicyClient:
        kwargs.setdefault("timeout", WAIT)
        client = PolicyClient(address, policy, **kwargs)
        self._clients.append(client)
        return client

    def stub(self, address: str) -> service_grpc.PolicyServiceStub:
        """A raw stub on a plain channel (no retries, no wait-for-ready)."""
        channel = grpc.insecure_channel(address)
        self._channels.append(channel)
        return service_grpc.PolicyServiceStub(channel)

    def channel(self, address: str) -> grpc.Channel:
        channel = grpc.insecure_channel(address)
        self._channels.append(channel)
        return channel

    def close(self) -> None:
        for gate in self._gates:
            gate.set()
        for client in self._clients:
            client.close()
        for channel in self._channels:
            channel.close()
        for server in self._servers:
            server.stop(grace=1.0)


class Clock:
    """A clock a test advances by hand (for SessionTable.clock): no sleeping on a margin."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def session_clock(server: BackgroundServer, policy: str) -> Clock:
    """Gives the hosted policy's session table a hand-driven clock, and returns it."""
    clock = Clock()
    server.server.registry.get(policy).sessions.clock = clock
    return clock
