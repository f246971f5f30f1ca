"""Several replicas behind one target: round robin by default, health-aware, failover of streams."""

from __future__ import annotations

import time

import numpy as np
from grpc_health.v1 import health_pb2

from policy_client import PolicyClient
from policy_client.transport.channel import several_addresses
from policy_server.server import BackgroundServer
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT, wait_until

OBS = np.zeros(3, np.float32)


def _served(server: BackgroundServer) -> int:
    with PolicyClient(server.address, "echo") as client:
        return client.stats()[0]["requests"]


def test_targets_of_several_addresses_are_balanced_by_default():
    assert several_addresses("ipv4:127.0.0.1:1,127.0.0.1:2") and several_addresses("dns:///policy:50051")
    assert not several_addresses("127.0.0.1:1") and not several_addresses("unix:/tmp/x")
    replicas = [BackgroundServer({"echo": EchoBackend(stateful=False)}) for _ in range(2)]
    try:
        target = "ipv4:" + ",".join(r.address for r in replicas)
        with PolicyClient(target, "echo", transport="unary", timeout=WAIT, data_plane="grpc") as client:
            for _ in range(40):
                client.action(echo_time_step(OBS))
        counts = [_served(r) for r in replicas]
        assert sum(counts) == 40 and min(counts) >= 10, counts
    finally:
        for replica in replicas:
            replica.stop()


def test_a_replica_that_is_not_serving_gets_no_calls():
    replicas = [BackgroundServer({"echo": EchoBackend(stateful=False)}) for _ in range(2)]
    try:
        replicas[1].run(replicas[1].server._set_health(health_pb2.HealthCheckResponse.NOT_SERVING))  # pylint: disable=protected-access
        target = "ipv4:" + ",".join(r.address for r in replicas)
        with PolicyClient(target, "echo", transport="unary", timeout=WAIT) as client:
            for _ in range(30):
                client.action(echo_time_step(OBS))
        assert _served(replicas[1]) == 0 and _served(replicas[0]) == 30
    finally:
        for replica in replicas:
            replica.stop()


def test_a_stream_whose_replica_stops_moves_to_another_without_failing_a_call():
    replicas = [BackgroundServer({"echo": EchoBackend(stateful=False)}) for _ in range(2)]
    try:
        target = "ipv4:" + ",".join(r.address for r in replicas)
        with PolicyClient(target, "echo", timeout=WAIT) as client:
            for _ in range(5):
                client.action(echo_time_step(OBS))
            first = next(i for i, r in enumerate(replicas) if _served(r) == 5)
            replicas[first].stop()
            start = time.monotonic()
            for i in range(20):
                step = client.action(echo_time_step(np.full(3, i, np.float32))).policy_step
                np.testing.assert_array_equal(step.action, np.full(3, 2 * i, np.float32))
            assert time.monotonic() - start < WAIT
            wait_until(lambda: _served(replicas[1 - first]) == 20, "the other replica answered")
    finally:
        for replica in replicas:
            replica.stop()


def test_versions_never_go_backwards_for_an_actor_across_replicas():
    """Replica A serves version 5, B version 2: after A answered, B waits to catch up (or refuses)."""
    from policy_client import FailedPreconditionError, RemotePolicy  # pylint: disable=import-outside-toplevel

    ahead, behind = (BackgroundServer({"echo": EchoBackend(stateful=False, version=v)}) for v in (5, 2))
    try:
        with RemotePolicy(ahead.address, "echo", timeout=WAIT, transport="unary") as remote:
            remote.action(echo_time_step(OBS))
            assert remote.last_version == 5 and remote.client.min_version == 5
            # The same actor's calls now land on the replica that is behind: refused after the wait.
            lagging = PolicyClient(behind.address, "echo", transport="unary", timeout=WAIT)
            lagging.min_version = remote.client.min_version
            start = time.monotonic()
            request = lagging.encode_request(echo_time_step(OBS))
            try:
                with_deadline = PolicyClient(behind.address, "echo", transport="unary", timeout=1.0)
                with_deadline.min_version = 5
                try:
                    with_deadline.action(echo_time_step(OBS))
                    raise AssertionError("a replica behind the actor's version answered")
                except FailedPreconditionError as e:
                    assert "served version 2" in str(e) and "5" in str(e) and e.fields[0][0] == "min_version"
                finally:
                    with_deadline.close()
                assert time.monotonic() - start < WAIT
                # When it catches up (a push), it answers.
                from policy_client import VariablePublisher  # pylint: disable=import-outside-toplevel

                waiting = lagging.submit(request)
                with VariablePublisher(behind.address, "echo") as publisher:
                    publisher.push([np.float32(0)], 6)
                assert waiting.result(WAIT).version == 6
            finally:
                lagging.close()
        with RemotePolicy(behind.address, "echo", monotonic_versions=False) as free:
            free.action(echo_time_step(OBS))
            assert free.client.min_version == 0
    finally:
        ahead.stop()
        behind.stop()


def test_a_learner_pushes_to_every_replica_and_learns_what_each_serves():
    from policy_client import FanOutPublisher  # pylint: disable=import-outside-toplevel

    replicas = [BackgroundServer({"echo": EchoBackend(stateful=False)}) for _ in range(3)]
    try:
        replicas[2].stop()  # one replica is down
        with FanOutPublisher("ipv4:" + ",".join(r.address for r in replicas), "echo", timeout=2.0) as publisher:
            result = publisher.push([np.float32(1.5)], 9)
        assert result.versions == {replicas[0].address: 9, replicas[1].address: 9}
        assert list(result.errors) == [replicas[2].address] and not result.complete
        for replica in replicas[:2]:
            with PolicyClient(replica.address, "echo", transport="unary") as client:
                answer = client.action(echo_time_step(OBS))
                assert answer.version == 9 and answer.policy_step.action[0] == 1.5
    finally:
        for replica in replicas[:2]:
            replica.stop()
