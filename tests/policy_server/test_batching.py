"""Dynamic batching: merging, limits, padding, seeds, queue bound and failure isolation.

The ordering tests hold one batch in flight with a gate, queue the requests
they want in a known order (waiting on the server's queue depth between
sends), then open the gate and check exactly which backend calls ran.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

import grpc
import numpy as np
import pytest

from policy_client.wire import errors as client_errors
from policy_server.config import BatchingConfig
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import (WAIT, GatedEchoBackend, GatedFailingBackend, wait_for_queue_depth,
                                   wait_until)

pytestmark = pytest.mark.timeout(120)


def obs_rows(start: float, rows: int) -> np.ndarray:
    """`rows` distinct observation rows of EchoBackend's shape (3,)."""
    return (np.arange(rows * 3, dtype=np.float32).reshape(rows, 3) + start).astype(np.float32)


def send(client, obs: np.ndarray, *, batched: bool, seed: int | None = None):
    """Asynchronously asks for an action on `obs` with a zero count state."""
    if batched:
        state = {"count": np.zeros(len(obs), np.int64)}
        return client.action_async(echo_time_step(obs, len(obs)), state, batch_size=len(obs), seed=seed)
    return client.action_async(echo_time_step(obs), {"count": np.array(0, np.int64)}, seed=seed)


def hold_first_batch(client, backend: GatedEchoBackend) -> concurrent.futures.Future:
    """Sends a blocker request and waits until its backend call is in flight."""
    blocker = send(client, np.full(3, -1, np.float32), batched=False)
    assert backend.entered.wait(WAIT), "the blocker never reached the backend"
    return blocker


# ----------------------------------------------------------------- BatchingConfig


@pytest.mark.parametrize("kwargs, field", [
    ({"max_batch_size": 0}, "max_batch_size"),
    ({"max_batch_size": -3}, "max_batch_size"),
    ({"max_batch_delay": -0.001}, "max_batch_delay"),
    ({"max_queue_size": 0}, "max_queue_size"),
    ({"max_batch_size": 8, "allowed_batch_sizes": (2, 4)}, "allowed_batch_sizes"),
    ({"max_batch_size": 8, "allowed_batch_sizes": (0, 8)}, "allowed_batch_sizes"),
])
def test_batching_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        BatchingConfig(**kwargs)


def test_batching_config_sorts_allowed_sizes():
    config = BatchingConfig(max_batch_size=8, allowed_batch_sizes=(8, 2, 4))
    assert config.allowed_batch_sizes == (2, 4, 8)
    assert BatchingConfig(max_batch_size=1, max_batch_delay=0.0, max_queue_size=1).max_queue_size == 1


# ----------------------------------------------------------------- merging


@pytest.mark.parametrize("transport", ["unary", "stream"])
def test_concurrent_clients_are_batched_within_max_batch_size(servers, transport):
    backend = EchoBackend(delay=0.02, stateful=False)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=6, max_batch_delay=0.01))
    n_clients, n_requests = 10, 6
    clients = [servers.client(server.address, "echo", transport=transport) for _ in range(n_clients)]
    start = threading.Barrier(n_clients)

    def actor(i: int) -> list[tuple[np.ndarray, np.ndarray]]:
        start.wait(WAIT)
        out = []
        for j in range(n_requests):
            obs = np.array([i, j, i * 100 + j], np.float32)
            out.append((obs, clients[i].action(echo_time_step(obs)).policy_step.action))
        return out

    with concurrent.futures.ThreadPoolExecutor(n_clients) as pool:
        results = [r for rs in pool.map(actor, range(n_clients)) for r in rs]
    for obs, action in results:
        np.testing.assert_array_equal(action, 2 * obs)
    sizes = backend.batch_sizes
    assert max(sizes) <= 6
    assert max(sizes) > 1, f"no batching under concurrency: {sizes}"
    assert sum(sizes) == n_clients * n_requests
    stats = clients[0].stats()[0]
    assert stats["mean_batch_size"] > 1.0
    assert stats["batches"] == len(sizes)
    assert stats["rows"] == stats["requests"] == n_clients * n_requests
    assert stats["mean_batch_size"] == pytest.approx(stats["rows"] / stats["batches"])


