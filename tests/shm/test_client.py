"""PolicyClient and RemotePolicy over the shared-memory data plane: negotiated, equivalent, and safe under faults."""

from __future__ import annotations

import concurrent.futures
import threading

import grpc
import numpy as np
import pytest

from policy_client import PolicyClient, RemotePolicy
from policy_client.client import DATA_PLANE_ENV
from policy_client.wire import errors
from policy_server.shm import plane as shm
from policy_server.config import BatchingConfig
from policy_server.server import BackgroundServer
from tests.operations.test_metrics import scrape, value
from tests.support.fakes import EchoBackend, FailingBackend, echo_time_step
from tests.support.servers import WAIT, GatedEchoBackend, wait_for_queue_depth, wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not shm.available(), reason="no POSIX shared memory")]


def count(n: int = 0, rows: int = 0) -> dict:
    return {"count": np.full((rows,) if rows else (), n, np.int64)}


def answers(client: PolicyClient, calls: int = 5) -> list:
    out = []
    for i in range(calls):
        step = client.action(echo_time_step(np.full(3, i, np.float32)), count(i)).policy_step
        batched = client.action(echo_time_step(np.full((4, 3), i, np.float32), 4), count(i, 4), batch_size=4)
        out.append((step, batched.policy_step))
    return out


def same(a, b) -> None:
    import tree  # pylint: disable=import-outside-toplevel

    tree.assert_same_structure(a, b)
    for x, y in zip(tree.flatten(a), tree.flatten(b)):
        assert type(x) is type(y) and x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def test_a_client_on_the_servers_host_takes_shared_memory_with_the_same_answers(servers):
    server = servers.serve({"echo": EchoBackend()})
    shared = servers.client(server.address, "echo")
    over_grpc = servers.client(server.address, "echo", data_plane="grpc")
    got, expected = answers(shared), answers(over_grpc)
    assert shared.data_plane == "shm" and over_grpc.data_plane == "grpc"
    for a, b in zip(got, expected):
        same(a, b)
    assert server.server.shared_memory.open_slots == 1


def test_the_slot_grows_for_larger_batches_and_requests_over_the_message_limit_take_grpc(servers):
    backend = EchoBackend()
    server = servers.serve({"echo": backend}, max_message_bytes=4096)
    client = servers.client(server.address, "echo", data_plane="shm")
    client.action(echo_time_step(np.zeros(3, np.float32)), count())
    for rows in (1, 3, 64):
        result = client.action(echo_time_step(np.ones((rows, 3), np.float32), rows), count(0, rows), batch_size=rows)
        np.testing.assert_array_equal(result.policy_step.action, np.full((rows, 3), 2))
    assert client.data_plane == "shm"
    with pytest.raises(errors.ResourceExhaustedError):  # 1,000 rows: over the 4 KB limit, as over gRPC
        client.action(echo_time_step(np.ones((1000, 3), np.float32), 1000), count(0, 1000), batch_size=1000)


def test_errors_keep_their_types_and_the_slot_goes_on(servers):
    server = servers.serve({"failing": FailingBackend()})
    client = servers.client(server.address, "failing", data_plane="shm")
    client.action(echo_time_step(np.zeros(3, np.float32)), count())
    with pytest.raises(RuntimeError, match="NaN in observation") as info:
        client.action(echo_time_step(np.full(3, np.nan, np.float32)), count())
    assert isinstance(info.value, errors.InternalError) and client.data_plane == "shm"
    assert client.action(echo_time_step(np.ones(3, np.float32)), count(1)).policy_step.state["count"] == 2


def test_seeded_requests_answer_as_over_grpc(servers):
    server = servers.serve({"echo": EchoBackend()})
    shared = servers.client(server.address, "echo", data_plane="shm")
    over_grpc = servers.client(server.address, "echo", data_plane="grpc")
    for client in (shared, over_grpc):
        client.action(echo_time_step(np.zeros(3, np.float32)), count())
    step = echo_time_step(np.ones(3, np.float32))
    same(shared.action(step, count(), seed=42).policy_step, over_grpc.action(step, count(), seed=42).policy_step)


