"""RemotePolicy's max_version_lag and an explicit load_balancing, against two real replicas of different versions.

Replica A serves version 5, replica B version 3 (EchoBackend answers its
version in info["version"]). With monotonic versions, an answer may be at most
max_version_lag behind the newest seen: lag 2 accepts B, lag 1 refuses it
(B waits for a version it never reaches, then FailedPreconditionError naming
min_version). load_balancing="pick_first" sends every call to the first
address; the default over several addresses is round robin.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from tf_agents.trajectories import time_step as ts

from policy_client import RemotePolicy
from policy_client.wire import errors
from policy_server.server import BackgroundServer
from tests.support.fakes import EchoBackend


@pytest.fixture
def replicas():
    servers = [BackgroundServer({"echo": EchoBackend(version=5)}), BackgroundServer({"echo": EchoBackend(version=3)})]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def _versions(policy: RemotePolicy, calls: int, seconds: float = 0.0) -> list[int]:
    """The versions of `calls` answers, and of more until `seconds` passed (round robin uses a replica once
    its connection is ready: the first calls may all go to the one that connected first)."""
    state = {"count": np.array(0, np.int64)}  # not get_initial_state: its calls would take turns with the actions
    step = ts.restart(np.ones(3, np.float32))
    out, until = [], time.monotonic() + seconds
    while len(out) < calls or (time.monotonic() < until and len(set(out)) < 2):
        out.append(int(policy.action(step, state).info["version"]))
        time.sleep(0.005)
    return out


def test_max_version_lag_accepts_a_replica_within_it_and_refuses_one_beyond(replicas):
    target = "ipv4:" + ",".join(r.address for r in replicas)
    with RemotePolicy(target, "echo", transport="unary", monotonic_versions=True, max_version_lag=2,
                      timeout=10) as policy:
        versions = _versions(policy, 12, seconds=5)
    assert set(versions) == {3, 5}, versions  # B (3) is within 2 of A (5)
    with RemotePolicy(target, "echo", transport="unary", monotonic_versions=True, max_version_lag=1,
                      timeout=1.0) as policy:
        seen = []
        with pytest.raises(errors.FailedPreconditionError, match="min_version"):
            until = time.monotonic() + 5
            while time.monotonic() < until:
                seen += _versions(policy, 1)
                time.sleep(0.005)
    assert 5 in seen and 3 not in seen[seen.index(5):], seen  # after 5, nothing older than 4 was accepted


def test_an_explicit_load_balancing_policy_is_used(replicas):
    target = "ipv4:" + ",".join(r.address for r in replicas)
    with RemotePolicy(target, "echo", transport="unary", load_balancing="pick_first", monotonic_versions=False,
                      timeout=10) as policy:
        assert set(_versions(policy, 10, seconds=1)) == {5}  # every call to the first address
    with RemotePolicy(target, "echo", transport="unary", monotonic_versions=False, timeout=10) as policy:
        assert set(_versions(policy, 10, seconds=5)) == {3, 5}  # the default over several addresses: round robin