def test_batched_request_rows_stay_together_in_one_call(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=8, max_batch_delay=0.001))
    client = servers.client(server.address, "echo")
    blocker = hold_first_batch(client, backend)
    # Queued in this order: 1 row, 5 rows, 1, 1 (= 8 rows), then 1 more.
    plan = [(obs_rows(10, 1)[0], False), (obs_rows(100, 5), True), (obs_rows(200, 1)[0], False),
            (obs_rows(300, 1)[0], False), (obs_rows(400, 1)[0], False)]
    futures = []
    for depth, (obs, batched) in enumerate(plan, start=1):
        futures.append(send(client, obs, batched=batched))
        wait_for_queue_depth(client, depth)
    gate.set()
    blocker.result(WAIT)
    for (obs, batched), future in zip(plan, futures):
        step = future.result(WAIT).policy_step
        np.testing.assert_array_equal(step.action, 2 * obs)
        np.testing.assert_array_equal(step.state["count"], np.ones(len(obs), np.int64) if batched else 1)
    assert backend.batch_sizes == [1, 8, 1]
    merged = backend.observations[1]
    np.testing.assert_array_equal(merged[1:6], plan[1][0])  # the 5 rows, contiguous, in one call
    np.testing.assert_array_equal(merged[[0, 6, 7]], np.stack([plan[0][0], plan[2][0], plan[3][0]]))


def test_request_larger_than_max_batch_size_is_split_across_batches(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=4, max_batch_delay=0.001))
    client = servers.client(server.address, "echo")
    blocker = hold_first_batch(client, backend)
    plan = [(obs_rows(10, 1)[0], False), (obs_rows(100, 5), True), (obs_rows(200, 1)[0], False)]
    futures = []
    for depth, (obs, batched) in zip((1, 2, 3), plan):  # the 5 rows: pieces of 4 and 1, queued one at a time
        futures.append(send(client, obs, batched=batched))
        wait_for_queue_depth(client, depth)
    gate.set()
    blocker.result(WAIT)
    for (obs, _), future in zip(plan, futures):
        np.testing.assert_array_equal(future.result(WAIT).policy_step.action, 2 * obs)
    five = futures[1].result(WAIT).policy_step
    np.testing.assert_array_equal(five.state["count"], np.ones(5))
    # 1 + 4 > 4: the first row goes alone, then 4 of the 5 rows; their last piece queued behind
    # the row sent after them, which it joins: other requests interleave with a split one.
    assert backend.batch_sizes == [1, 1, 4, 2]
    np.testing.assert_array_equal(backend.observations[3][:1], plan[2][0][None])
    np.testing.assert_array_equal(np.concatenate([backend.observations[2], backend.observations[3][1:]]),
                                  plan[1][0])
    stats = client.stats()[0]
    assert stats["requests"] == 4 and stats["rows"] == 8 and stats["queue_depth"] == 0


def test_split_requests_are_padded_to_allowed_sizes(servers):
    backend = EchoBackend()
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=4, allowed_batch_sizes=(2, 4)))
    client = servers.client(server.address, "echo")
    obs = obs_rows(0, 11)
    step = send(client, obs, batched=True).result(WAIT).policy_step
    np.testing.assert_array_equal(step.action, 2 * obs)
    assert backend.batch_sizes == [4, 4, 4]  # 4 + 4 + 3 rows, the last padded to 4


def test_a_push_waits_for_a_split_request_so_its_answer_has_one_version(servers):
    from policy_client import VariablePublisher  # pylint: disable=import-outside-toplevel

    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=2))
    client = servers.client(server.address, "echo")
    blocker = hold_first_batch(client, backend)
    big = send(client, obs_rows(0, 6), batched=True)
    wait_for_queue_depth(client, 1)  # three pieces, queued one at a time
    with VariablePublisher(server.address, "echo") as publisher, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        push = pool.submit(publisher.push, [np.float32(100)], 7)
        scheduler = server.server.registry.get("echo").scheduler
        wait_until(lambda: scheduler.exclusive_waiting == 1, "the push queued behind the batch in flight")
        assert not big.done()
        gate.set()
        blocker.result(WAIT)
        result = big.result(WAIT)
        assert push.result(WAIT) == 7
    # Every row of the split request came from version 0 (bias 0): the push waited for its last piece.
    assert result.version == 0
    np.testing.assert_array_equal(result.policy_step.info["version"], np.zeros(6))
    np.testing.assert_array_equal(result.policy_step.action, 2 * obs_rows(0, 6))
    after = send(client, obs_rows(0, 1), batched=True).result(WAIT)
    assert after.version == 7 and after.policy_step.action[0, 0] == 100


def test_seeded_request_larger_than_max_batch_size_runs_alone_whole(servers):
    backend = EchoBackend()
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=2, allowed_batch_sizes=(1, 2)))
    client = servers.client(server.address, "echo")
    obs = obs_rows(0, 5)
    step = send(client, obs, batched=True, seed=3).result(WAIT).policy_step
    np.testing.assert_array_equal(step.action, 2 * obs + 3)
    assert backend.batch_sizes == [5] and backend.seeds == [3]  # one call, as the local policy would make