def test_grpc_only_when_asked_or_impossible(servers, monkeypatch):
    server = servers.serve({"echo": EchoBackend()})
    monkeypatch.setenv(DATA_PLANE_ENV, "grpc")
    by_env = servers.client(server.address, "echo")
    answers(by_env, 2)
    assert by_env.data_plane == "grpc" and server.server.shared_memory.open_slots == 0
    monkeypatch.delenv(DATA_PLANE_ENV)
    off = servers.serve({"echo": EchoBackend()}, shared_memory=False)
    quiet = servers.client(off.address, "echo")  # auto: silently gRPC
    answers(quiet, 2)
    assert quiet.data_plane == "grpc"
    forced = servers.client(off.address, "echo", data_plane="shm")
    forced.action(echo_time_step(np.zeros(3, np.float32)), count())  # the first call learns the specs
    with pytest.raises(errors.FailedPreconditionError, match="data_plane='shm'"):
        forced.action(echo_time_step(np.zeros(3, np.float32)), count())
    with pytest.raises(ValueError, match="data_plane"):
        PolicyClient(server.address, "echo", data_plane="tcp")


def test_a_deadline_on_the_slot_then_grpc_until_the_late_answer_is_taken(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate, stateful=False)
    server = servers.serve({"echo": backend}, gates=(gate,))
    client = servers.client(server.address, "echo", data_plane="shm", timeout=WAIT)
    gate.set()
    client.action(echo_time_step(np.zeros(3, np.float32)))
    client.action(echo_time_step(np.zeros(3, np.float32)))
    assert client.data_plane == "shm"
    gate.clear()
    client.timeout = 0.3
    with pytest.raises(errors.DeadlineExceededError, match="shared memory"):
        client.action(echo_time_step(np.ones(3, np.float32)))
    client.timeout = WAIT
    late = client.action_async(echo_time_step(np.full(3, 5, np.float32)))  # the slot owes: over gRPC
    gate.set()
    np.testing.assert_array_equal(late.result(WAIT).policy_step.action, [10, 10, 10])
    wait_until(lambda: client.action(echo_time_step(np.full(3, 7, np.float32))).policy_step.action[0] == 14
               and client.data_plane == "shm", "the slot free again")


def test_threads_sharing_one_client_are_each_answered_once(servers):
    server = servers.serve({"echo": EchoBackend(stateful=False)}, batching=BatchingConfig(max_batch_delay=0.001))
    client = servers.client(server.address, "echo", data_plane="shm")
    client.action(echo_time_step(np.zeros(3, np.float32)))

    def call(i: int) -> float:
        return float(client.action(echo_time_step(np.full(3, i, np.float32))).policy_step.action[0])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(400)))
    assert results == [2.0 * i for i in range(400)]


