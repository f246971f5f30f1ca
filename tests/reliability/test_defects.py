"""Regression tests of the reliability defects of issue 12 (in-process servers, deterministic, fast).

The six defects of the issue, each with where its tests live:

1. Calls made while a policy loads wait for it: tests/policy_server/test_server.py
   (test_calls_during_loading_wait_for_the_policy, ..._fails_to_load_...), and here across a restart.
2. Streams end with UNAVAILABLE on shutdown, and what they did not answer is
   resent: here (and test_server.py's graceful-stop tests).
3. Long client strings are cut in errors: tests/policy_client/test_status.py
   (test_long_text_is_truncated..., test_a_huge_policy_name_still_gets_not_found), and here for every RPC.
4. Huge requests are split so that others interleave: tests/policy_server/test_batching.py
   (test_request_larger_than_max_batch_size_is_split_across_batches) checks the split, here that
   another actor's request runs between the pieces and is not refused as "queue full".
5. A client that never reads cannot starve others: tests/policy_server/test_fairness.py, and here
   with idle streams from another process.
6. Push guards (overlapping slices, slice bounds, a bogus huge version):
   tests/policy_server/test_assembler.py, test_actor_learner.py
   (test_bad_pushes_are_rejected_and_serving_goes_on), and here over the wire for the echo policy.

Defects the fault suite found besides, fixed, each with its regression test at the end of this file:
A GetInitialState built a state of any batch_size (now bounded by the message limit before it is built);
B a tiny request made the server allocate a huge fixed-width string (now refused before decoding);
C a unary call that a stopping server cancelled was not resent (policy_client/transport/sender.py resends it);
D a broken stream left its request thread behind (its request iterator now always ends);
E an oversized request on a shared stream failed the other callers' requests (they resend as unary calls);
F LoadCheckpoint of a path on an unsupported filesystem answered INTERNAL (now INVALID_ARGUMENT naming path);
G every push refused before its stream was read to the end kept 1.5-4 KB of the server's memory for good
  (grpc.aio's request generator, left suspended; services.ClientStream reads with context.read() instead).
"""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import struct
import threading
import time
import tracemalloc

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tf_agents.trajectories import time_step as ts

from policy_client import PolicyClient, RemotePolicy
from policy_client.wire import errors, status
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import types_pb2 as pb
from policy_server.config import BatchingConfig
from policy_server.native.servicer import MAX_INFLIGHT_PER_STREAM
from tests.reliability.actors import EchoActor
from tests.reliability.procs import HelperProcess
from tests.reliability.scenarios import stream_consumer_threads
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT, GatedEchoBackend, wait_for_queue_depth, wait_until

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]

SERVICE = "/tfa_policy_grpc.v1.PolicyService/"


def count(value) -> dict:
    return {"count": np.asarray(value, np.int64)}


def not_serving(channel: grpc.Channel) -> bool:
    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return response.status == health_pb2.HealthCheckResponse.NOT_SERVING


# ----------------------------------------------------------------- 1. loading


@pytest.mark.parametrize("transport", ["stream", "unary"])
def test_calls_during_a_restart_wait_while_the_new_server_loads(servers, transport):
    first = servers.serve({"echo": EchoBackend(version=1)})
    port = first.port
    remote = RemotePolicy(first.address, "echo", transport=transport, timeout=WAIT)
    try:
        state = remote.get_initial_state()
        observation = np.array([1, 2, 3], np.float32)
        assert int(remote.action(ts.restart(observation), state).info["version"]) == 1
        first.stop()
        release = threading.Event()

        def build():
            assert release.wait(WAIT), "never released"
            return EchoBackend(version=2)

        servers.serve({"echo": build}, address=f"127.0.0.1:{port}", wait_until_loaded=False, gates=(release,))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(remote.action, ts.restart(observation), state)
            time.sleep(0.3)
            assert not pending.done(), "the call did not wait for the policy to load"
            release.set()
            step = pending.result(WAIT)
        np.testing.assert_array_equal(step.action, 2 * observation + 2)
        assert int(step.info["version"]) == 2 and int(step.state["count"]) == 1
    finally:
        remote.close()


# ----------------------------------------------------------------- 2. shutdown