# ----------------------------------------------------------------- seeds


def test_seeded_requests_run_in_their_own_call(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=8, max_batch_delay=0.001))
    client = servers.client(server.address, "echo")
    blocker = hold_first_batch(client, backend)
    plan = [(obs_rows(10, 1)[0], None), (obs_rows(20, 1)[0], 1005), (obs_rows(30, 1)[0], None),
            (obs_rows(40, 1)[0], None)]
    futures = []
    for depth, (obs, seed) in enumerate(plan, start=1):
        futures.append(send(client, obs, batched=False, seed=seed))
        wait_for_queue_depth(client, depth)
    gate.set()
    blocker.result(WAIT)
    actions = [f.result(WAIT).policy_step.action for f in futures]
    np.testing.assert_array_equal(actions[1], 2 * plan[1][0] + 5)  # EchoBackend adds seed % 1000
    for i in (0, 2, 3):
        np.testing.assert_array_equal(actions[i], 2 * plan[i][0])
    # The unseeded one before the seed runs alone too: a batch never crosses a seeded request.
    assert backend.batch_sizes == [1, 1, 1, 2]
    assert backend.seeds == [None, None, 1005, None]
    again = client.action(echo_time_step(plan[1][0]), {"count": np.array(0, np.int64)}, seed=1005)
    np.testing.assert_array_equal(again.policy_step.action, actions[1])
    assert backend.seeds[-1] == 1005 and backend.batch_sizes[-1] == 1


# ----------------------------------------------------------------- padding


def test_batches_are_padded_to_allowed_sizes(servers):
    backend = EchoBackend(delay=0.005)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(
        max_batch_size=8, max_batch_delay=0.005, allowed_batch_sizes=(4, 8)))
    client = servers.client(server.address, "echo")
    single = client.action(echo_time_step(np.array([1, 2, 3], np.float32)), {"count": np.array(7, np.int64)})
    np.testing.assert_array_equal(single.policy_step.action, [2, 4, 6])
    assert single.policy_step.state["count"] == 8 and np.shape(single.policy_step.state["count"]) == ()
    assert backend.batch_sizes == [4]
    five = obs_rows(0, 5)
    step = client.action(echo_time_step(five, 5), {"count": np.arange(5)}, batch_size=5).policy_step
    np.testing.assert_array_equal(step.action, 2 * five)
    np.testing.assert_array_equal(step.state["count"], np.arange(5) + 1)
    assert backend.batch_sizes == [4, 8]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        def one(i: int) -> None:
            obs = np.array([i, -i, 0.5 * i], np.float32)
            result = client.action(echo_time_step(obs), {"count": np.array(i, np.int64)})
            np.testing.assert_array_equal(result.policy_step.action, 2 * obs)
            assert result.policy_step.state["count"] == i + 1

        list(pool.map(one, range(40)))
    assert set(backend.batch_sizes) <= {4, 8}, backend.batch_sizes
    stats = client.stats()[0]
    assert stats["rows"] == 1 + 5 + 40  # padding rows are not counted as traffic


# ----------------------------------------------------------------- queue bound


@pytest.mark.parametrize("transport", ["unary", "stream"])
def test_full_queue_rejects_with_resource_exhausted(servers, transport):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(
        max_batch_size=1, max_batch_delay=0.0, max_queue_size=2))
    client = servers.client(server.address, "echo", transport=transport)
    blocker = hold_first_batch(client, backend)
    queued = []
    for i in range(2):
        queued.append((obs_rows(10 * i, 1)[0], send(client, obs_rows(10 * i, 1)[0], batched=False)))
        wait_for_queue_depth(client, i + 1)
    # Another client: on one stream, answers come in request order, so a
    # rejection would wait behind the held requests.
    # Its deadline is short: it sends each refused call again after the retry hint until then.
    other = servers.client(server.address, "echo", transport=transport, timeout=0.3)
    for i in range(4):  # one in flight + 2 waiting: the queue is full
        with pytest.raises(client_errors.ResourceExhaustedError, match="'echo'.s queue is full") as raised:
            other.action(echo_time_step(obs_rows(100, 1)[0]), {"count": np.array(0, np.int64)})
        assert raised.value.reason == client_errors.QUEUE_FULL and 0.001 <= raised.value.retry_delay <= 1.0
    stats = client.stats()[0]
    sent_again = other._router.current.sender.queue_full  # pylint: disable=protected-access
    assert sent_again >= 4, "each call went again at least once after its retry hint"
    # Every refusal is counted; a last attempt cut by the client's deadline may not have reached the server.
    assert stats["queue_depth"] == 2 and 4 + sent_again - 4 <= stats["errors"] <= 4 + sent_again, (stats, sent_again)
    gate.set()
    blocker.result(WAIT)
    for obs, future in queued:
        np.testing.assert_array_equal(future.result(WAIT).policy_step.action, 2 * obs)
    assert backend.batch_sizes == [1, 1, 1]
    # With room again, requests are accepted.
    assert client.action(echo_time_step(obs_rows(0, 1)[0]), {"count": np.array(0, np.int64)}).version == 0