def test_a_call_in_flight_keeps_its_slot_while_another_thread_grows_it(servers):
    """A thread's larger batch replaces the client's slot; a call in flight on the old one gets its answer there.

    (The old slot used to close under it: an uncaught OSError, or the request sent again over gRPC.)
    """
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate, stateful=False)
    # inline_threshold=0: batches run on the inference thread, so OpenSlot is served while one is held.
    server = servers.serve({"echo": backend}, gates=(gate,),
                           batching=BatchingConfig(max_batch_delay=0.001, inline_threshold=0.0))
    client = servers.client(server.address, "echo", data_plane="shm", timeout=WAIT)
    gate.set()
    client.action(echo_time_step(np.zeros(3, np.float32)))  # a one-row slot
    fallbacks = dict(client.shm_fallbacks)
    stats = servers.client(server.address, "echo", data_plane="grpc")
    gate.clear()
    backend.entered.clear()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        small = pool.submit(client.action, echo_time_step(np.full(3, 5, np.float32)))
        assert backend.entered.wait(WAIT)  # in flight on the one-row slot
        large = pool.submit(client.action, echo_time_step(np.full((4, 3), 6, np.float32), 4), batch_size=4)
        wait_for_queue_depth(stats, 1)  # sent through the larger slot, which replaced the client's
        gate.set()
        np.testing.assert_array_equal(small.result(WAIT).policy_step.action, [10, 10, 10])
        np.testing.assert_array_equal(large.result(WAIT).policy_step.action, np.full((4, 3), 12))
    assert dict(client.shm_fallbacks) == fallbacks
    assert sum(int((o.reshape(-1, 3) == 5).all(axis=1).sum()) for o in backend.observations) == 1  # computed once
    wait_until(lambda: server.server.shared_memory.open_slots == 1, "the old slot closed")


def test_a_restarted_server_is_reached_again_with_nothing_lost(servers):
    first = BackgroundServer({"echo": EchoBackend(stateful=False)})
    port = first.port
    client = servers.client(first.address, "echo", timeout=WAIT)
    try:
        for i in range(3):
            client.action(echo_time_step(np.full(3, i, np.float32)))
        assert client.data_plane == "shm"
    finally:
        first.stop(1.0)
    second = servers.serve({"echo": EchoBackend(stateful=False, version=7)}, address=f"127.0.0.1:{port}")
    results = [client.action(echo_time_step(np.full(3, i, np.float32))) for i in range(20)]
    assert [r.policy_step.action[0] for r in results] == [2.0 * i + 7 for i in range(20)]
    assert {r.version for r in results} == {7}
    wait_until(lambda: client.action(echo_time_step(np.zeros(3, np.float32))) is not None
               and client.data_plane == "shm", "a slot on the new server")
    assert second.server.shared_memory.open_slots == 1


def test_shared_memory_requests_are_counted_in_stats_and_metrics(servers):
    server = servers.serve({"echo": EchoBackend()}, metrics_port=0)
    client = servers.client(server.address, "echo", data_plane="shm")
    answers(client, 3)
    stats = client.stats()[0]
    assert stats["requests"] == 6 and stats["shared_memory_slots"] == 1
    samples = scrape(server)
    assert value(samples, "tfa_policy_requests_total", policy="echo", method="SharedMemoryAction", code="OK") == 5
    assert value(samples, "tfa_policy_shared_memory_slots", policy="echo") == 1
    client.close()
    wait_until(lambda: value(scrape(server), "tfa_policy_shared_memory_slots", policy="echo") == 0,
               "the closed client's slot freed")


def test_remote_policy_in_a_driver_over_shared_memory_equals_the_local_policy(servers):
    from tf_agents.drivers import py_driver  # pylint: disable=import-outside-toplevel
    from tf_agents.environments import suite_gym  # pylint: disable=import-outside-toplevel
    from tf_agents.policies import py_tf_eager_policy  # pylint: disable=import-outside-toplevel

    from examples.cartpole import cartpole_q_policy  # pylint: disable=import-outside-toplevel

    tf_policy = cartpole_q_policy(seed=3)
    local = py_tf_eager_policy.PyTFEagerPolicy(tf_policy, use_tf_function=True)
    server = servers.serve({"cartpole": tf_policy})
    remote = RemotePolicy(server.address, "cartpole", data_plane="shm")
    try:
        actions = {}
        for name, policy in (("local", local), ("remote", remote)):
            env = suite_gym.load("CartPole-v0")
            env.seed(11)
            seen = []
            py_driver.PyDriver(env, policy, [lambda t: seen.append(int(t.action))], max_steps=60).run(env.reset())
            actions[name] = seen
        assert actions["remote"] == actions["local"] and remote.client.data_plane == "shm"
    finally:
        remote.close()