def test_shutdown_answers_what_a_stream_owes_then_ends_it_with_unavailable(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate, stateful=False)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=1))
    client = servers.client(server.address, "echo")
    requests = [client.encode_request(echo_time_step(np.full(3, i, np.float32))) for i in range(3)]
    pending: queue.SimpleQueue = queue.SimpleQueue()  # the client keeps its side of the stream open
    for request in requests:
        pending.put(request)
    call = servers.stub(server.address).ActionStream(iter(pending.get, None), timeout=WAIT)
    assert backend.entered.wait(WAIT)
    wait_for_queue_depth(client, 2)
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 10.0})
    stopper.start()
    answers = []
    try:
        wait_until(lambda: not_serving(servers.channel(server.address)), "NOT_SERVING")
        gate.set()
        with pytest.raises(grpc.RpcError) as info:
            for answer in call:
                answers.append(answer)
    finally:
        gate.set()
        pending.put(None)
        stopper.join(WAIT)
    assert [a.request_id for a in answers] == [r.request_id for r in requests]
    assert all(not a.HasField("error") for a in answers)
    for i, answer in enumerate(answers):
        tensor = answer.policy_step.action.tensor
        np.testing.assert_array_equal(np.frombuffer(tensor.content, np.float32), np.full(3, 2 * i))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value


def test_what_a_stopping_server_did_not_read_is_resent_to_its_successor(servers):
    """More requests on one stream than the server reads at a time: the unread ones go to the next server."""
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate, stateful=False, version=1)
    first = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=1))
    port = first.port
    client = servers.client(first.address, "echo")  # one stream shared by every thread
    watcher = servers.client(first.address, "echo", transport="unary")
    n = MAX_INFLIGHT_PER_STREAM + 4
    observations = [np.full(3, i, np.float32) for i in range(n)]
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(client.action, echo_time_step(o)) for o in observations]
        assert backend.entered.wait(WAIT)
        wait_for_queue_depth(watcher, MAX_INFLIGHT_PER_STREAM - 1)  # 1 in the backend, 15 queued, 4 unread
        stopper = threading.Thread(target=first.stop, kwargs={"grace": 10.0})
        stopper.start()
        wait_until(lambda: not_serving(servers.channel(first.address)), "NOT_SERVING")
        gate.set()
        stopper.join(WAIT)
        assert not stopper.is_alive()
        servers.serve({"echo": EchoBackend(stateful=False, version=2)}, address=f"127.0.0.1:{port}")
        results = [f.result(WAIT) for f in futures]
    for observation, result in zip(observations, results):
        np.testing.assert_array_equal(result.policy_step.action, 2 * observation + result.version)
    assert collections.Counter(r.version for r in results) == {1: MAX_INFLIGHT_PER_STREAM, 2: 4}


# ----------------------------------------------------------------- 3. long strings

LONG = "x" * 100_000