# ----------------------------------------------------------------- failures


def test_failed_batch_is_retried_one_by_one(servers):
    gate = threading.Event()
    backend = GatedFailingBackend(gate=gate)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=64, max_batch_delay=0.001))
    client = servers.client(server.address, "echo")
    blocker = hold_first_batch(client, backend)
    goods = [obs_rows(10 * i, 1)[0] for i in range(6)]
    futures = []
    for i, obs in enumerate(goods[:3]):
        futures.append(send(client, obs, batched=False))
        wait_for_queue_depth(client, i + 1)
    bad = send(client, np.array([1, np.nan, 3], np.float32), batched=False)
    wait_for_queue_depth(client, 4)
    for i, obs in enumerate(goods[3:]):
        futures.append(send(client, obs, batched=False))
        wait_for_queue_depth(client, 5 + i)
    gate.set()
    blocker.result(WAIT)
    with pytest.raises(client_errors.RemoteError) as info:
        bad.result(WAIT)
    assert info.value.code == grpc.StatusCode.INTERNAL
    assert "NaN in observation" in info.value.details
    for obs, future in zip(goods, futures):
        np.testing.assert_array_equal(future.result(WAIT).policy_step.action, 2 * obs)
    # The whole batch of 7 was tried once (and failed), then each request alone.
    attempted = [len(o) for o in backend.observations]
    assert attempted == [1, 7] + [1] * 7, attempted
    stats = client.stats()[0]
    assert stats["errors"] == 1
    assert stats["requests"] == stats["rows"] == 7  # blocker + 6 good ones


def test_unbatchable_backend_gets_each_request_as_sent_without_waiting(servers):
    backend = EchoBackend(stateful=False)
    backend.batchable = False
    # A long batch delay must not matter: such a backend never merges requests.
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=64, max_batch_delay=3.0))
    client = servers.client(server.address, "echo")
    for rows in (2, 3, 1):
        obs = obs_rows(rows, rows)
        started = time.monotonic()
        step = client.action(echo_time_step(obs, rows), batch_size=rows).policy_step
        assert time.monotonic() - started < 1.5
        np.testing.assert_array_equal(step.action, 2 * obs)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        sizes = [2, 3, 4, 2, 3, 4]
        results = list(pool.map(lambda n: client.action(echo_time_step(obs_rows(n, n), n), batch_size=n), sizes))
    for n, result in zip(sizes, results):
        np.testing.assert_array_equal(result.policy_step.action, 2 * obs_rows(n, n))
    assert backend.batch_sizes[:3] == [2, 3, 1]
    assert sorted(backend.batch_sizes[3:]) == sorted(sizes)  # never merged


# ----------------------------------------------------------------- knobs


def test_min_batch_size_waits_for_company_up_to_its_timeout(servers):
    backend = EchoBackend(stateful=False)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(
        max_batch_size=8, min_batch_size=4, min_batch_timeout=30.0))
    client = servers.client(server.address, "echo")
    futures = []
    for i in range(3):
        futures.append(client.action_async(echo_time_step(obs_rows(i, 1)[0])))
        wait_for_queue_depth(client, i + 1)  # held: fewer than 4 rows and the timeout is far
    assert backend.batch_sizes == []
    futures.append(client.action_async(echo_time_step(obs_rows(9, 1)[0])))
    for i, future in enumerate(futures):
        np.testing.assert_array_equal(future.result(WAIT).policy_step.action, 2 * obs_rows((i if i < 3 else 9), 1)[0])
    assert backend.batch_sizes == [4]


def test_min_batch_timeout_bounds_the_wait(servers):
    backend = EchoBackend(stateful=False)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(
        max_batch_size=8, min_batch_size=4, min_batch_timeout=0.2))
    client = servers.client(server.address, "echo")
    started = time.monotonic()
    result = client.action(echo_time_step(obs_rows(0, 1)[0]))
    assert time.monotonic() - started >= 0.18  # it waited for company that never came
    np.testing.assert_array_equal(result.policy_step.action, 2 * obs_rows(0, 1)[0])
    assert backend.batch_sizes == [1]


