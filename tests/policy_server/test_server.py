"""The policy server end to end over gRPC: isolation, state, validation, errors,
loading, shutdown, health, reflection, stats and message limits.

Every server is a real gRPC server on 127.0.0.1 with a port picked by the OS.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from policy_client.wire import errors as client_errors
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_server.config import BatchingConfig
from policy_client.wire import SERVICE_NAME
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT, GatedEchoBackend, wait_for_queue_depth, wait_until

pytestmark = pytest.mark.timeout(120)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def count(value, rows: int | None = None) -> dict:
    """An EchoBackend state: {"count": int64} (batched when rows is given)."""
    return {"count": np.asarray(value, np.int64) if rows is None else np.full(rows, value, np.int64)}


def health_status(channel: grpc.Channel, service: str = SERVICE_NAME) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


# ----------------------------------------------------------------- isolation


def _actor(client, actor_id: int, n_requests: int, barrier: threading.Barrier) -> None:
    """Sends n_requests distinct observations, threading the state; checks every answer."""
    rows = actor_id % 3  # 0: unbatched, else that many rows
    state = client.get_initial_state(rows or None)
    rng = np.random.default_rng(actor_id)
    barrier.wait(WAIT)
    for j in range(n_requests):
        shape = (rows, 3) if rows else (3,)
        obs = (rng.standard_normal(shape) + actor_id * 1000 + j).astype(np.float32)
        time_step = echo_time_step(obs, rows) if rows else echo_time_step(obs)
        result = client.action(time_step, state, batch_size=rows)
        step = result.policy_step
        np.testing.assert_array_equal(step.action, 2 * obs, err_msg=f"actor {actor_id} request {j}")
        np.testing.assert_array_equal(step.state["count"], np.full(shape[:-1], j + 1))
        np.testing.assert_array_equal(step.info["version"], np.zeros(shape[:-1], np.int64))
        state = step.state


@pytest.mark.parametrize("transport", ["unary", "stream"])
def test_concurrent_clients_get_their_own_answers(servers, transport):
    backend = EchoBackend(delay=0.002)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=32, max_batch_delay=0.005))
    n_actors = 16
    clients = [servers.client(server.address, "echo", transport=transport) for _ in range(n_actors)]
    barrier = threading.Barrier(n_actors)
    with concurrent.futures.ThreadPoolExecutor(n_actors) as pool:
        for future in [pool.submit(_actor, clients[i], i, 20, barrier) for i in range(n_actors)]:
            future.result(WAIT * 3)
    assert max(backend.batch_sizes) > 1, "requests were never batched: cross-talk was not exercised"
    assert sum(backend.batch_sizes) == sum(max(i % 3, 1) for i in range(n_actors)) * 20


@pytest.mark.parametrize("transport", ["unary", "stream"])
def test_one_client_shared_by_many_threads(servers, transport):
    backend = EchoBackend(delay=0.002)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=32, max_batch_delay=0.005))
    client = servers.client(server.address, "echo", transport=transport)
    n_actors = 16
    barrier = threading.Barrier(n_actors)
    with concurrent.futures.ThreadPoolExecutor(n_actors) as pool:
        for future in [pool.submit(_actor, client, i, 20, barrier) for i in range(n_actors)]:
            future.result(WAIT * 3)
    assert max(backend.batch_sizes) > 1


# ----------------------------------------------------------------- recurrent state


def test_initial_state_shapes(servers):
    server = servers.serve({"echo": EchoBackend(), "stateless": EchoBackend(stateful=False)})
    client = servers.client(server.address, "echo")
    unbatched = client.get_initial_state(None)
    assert set(unbatched) == {"count"}
    assert unbatched["count"].shape == () and unbatched["count"].dtype == np.int64 and unbatched["count"] == 0
    batched = client.get_initial_state(4)
    np.testing.assert_array_equal(batched["count"], np.zeros(4, np.int64))
    assert servers.client(server.address, "stateless").get_initial_state(3) == ()
    infos = {p.name: p for p in client.list_policies()}
    assert infos["echo"].stateful and not infos["stateless"].stateful
    assert infos["echo"].backend == "echo"


def test_state_round_trips_per_row_across_merged_requests(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=64, max_batch_delay=0.001))
    clients = [servers.client(server.address, "echo") for _ in range(4)]
    blocker = clients[0].action_async(echo_time_step(np.zeros(3, np.float32)), count(0))
    assert backend.entered.wait(WAIT)
    cases = [  # (rows, observations, counts)
        (0, np.array([1, 2, 3], np.float32), np.array(5)),
        (3, np.arange(9, dtype=np.float32).reshape(3, 3) + 10, np.array([10, 20, 30])),
        (2, np.arange(6, dtype=np.float32).reshape(2, 3) - 50, np.array([7, 1000])),
    ]
    futures = []
    for depth, (client, (rows, obs, counts)) in enumerate(zip(clients[1:], cases), start=1):
        time_step = echo_time_step(obs, rows) if rows else echo_time_step(obs)
        futures.append(client.action_async(time_step, count(counts), batch_size=rows))
        wait_for_queue_depth(clients[0], depth)
    gate.set()
    blocker.result(WAIT)
    for (rows, obs, counts), future in zip(cases, futures):
        step = future.result(WAIT).policy_step
        np.testing.assert_array_equal(step.state["count"], counts + 1)
        assert step.state["count"].shape == counts.shape
        np.testing.assert_array_equal(step.action, 2 * obs)
    assert backend.batch_sizes == [1, 6]  # the three requests ran as one call


def test_state_threads_through_steps(servers):
    server = servers.serve({"echo": EchoBackend()})
    client = servers.client(server.address, "echo")
    state = client.get_initial_state(2)
    for step in range(1, 6):
        state = client.action(echo_time_step(np.ones((2, 3)), 2), state, batch_size=2).policy_step.state
        np.testing.assert_array_equal(state["count"], [step, step])


# ----------------------------------------------------------------- validation


@pytest.fixture
def echo(servers):
    backend = EchoBackend()
    server = servers.serve({"echo": backend})
    return server, backend, servers.client(server.address, "echo")


def _invalid(client, *args, **kwargs) -> str:
    with pytest.raises(client_errors.InvalidArgumentError) as info:
        client.action(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    return info.value.details


def test_wrong_observation_shape_is_invalid_argument(echo):
    _, backend, client = echo
    message = _invalid(client, echo_time_step(np.zeros(4, np.float32)), count(0))
    assert "time_step.observation" in message and "(3,)" in message and "(4,)" in message
    assert backend.batch_sizes == []  # never queued


def test_wrong_dtype_is_invalid_argument(echo):
    _, _, client = echo
    time_step = echo_time_step(np.zeros(3, np.float32))._replace(observation=np.zeros(3, np.float64))
    message = _invalid(client, time_step, count(0))
    assert "time_step.observation" in message and "float32" in message and "float64" in message


def test_wrong_structure_is_invalid_argument(echo):
    _, _, client = echo
    time_step = echo_time_step(np.zeros(3, np.float32))._replace(observation={"x": np.zeros(3, np.float32)})
    message = _invalid(client, time_step, count(0))
    assert "time_step.observation" in message and "expected an array" in message
    message = _invalid(client, echo_time_step(np.zeros(3, np.float32)), {"counter": np.array(0, np.int64)})
    assert "policy_state" in message and "missing ['count']" in message and "unexpected ['counter']" in message


def test_batch_size_not_matching_rows_is_invalid_argument(echo):
    _, _, client = echo
    obs = np.zeros((3, 3), np.float32)
    message = _invalid(client, echo_time_step(obs, 3), count(0, 3), batch_size=2)
    assert "time_step" in message and "(2" in message and "(3" in message
    message = _invalid(client, echo_time_step(obs, 3), count(0, 3))  # batched values, batch_size 0
    assert "time_step" in message and "expected shape ()" in message


def test_stateful_policy_without_state_is_invalid_argument(echo):
    _, _, client = echo
    message = _invalid(client, echo_time_step(np.zeros(3, np.float32)))  # state () for a stateful policy
    assert "policy_state" in message
    request = client.encode_request(echo_time_step(np.zeros(3, np.float32)), count(0))
    request.ClearField("policy_state")
    with pytest.raises(client_errors.InvalidArgumentError, match="policy_state.*stateful"):
        client.send(request)


def test_malformed_protos_are_invalid_argument(echo):
    _, backend, client = echo
    good = client.encode_request(echo_time_step(np.zeros(3, np.float32)), count(0))
    cases = []
    request = service_pb.ActionRequest()
    request.CopyFrom(good)
    request.time_step.observation.tensor.content = b"\0" * 4  # 1 float for shape [3]
    cases.append((request, "time_step.observation.*4 bytes"))
    request = service_pb.ActionRequest()
    request.CopyFrom(good)
    request.ClearField("time_step")
    cases.append((request, "time_step is not set"))
    request = service_pb.ActionRequest()
    request.CopyFrom(good)
    request.time_step.observation.Clear()
    cases.append((request, "not set at time_step.observation"))
    request = service_pb.ActionRequest()
    request.CopyFrom(good)
    request.policy_state.dict.entries.add(key="count")  # duplicate key
    cases.append((request, "duplicate key 'count'"))
    for request, pattern in cases:
        with pytest.raises(client_errors.InvalidArgumentError, match=pattern):
            client.send(request)
    assert backend.batch_sizes == []
    assert client.send(good).policy_step.state["count"] == 1
    assert client.stats()[0]["errors"] == len(cases)


@pytest.mark.parametrize("transport", ["unary", "stream"])
def test_unknown_policy_is_not_found(servers, transport):
    server = servers.serve({"echo": EchoBackend()})
    client = servers.client(server.address, "nope", transport=transport)
    with pytest.raises(client_errors.PolicyNotFoundError, match="nope.*echo"):
        client.action(echo_time_step(np.zeros(3, np.float32)), count(0))
    for call in (client.get_specs, client.get_initial_state, client.stats):
        with pytest.raises(client_errors.PolicyNotFoundError):
            call()
    # The empty name selects the default (first) policy.
    default = servers.client(server.address, "", transport=transport)
    assert default.get_specs()[0].action_spec.shape == (3,)
    assert default.action(echo_time_step(np.ones(3, np.float32)), count(0)).policy_step.state["count"] == 1


@pytest.mark.parametrize("transport", ["unary", "stream"])
def test_calls_during_loading_wait_for_the_policy(servers, transport):
    release = threading.Event()

    def build():
        assert release.wait(WAIT), "never released"
        return EchoBackend(version=4)

    server = servers.serve({"slow": build}, wait_until_loaded=False, gates=(release,))
    with pytest.raises(client_errors.PolicyNotFoundError):  # unknown names do not wait
        servers.client(server.address, "other", transport="unary").get_specs()
    impatient = servers.client(server.address, "slow", transport=transport, timeout=0.5)
    with pytest.raises((client_errors.DeadlineExceededError, client_errors.UnavailableError)):
        impatient.action(echo_time_step(np.zeros(3, np.float32)), count(0))
    pending = [servers.client(server.address, name, transport=transport).action_async(
        echo_time_step(np.full(3, i, np.float32)), count(i)) for i, name in enumerate(("slow", "", "slow"))]
    specs = concurrent.futures.ThreadPoolExecutor(1).submit(servers.client(server.address, "slow").get_specs)
    time.sleep(0.2)
    assert not any(f.done() for f in pending) and not specs.done()  # waiting, not failing
    release.set()
    for i, future in enumerate(pending):
        result = future.result(WAIT)
        assert result.version == 4 and result.policy_step.state["count"] == i + 1
    assert specs.result(WAIT)[1] == 4


def test_calls_waiting_for_a_policy_that_fails_to_load_get_failed_precondition(servers):
    release = threading.Event()

    def build():
        assert release.wait(WAIT), "never released"
        raise OSError("no such SavedModel")

    server = servers.serve({"broken": build}, wait_until_loaded=False, gates=(release,))
    client = servers.client(server.address, "broken", transport="unary")
    waiting = client.action_async(echo_time_step(np.zeros(3, np.float32)), count(0))
    time.sleep(0.2)
    release.set()
    with pytest.raises(client_errors.FailedPreconditionError, match="failed to load: OSError: no such SavedModel"):
        waiting.result(WAIT)
    with pytest.raises(Exception, match="no such SavedModel"):
        server.run(server.server.wait_until_loaded())


def test_stream_answers_each_bad_request_and_keeps_serving(echo, servers):
    server, _, client = echo
    requests: queue.Queue = queue.Queue()
    call = servers.stub(server.address).ActionStream(iter(requests.get, None), timeout=WAIT)
    good = client.encode_request(echo_time_step(np.ones(3, np.float32)), count(1))
    wrong_shape = client.encode_request(echo_time_step(np.ones(4, np.float32)), count(1))
    unknown = client.encode_request(echo_time_step(np.ones(3, np.float32)), count(1))
    unknown.policy = "nope"
    bad_tensor = client.encode_request(echo_time_step(np.ones(3, np.float32)), count(1))
    bad_tensor.time_step.step_type.content = b"\1"
    later_good = client.encode_request(echo_time_step(np.full(3, 5, np.float32)), count(9))
    expected = [(good, None), (wrong_shape, grpc.StatusCode.INVALID_ARGUMENT),
                (unknown, grpc.StatusCode.NOT_FOUND), (bad_tensor, grpc.StatusCode.INVALID_ARGUMENT),
                (later_good, None)]
    for request, code in expected:  # one at a time: each answer comes before the next request is sent
        requests.put(request)
        response = next(call)
        assert response.request_id == request.request_id
        if code is None:
            assert not response.HasField("error")
        else:
            assert response.error.code == code.value[0]
            assert response.error.message
            assert not response.HasField("policy_step")
    assert "(3,)" in _first_error(client, wrong_shape)
    requests.put(None)
    assert list(call) == []  # the stream ends normally once the client closes it
    assert call.code() == grpc.StatusCode.OK


def _first_error(client, request) -> str:
    with pytest.raises(client_errors.InvalidArgumentError) as info:
        client.send(request)
    return info.value.details


def test_bad_requests_do_not_disturb_a_batch_being_formed(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=64, max_batch_delay=0.001))
    good_client = servers.client(server.address, "echo")
    bad_client = servers.client(server.address, "echo")
    blocker = good_client.action_async(echo_time_step(np.zeros(3, np.float32)), count(0))
    assert backend.entered.wait(WAIT)
    goods = [np.full(3, i, np.float32) for i in range(1, 4)]
    futures = []
    for depth, obs in enumerate(goods, start=1):
        futures.append(good_client.action_async(echo_time_step(obs), count(depth)))
        wait_for_queue_depth(good_client, depth)
    # While the good ones wait for the backend, bad ones are refused at once.
    with pytest.raises(client_errors.InvalidArgumentError):
        bad_client.action(echo_time_step(np.zeros(5, np.float32)), count(0))
    with pytest.raises(client_errors.InvalidArgumentError):
        bad_client.action(echo_time_step(np.zeros(3, np.float32)), {"wrong": np.array(0)})
    assert good_client.stats()[0]["queue_depth"] == 3
    gate.set()
    blocker.result(WAIT)
    for depth, (obs, future) in enumerate(zip(goods, futures), start=1):
        step = future.result(WAIT).policy_step
        np.testing.assert_array_equal(step.action, 2 * obs)
        assert step.state["count"] == depth + 1
    assert backend.batch_sizes == [1, 3]


# ----------------------------------------------------------------- event loop


def test_metadata_calls_answer_while_a_batch_is_in_flight(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate)
    server = servers.serve({"echo": backend})
    client = servers.client(server.address, "echo")
    in_flight = client.action_async(echo_time_step(np.ones(3, np.float32)), count(0))
    assert backend.entered.wait(WAIT)
    other = servers.client(server.address, "echo", transport="unary", timeout=5.0)
    channel = servers.channel(server.address)
    started = time.monotonic()
    assert [p.name for p in other.list_policies()] == ["echo"]
    assert other.get_specs()[0].time_step_spec.observation.shape == (3,)
    assert other.stats()[0]["queue_depth"] == 0
    assert health_status(channel) == SERVING
    assert time.monotonic() - started < 4.0
    assert not in_flight.done(), "the batch was supposed to be still in flight"
    gate.set()
    np.testing.assert_array_equal(in_flight.result(WAIT).policy_step.action, [2, 2, 2])


# ----------------------------------------------------------------- shutdown


def test_graceful_stop_answers_every_accepted_request(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=2, max_batch_delay=0.001))
    stream_client = servers.client(server.address, "echo")
    unary_client = servers.client(server.address, "echo", transport="unary")
    blocker = stream_client.action_async(echo_time_step(np.zeros(3, np.float32)), count(0))
    assert backend.entered.wait(WAIT)
    accepted = []
    for i in range(6):
        client = stream_client if i % 2 else unary_client
        obs = np.full(3, i + 1, np.float32)
        accepted.append((obs, client.action_async(echo_time_step(obs), count(i))))
        wait_for_queue_depth(unary_client, i + 1)
    channel = servers.channel(server.address)
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 10.0})
    stopper.start()
    wait_until(lambda: health_status(channel) == NOT_SERVING, "NOT_SERVING")
    # Stop has begun: new requests are refused (on a fresh stream and on a raw unary call). The
    # client retries UNAVAILABLE within its deadline (a restarted server would answer), so it is short.
    late = servers.client(server.address, "echo", timeout=1.0)
    with pytest.raises(client_errors.UnavailableError, match="shutting down"):
        late.action(echo_time_step(np.zeros(3, np.float32)), count(0))
    with pytest.raises(grpc.RpcError) as info:
        servers.stub(server.address).Action(
            late.encode_request(echo_time_step(np.zeros(3, np.float32)), count(0)), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert all(not f.done() for _, f in accepted)
    gate.set()
    opened = time.monotonic()
    blocker.result(WAIT)
    for i, (obs, future) in enumerate(accepted):
        step = future.result(WAIT).policy_step
        np.testing.assert_array_equal(step.action, 2 * obs)
        assert step.state["count"] == i + 1
    stopper.join(WAIT)
    assert not stopper.is_alive()
    # The open action stream did not hold the stop for its 10 s grace period.
    assert time.monotonic() - opened < 6.0
    assert sum(backend.batch_sizes) == 7
    with pytest.raises(grpc.RpcError) as info:
        servers.stub(server.address).ListPolicies(service_pb.ListPoliciesRequest(), timeout=2)
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_stop_ends_idle_action_streams_promptly(servers):
    server = servers.serve({"echo": EchoBackend()})
    client = servers.client(server.address, "echo", timeout=1.0)
    assert client.action(echo_time_step(np.ones(3, np.float32)), count(0)).version == 0  # the stream is open
    started = time.monotonic()
    server.stop(grace=10.0)
    assert time.monotonic() - started < 5.0
    with pytest.raises((client_errors.UnavailableError, client_errors.DeadlineExceededError)):
        client.action(echo_time_step(np.ones(3, np.float32)), count(0))


# ----------------------------------------------------------------- health, reflection


def test_health_follows_loading_and_stopping(servers):
    release = threading.Event()

    def build():
        assert release.wait(WAIT), "never released"
        return EchoBackend()

    server = servers.serve({"echo": build}, wait_until_loaded=False, gates=(release,))
    channel = servers.channel(server.address)
    assert health_status(channel, "") == NOT_SERVING
    assert health_status(channel) == NOT_SERVING
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME),
                                                      timeout=WAIT)
    assert next(watch).status == NOT_SERVING
    release.set()
    assert next(watch).status == SERVING
    assert health_status(channel, "") == SERVING
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 2.0})
    stopper.start()
    try:
        assert next(watch).status == NOT_SERVING
    finally:
        watch.cancel()
        stopper.join(WAIT)


def test_reflection_lists_the_services(servers):
    server = servers.serve({"echo": EchoBackend()})
    stub = reflection_pb2_grpc.ServerReflectionStub(servers.channel(server.address))
    requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE_NAME)]
    responses = list(stub.ServerReflectionInfo(iter(requests), timeout=10))
    services = {s.name for s in responses[0].list_services_response.service}
    assert {"tfa_policy_grpc.v1.PolicyService", "grpc.health.v1.Health"} <= services
    assert responses[1].file_descriptor_response.file_descriptor_proto  # the .proto is served too


# ----------------------------------------------------------------- stats


def test_stats_match_the_traffic(servers):
    backend = EchoBackend(delay=0.01, version=3)
    server = servers.serve({"echo": backend, "other": EchoBackend(stateful=False, version=9)},
                           batching=BatchingConfig(max_batch_size=64, max_batch_delay=0.02))
    client = servers.client(server.address, "echo")
    for i in range(4):
        result = client.action(echo_time_step(np.full(3, i, np.float32)), count(0))
        assert result.version == 3 and result.policy_step.info["version"] == 3
    client.action(echo_time_step(np.zeros((5, 3), np.float32), 5), count(0, 5), batch_size=5)
    for _ in range(2):
        with pytest.raises(client_errors.InvalidArgumentError):
            client.action(echo_time_step(np.zeros(2, np.float32)), count(0))
    stats = client.stats()
    assert len(stats) == 1
    s = stats[0]
    assert s["policy"] == "echo" and s["version"] == 3
    assert (s["requests"], s["rows"], s["batches"], s["errors"], s["queue_depth"]) == (5, 9, 5, 2, 0)
    assert s["mean_batch_size"] == pytest.approx(9 / 5)
    assert 10.0 <= s["inference_ms_p50"] <= s["inference_ms_p99"]  # the backend sleeps 10 ms
    assert 15.0 <= s["queue_wait_ms_p50"] <= s["queue_wait_ms_p99"]  # each waited out the 20 ms batch delay
    everything = {p["policy"]: p for p in servers.client(server.address).stats()}
    assert set(everything) == {"echo", "other"}
    assert everything["other"]["requests"] == 0 and everything["other"]["version"] == 9
    assert everything["other"]["mean_batch_size"] == 0.0
    assert {p.name: p.version for p in client.list_policies()} == {"echo": 3, "other": 9}
    assert client.get_specs()[1] == 3


# ----------------------------------------------------------------- message size


@pytest.mark.parametrize("transport", ["unary", "stream"])
def test_oversized_request_is_resource_exhausted(servers, transport):
    backend = EchoBackend()
    server = servers.serve({"echo": backend}, max_message_bytes=1024)
    client = servers.client(server.address, "echo", transport=transport)
    small = client.action(echo_time_step(np.ones(3, np.float32)), count(0))
    assert small.policy_step.state["count"] == 1
    big = np.ones((200, 3), np.float32)  # 2.4 kB of observations
    with pytest.raises(client_errors.ResourceExhaustedError):
        client.action(echo_time_step(big, 200), count(0, 200), batch_size=200)
    assert 200 not in backend.batch_sizes
    again = client.action(echo_time_step(np.full(3, 2, np.float32)), count(5))
    np.testing.assert_array_equal(again.policy_step.action, [4, 4, 4])