def test_long_client_strings_are_cut_in_every_error(servers):
    server = servers.serve({"echo": EchoBackend()})
    channel = servers.channel(server.address)
    client = servers.client(server.address, "echo")
    long_key = client.encode_request(echo_time_step(np.zeros(3, np.float32)), {LONG: np.array(0, np.int64)})
    long_type = client.encode_request(echo_time_step(np.zeros(3, np.float32)), count(0))
    long_type.policy_state.Clear()
    long_type.policy_state.named_tuple.type_name = LONG
    long_type.policy_state.named_tuple.fields.add(key="count").value.tensor.CopyFrom(
        pb.Tensor(dtype=pb.DTYPE_INT64, content=bytes(8)))
    push = [service_pb.PushVariablesRequest(policy="echo", version=1, num_variables=1,
                                            slices=[service_pb.VariableSlice(index=0, name=LONG, dtype=pb.DTYPE_FLOAT32,
                                                                             content=bytes(4))])]
    cases = [
        ("GetSpecs", service_pb.GetSpecsRequest(policy=LONG), grpc.StatusCode.NOT_FOUND),
        ("GetInitialState", service_pb.GetInitialStateRequest(policy=LONG), grpc.StatusCode.NOT_FOUND),
        ("GetStats", service_pb.GetStatsRequest(policy=LONG), grpc.StatusCode.NOT_FOUND),
        ("GetVariables", service_pb.GetVariablesRequest(policy=LONG), grpc.StatusCode.NOT_FOUND),
        ("LoadCheckpoint", service_pb.LoadCheckpointRequest(policy="echo", path=LONG),
         grpc.StatusCode.INVALID_ARGUMENT),
        ("Action", service_pb.ActionRequest(policy=LONG), grpc.StatusCode.NOT_FOUND),
        ("Action", long_key, grpc.StatusCode.INVALID_ARGUMENT),
        ("Action", long_type, grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for method, request, code in cases:
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(SERVICE + method)(request.SerializeToString(), timeout=10)
        error = status.from_rpc_error(info.value)
        assert info.value.code() == code, (method, info.value.code(), error.details[:200])
        assert len(info.value.details()) <= status.MAX_MESSAGE_CHARS and "more characters]" in error.details, method
        assert all(len(f) <= status.MAX_FIELD_CHARS and len(d) <= status.MAX_FIELD_CHARS for f, d in error.fields)
    with pytest.raises(grpc.RpcError) as info:
        channel.stream_unary(SERVICE + "PushVariables")(iter(m.SerializeToString() for m in push), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(info.value.details()) <= status.MAX_MESSAGE_CHARS
    stream = channel.stream_stream(SERVICE + "ActionStream", response_deserializer=service_pb.ActionResponse.FromString)
    answers = list(stream(iter([service_pb.ActionRequest(policy=LONG).SerializeToString(),
                                long_key.SerializeToString()]), timeout=10))
    assert [status.code_of(a.error.code) for a in answers] == [grpc.StatusCode.NOT_FOUND,
                                                               grpc.StatusCode.INVALID_ARGUMENT]
    assert all(len(a.error.message) <= status.MAX_STREAM_MESSAGE_CHARS for a in answers)


# ----------------------------------------------------------------- 4. huge requests


def test_other_requests_are_served_between_the_pieces_of_a_huge_request(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate, stateful=False)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=4))
    client, other = servers.client(server.address, "echo"), servers.client(server.address, "echo")
    blocker = client.action_async(echo_time_step(np.zeros(3, np.float32)))
    assert backend.entered.wait(WAIT)
    rows = np.arange(120, dtype=np.float32).reshape(40, 3)
    big = client.action_async(echo_time_step(rows, 40), batch_size=40)  # 10 pieces of 4 rows
    wait_until(lambda: other.stats()[0]["queue_depth"] >= 1, "the huge request queued")
    depth = other.stats()[0]["queue_depth"]
    small = other.action_async(echo_time_step(np.full(3, -7, np.float32)))
    wait_for_queue_depth(other, depth + 1)
    gate.set()
    blocker.result(WAIT)
    np.testing.assert_array_equal(big.result(WAIT).policy_step.action, 2 * rows)
    np.testing.assert_array_equal(small.result(WAIT).policy_step.action, np.full(3, -14))
    calls = [obs.tolist() for obs in backend.observations[1:]]
    small_call = next(i for i, c in enumerate(calls) if [-7, -7, -7] in c)
    last_piece = max(i for i, c in enumerate(calls) if rows[-1].tolist() in c)
    assert small_call < last_piece, f"the small request waited for all {len(calls) - 1} pieces"
    assert sum(len(c) for c in calls) == 41  # every row once


def test_a_huge_request_does_not_fill_the_queue_for_everyone_else(servers):
    """A request of 10 pieces is one request against max_queue_size: another actor is still accepted."""
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate, stateful=False)
    server = servers.serve({"echo": backend}, batching=BatchingConfig(max_batch_size=2, max_queue_size=4))
    client, other = servers.client(server.address, "echo"), servers.client(server.address, "echo")
    blocker = client.action_async(echo_time_step(np.zeros(3, np.float32)))
    assert backend.entered.wait(WAIT)
    rows = np.arange(60, dtype=np.float32).reshape(20, 3)
    big = client.action_async(echo_time_step(rows, 20), batch_size=20)  # one request, 10 pieces
    wait_until(lambda: other.stats()[0]["queue_depth"] >= 1, "the huge request queued")
    try:
        small = other.action_async(echo_time_step(np.full(3, 5, np.float32)))
        time.sleep(0.2)
    finally:
        gate.set()
    blocker.result(WAIT)
    np.testing.assert_array_equal(big.result(WAIT).policy_step.action, 2 * rows)
    np.testing.assert_array_equal(small.result(WAIT).policy_step.action, np.full(3, 10))


# ----------------------------------------------------------------- 5. starvation


def test_idle_streams_and_a_client_that_never_reads_leave_others_served(servers):
    """50 idle streams and a writer that never reads, from another process; an actor is served meanwhile."""
    server = servers.serve({"echo": EchoBackend(), "stateless": EchoBackend(stateful=False)})
    with HelperProcess(["idle", server.address, "--policy", "stateless", "--streams", "50", "--seconds", "60",
                        "--non-reader"]) as helper:
        helper.wait_ready(WAIT * 3)
        stats = servers.client(server.address, "stateless", transport="unary")
        stop = threading.Event()
        actor = EchoActor(0, server.address, "stream", stop, timeout=WAIT)
        actor.start()
        wait_until(lambda: actor.tally.ok >= 200 or not actor.is_alive(), "200 answers to the actor", WAIT * 2)
        stop.set()
        actor.join(WAIT)
        read = stats.stats()[0]["requests"] - 50
    tally = actor.tally
    assert tally.ok >= 200 and tally.failed == 0 and tally.wrong == 0, tally.samples
    assert read <= 400 // 2, f"the server read {read} of the 400 requests of a client that reads nothing"