def test_latency_target_moves_the_delay_within_bounds():
    from policy_server.engine.latency import LatencyTarget  # pylint: disable=import-outside-toplevel

    target = LatencyTarget(0.010)
    assert target.delay == 0.0
    for _ in range(40):
        target.observe([0.001] * 256, 16)  # fast answers: the delay grows, up to half the target
    assert target.delay == pytest.approx(0.005)
    target.observe([0.050] * 256, 8)  # too slow: it halves
    assert target.delay == pytest.approx(0.0025)
    assert target.full(16) and not target.full(15)  # as large as the largest recent batch: no more waiting
    with pytest.raises(ValueError, match="latency target"):
        LatencyTarget(0.0)


def test_a_server_under_a_latency_target_answers_and_reports_its_delay(servers):
    backend = EchoBackend(stateful=False)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=8, target_latency=0.05))
    client = servers.client(server.address, "echo")
    for i in range(300):
        obs = obs_rows(i, 1)[0]
        np.testing.assert_array_equal(client.action(echo_time_step(obs)).policy_step.action, 2 * obs)
    scheduler = next(iter(server.server.registry)).scheduler
    assert 0 < scheduler.batch_delay <= 0.025  # fast answers let it wait a little for company


@pytest.mark.parametrize("kwargs, field", [
    ({"min_batch_size": 0}, "min_batch_size"), ({"max_batch_size": 4, "min_batch_size": 5}, "min_batch_size"),
    ({"min_batch_timeout": -1}, "min_batch_timeout"), ({"target_latency": 0}, "target_latency"),
    ({"inline_threshold": -1}, "inline_threshold")])
def test_batching_knobs_reject_bad_values(kwargs, field):
    with pytest.raises(ValueError, match=field):
        BatchingConfig(**kwargs)


class ThreadRecordingBackend(EchoBackend):
    """Records the thread each backend call runs on."""

    def __init__(self, **kwargs):
        super().__init__(stateful=False, **kwargs)
        self.threads: list[str] = []

    def action(self, time_step, policy_state, seed=None):
        self.threads.append(threading.current_thread().name)
        return super().action(time_step, policy_state, seed)


@pytest.mark.parametrize("delay, threshold, inline", [(0.0, 0.05, True), (0.01, 0.002, False), (0.0, 0.0, False)],
                         ids=["fast-policy-inline", "slow-policy-on-worker", "threshold-0-always-worker"])
def test_fast_policies_run_on_the_event_loop_slow_ones_on_the_worker(servers, delay, threshold, inline):
    backend = ThreadRecordingBackend(delay=delay)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(inline_threshold=threshold))
    client = servers.client(server.address, "echo")
    for i in range(6):
        client.action(echo_time_step(obs_rows(i, 1)[0]))
    assert backend.threads[0].startswith("inference")  # the first batch: its cost is not known yet
    later = set(backend.threads[1:])
    assert later == ({"policy-server"} if inline else {"inference_0"}), backend.threads


def test_unbatched_leaves_stack_as_np_stack_would():
    """batching.stack copies numeric columns with np.array (faster): the result is np.stack's, dtype included."""
    from policy_server.engine import batching  # pylint: disable=import-outside-toplevel

    def request(*leaves):
        return batching.Request(list(leaves), 0, lambda leaves: (leaves, ()))

    lists = np.empty(2, object)
    lists[0], lists[1] = [1, 2], [3]  # objects that are sequences: never taken apart
    columns = {
        "float32 rows": [np.arange(4, dtype=np.float32) + i for i in range(3)],
        "0-d int64": [np.array(i, np.int64) for i in range(16)],
        "numpy scalars": [np.float32(i) for i in range(5)],
        "mixed dtypes": [np.array(1.5, np.float32), np.array(2.5, np.float64)],
        "bytes": [np.array(b"ab"), np.array(b"c")],
        "objects": [lists[i:i + 1].reshape(()) for i in range(2)],  # 0-d object arrays holding lists
    }
    for name, column in columns.items():
        leaves, rows = batching.stack([request(x) for x in column])
        expected = np.stack(column)
        assert rows == len(column) and leaves[0].dtype == expected.dtype and leaves[0].shape == expected.shape, name
        assert list(leaves[0].ravel()) == list(expected.ravel()), name
    base = np.zeros((2, 3), np.float32)
    leaves, _ = batching.stack([request(base[0]), request(base[1])])
    base[0, 0] = 7.0  # a copy: the batch does not alias the requests' buffers (a slot may be rewritten)
    assert leaves[0][0, 0] == 0.0