# ----------------------------------------------------------------- 6. push guards


def _slice(offset: int, content: bytes, **kwargs) -> service_pb.VariableSlice:
    fields = {"index": 0, "name": "echo/bias:0", "dtype": pb.DTYPE_FLOAT32, "offset": offset, "content": content}
    fields.update(kwargs)
    return service_pb.VariableSlice(**fields)


def test_bad_pushes_are_refused_over_the_wire_and_change_nothing(servers):
    backend = EchoBackend(stateful=False, version=5)
    server = servers.serve({"echo": backend})
    push = servers.channel(server.address).stream_unary(SERVICE + "PushVariables")
    value = struct.pack("<f", 42.0)
    cases = {
        "overlap": (6, [_slice(0, value[:3]), _slice(2, value[2:])], grpc.StatusCode.INVALID_ARGUMENT, "overlap"),
        "duplicate": (6, [_slice(0, value[:2]), _slice(0, value[:2])], grpc.StatusCode.INVALID_ARGUMENT, "overlap"),
        "past the end": (6, [_slice(2, value)], grpc.StatusCode.INVALID_ARGUMENT, "exceed"),
        "huge offset": (6, [_slice(2**64 - 1, value)], grpc.StatusCode.INVALID_ARGUMENT, "exceed"),
        "gap": (6, [_slice(0, value[:2])], grpc.StatusCode.INVALID_ARGUMENT, "never received"),
        "index": (6, [_slice(0, value, index=2**32 - 1)], grpc.StatusCode.INVALID_ARGUMENT, "slices.index"),
        "shape": (6, [_slice(0, value, shape=[1])], grpc.StatusCode.INVALID_ARGUMENT, "expected shape"),
        "dtype": (6, [_slice(0, value, dtype=pb.DTYPE_INT32)], grpc.StatusCode.INVALID_ARGUMENT, "dtype"),
        "bogus version": (2**62, [_slice(0, value)], grpc.StatusCode.INVALID_ARGUMENT, "at most"),
        "max version": (2**63 - 1, [_slice(0, value)], grpc.StatusCode.INVALID_ARGUMENT, "at most"),
        "older version": (4, [_slice(0, value)], grpc.StatusCode.FAILED_PRECONDITION, "older"),
        "negative version": (-1, [_slice(0, value)], grpc.StatusCode.FAILED_PRECONDITION, "older"),
    }
    for name, (version, slices, code, words) in cases.items():
        messages = [service_pb.PushVariablesRequest(policy="echo", version=version, num_variables=1),
                    service_pb.PushVariablesRequest(slices=slices)]
        with pytest.raises(grpc.RpcError) as info:
            push(iter(m.SerializeToString() for m in messages), timeout=10)
        assert info.value.code() == code and words in info.value.details(), (name, info.value.details())
        assert backend.version == 5 and backend.bias is None, name
    good = [service_pb.PushVariablesRequest(policy="echo", version=6, num_variables=1, slices=[_slice(0, value)])]
    assert service_pb.PushVariablesResponse.FromString(
        push(iter(m.SerializeToString() for m in good), timeout=10)).version == 6
    assert backend.version == 6 and backend.bias == 42.0


# ----------------------------------------------------------------- defects found by the fault suite


class SizeRecordingEcho(EchoBackend):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.initial_sizes: list = []

    def initial_state(self, batch_size):
        self.initial_sizes.append(batch_size)
        return super().initial_state(batch_size)


def test_get_initial_state_refuses_a_state_larger_than_a_message_before_building_it(servers):
    backend = SizeRecordingEcho()
    server = servers.serve({"echo": backend}, max_message_bytes=1024)
    stub = servers.stub(server.address)
    rows = 10**6  # 8 MB of int64 counts for a 1 KB message limit
    with pytest.raises(grpc.RpcError) as info:
        stub.GetInitialState(service_pb.GetInitialStateRequest(policy="echo", batch_size=rows), timeout=30)
    assert info.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert rows not in backend.initial_sizes, "the backend was asked for the whole state first"


def test_a_tiny_request_does_not_make_the_server_allocate_a_huge_string(servers):
    server = servers.serve({"echo": EchoBackend()})
    client = servers.client(server.address, "echo")
    request = client.encode_request(echo_time_step(np.zeros(3, np.float32)), count(0))
    tensor = request.time_step.observation.tensor
    tensor.Clear()
    tensor.dtype, tensor.string_kind, tensor.string_itemsize = pb.DTYPE_STRING, pb.STRING_KIND_UNICODE, 2**24
    tensor.shape.append(1)
    tensor.string_val.append(b"x")
    assert request.ByteSize() < 200
    tracemalloc.start()
    try:
        with pytest.raises(errors.InvalidArgumentError):
            client.send(request)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"a {request.ByteSize()}-byte request made the server allocate {peak >> 20} MB"


class _CancelOnce:
    """A fake PolicyService whose first Action is cancelled (as gRPC cancels calls in flight when a server stops)."""

    def __init__(self):
        self.calls = 0

    def action(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.calls += 1
        if self.calls == 1:
            context.abort(grpc.StatusCode.CANCELLED, "CANCELLED")
        answer = service_pb.ActionResponse(version=3)
        answer.policy_step.action.tensor.CopyFrom(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[3], content=bytes(12)))
        answer.policy_step.state.tuple.SetInParent()
        answer.policy_step.info.tuple.SetInParent()
        return answer.SerializeToString()


def test_a_unary_call_the_server_cancelled_is_sent_again():
    fake = _CancelOnce()
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "tfa_policy_grpc.v1.PolicyService", {"Action": grpc.unary_unary_rpc_method_handler(fake.action)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with PolicyClient(f"127.0.0.1:{port}", "echo", transport="unary", timeout=10, use_plans=False) as client:
            result = client.action(echo_time_step(np.zeros(3, np.float32)))
        assert result.version == 3 and fake.calls == 2
    finally:
        server.stop(None)


def test_a_broken_stream_leaves_no_thread_behind(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate, stateful=False)
    server = servers.serve({"echo": backend})
    before = stream_consumer_threads()
    client = PolicyClient(server.address, "echo", timeout=0.5)
    try:
        with pytest.raises(errors.DeadlineExceededError):  # held in the backend: the stream is cancelled
            client.action(echo_time_step(np.zeros(3, np.float32)))
        gate.set()
        client.timeout = WAIT
        client.action(echo_time_step(np.zeros(3, np.float32)))  # on a new stream
    finally:
        gate.set()
        client.close()
    deadline = time.monotonic() + 2
    while stream_consumer_threads() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stream_consumer_threads() == before, "the request-consumer thread of the broken stream is still there"


def test_an_oversized_request_on_a_shared_stream_fails_only_its_own_call(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate, stateful=False)
    server = servers.serve({"echo": backend}, max_message_bytes=1 << 20)
    client = servers.client(server.address, "echo", options=[("grpc.max_send_message_length", 64 << 20)])
    small = client.action_async(echo_time_step(np.ones(3, np.float32)))
    assert backend.entered.wait(WAIT)
    rows = 200_000  # 4.8 MB, over the server's 1 MB limit
    with pytest.raises(errors.ResourceExhaustedError):
        client.action(echo_time_step(np.zeros((rows, 3), np.float32), rows), batch_size=rows)
    gate.set()
    np.testing.assert_array_equal(small.result(WAIT).policy_step.action, [2, 2, 2])


def test_load_checkpoint_of_an_unsupported_filesystem_is_invalid_argument(servers):
    server = servers.serve({"echo": EchoBackend()})
    stub = servers.stub(server.address)
    with pytest.raises(grpc.RpcError) as info:
        stub.LoadCheckpoint(service_pb.LoadCheckpointRequest(policy="echo", path="s3://bucket/policy"), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * 4096


def test_refused_pushes_leave_no_memory_behind(servers):
    """G: 2,000 pushes refused at their first message (the stream not read to its end) leave the RSS as it was.

    Before the fix the same calls kept about 7 MB of this process (the server's side); now about 0.1.
    """
    server = servers.serve({"echo": EchoBackend()})
    channel = grpc.insecure_channel(server.address)
    push = channel.stream_unary(SERVICE + "PushVariables")
    messages = [service_pb.PushVariablesRequest(policy="nope").SerializeToString(), b"\xff\xff"]

    def refused(count: int) -> collections.Counter:
        codes: collections.Counter = collections.Counter()
        for _ in range(count):
            with pytest.raises(grpc.RpcError) as info:
                push(iter(messages), timeout=WAIT)
            codes[info.value.code()] += 1
        return codes

    try:
        refused(300)  # warm-up: the allocator's and gRPC's first-use memory
        before = _rss()
        assert refused(2000) == {grpc.StatusCode.NOT_FOUND: 2000}
        grown = _rss() - before
    finally:
        channel.close()
    assert grown < 2 << 20, f"2,000 refused pushes grew the process by {grown / 2**20:.1f} MB"
