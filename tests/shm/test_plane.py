"""The shared-memory data plane at the slot level: protocol, batching with gRPC, faults, cleanup, permissions."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time

import grpc
import numpy as np
import pytest
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from policy_client.transport.shm import NoSlot, Slot, SlotBroken
from policy_client.wire import errors, shm_layout as layout, status
from policy_client.wire.generated import shared_memory_pb2 as shm_pb
from policy_client.wire.generated import shared_memory_pb2_grpc as shm_grpc
from policy_client.wire.standins import PolicySpecs
from policy_client.wire.step_plan import RequestPlan
from policy_server.shm import plane as shm
from policy_server.shm import segments
from policy_server.config import BatchingConfig
from tests.support.fakes import EchoBackend, FailingBackend, echo_time_step
from tests.support.servers import WAIT, GatedEchoBackend, wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.skipif(not shm.available(), reason="no POSIX shared memory")]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def leaves_of(backend, observation, rows: int = 0, count: int = 0) -> list[np.ndarray]:
    plan = RequestPlan(backend.specs.time_step_spec, backend.specs.policy_state_spec)
    state = {"count": np.full((rows,) if rows else (), count, np.int64)} if plan.stateful else ()
    leaves = plan.leaves(echo_time_step(observation, rows or None), state, (rows,) if rows else ())
    assert leaves is not None
    return leaves


def open_slot(server, policy: str = "echo", max_rows: int = 4) -> Slot:
    channel = grpc.insecure_channel(server.address)
    slot = Slot.open(channel, policy, max_rows, WAIT)
    channel.close()
    return slot


def deadline() -> float:
    return time.monotonic() + WAIT


def test_unbatched_and_batched_requests_round_trip(servers):
    backend = EchoBackend()
    server = servers.serve({"echo": backend})
    slot = open_slot(server)
    try:
        code, version, answer = slot.call(leaves_of(backend, np.ones(3, np.float32), count=4), 0, None, deadline())
        assert (code, version) == (0, 0)
        np.testing.assert_array_equal(answer[0], [2, 2, 2])
        assert answer[1].shape == () and answer[1] == 5  # state: count + 1
        observation = np.arange(12, dtype=np.float32).reshape(4, 3)
        code, _, answer = slot.call(leaves_of(backend, observation, rows=4, count=7), 4, None, deadline())
        assert code == 0
        np.testing.assert_array_equal(answer[0], observation * 2)
        np.testing.assert_array_equal(answer[1], [8] * 4)
        assert [a.shape for a in answer] == [(4, 3), (4,), (4,)]
    finally:
        slot.close()


def test_the_layout_names_every_leaf_and_the_segment_is_owner_only(servers):
    backend = EchoBackend()
    server = servers.serve({"echo": backend})
    stub = shm_grpc.SharedMemoryServiceStub(servers.channel(server.address))
    response = stub.OpenSlot(shm_pb.OpenSlotRequest(policy="", max_rows=8), timeout=WAIT)
    assert response.policy == "echo" and response.max_rows == 8
    assert [t.path for t in response.request_tensors] == [
        "time_step/step_type", "time_step/reward", "time_step/discount", "time_step/observation",
        "policy_state/count"]
    assert [t.path for t in response.answer_tensors] == ["action", "state/count", "info/version"]
    mode = os.stat(os.path.join(segments.SHM_DIR, response.segment)).st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(response.socket_path)).st_mode) == 0o700


def test_a_request_batches_with_grpc_requests(servers):
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate, stateful=False)
    server = servers.serve({"echo": backend}, gates=(gate,),
                           batching=BatchingConfig(max_batch_size=16, max_batch_delay=0.05))
    blocker = servers.client(server.address, "echo").action_async(echo_time_step(np.zeros(3, np.float32)))
    assert backend.entered.wait(WAIT)  # the first batch holds the policy: what follows queues up
    others = [servers.client(server.address, "echo", data_plane="grpc").action_async(
        echo_time_step(np.full(3, i, np.float32))) for i in range(3)]
    wait_until(lambda: server.server.registry.get("echo").scheduler.queue_depth == 3, "three queued")
    slot = open_slot(server)
    results = []
    caller = threading.Thread(target=lambda: results.append(
        slot.call(leaves_of(backend, np.full(3, 9, np.float32)), 0, None, deadline())))
    caller.start()
    wait_until(lambda: server.server.registry.get("echo").scheduler.queue_depth == 4, "four queued")
    gate.set()
    caller.join(WAIT)
    blocker.result(WAIT)
    for i, other in enumerate(others):
        np.testing.assert_array_equal(other.result(WAIT).policy_step.action, [2 * i] * 3)
    np.testing.assert_array_equal(results[0][2][0], [18] * 3)
    assert 4 in backend.batch_sizes, backend.batch_sizes
    slot.close()


def test_the_policy_error_travels_with_its_type(servers):
    backend = FailingBackend()
    server = servers.serve({"failing": backend})
    slot = open_slot(server, "failing")
    code, _, answer = slot.call(leaves_of(backend, np.full(3, np.nan, np.float32)), 0, None, deadline())
    assert code == grpc.StatusCode.INTERNAL.value[0]
    error = status.from_status(answer)
    assert isinstance(error, errors.InternalError) and isinstance(error, RuntimeError)
    assert "NaN in observation" in str(error)
    code, _, answer = slot.call(leaves_of(backend, np.ones(3, np.float32)), 0, None, deadline())
    assert code == 0  # the slot goes on
    slot.close()


def test_rows_beyond_the_slot_and_unsupported_seeds_are_invalid_arguments(servers):
    backend = EchoBackend()
    server = servers.serve({"echo": backend})
    slot = open_slot(server, max_rows=2)
    assert slot.layout.max_rows == 2
    code, _, answer = slot.call(leaves_of(backend, np.ones((2, 3), np.float32), rows=2), 2, None, deadline())
    assert code == 0
    assert not slot.fits(leaves_of(backend, np.ones((3, 3), np.float32), rows=3), 3)  # the client never sends it
    # The server refuses it when a client does (a header written by hand).
    layout.REQUEST_HEADER.pack_into(slot._buffer, layout.REQUEST_OFFSET, 99, 3, 0, 0, 0)
    slot._sock.sendall(layout.DOORBELL.pack(99))
    slot._wait(99, deadline())
    code, _, answer = slot._read(3)
    assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert status.from_status(answer).fields[0][0] == "rows"
    slot._sequence = 99
    seeded = slot.call(leaves_of(backend, np.ones(3, np.float32)), 0, 5, deadline())  # EchoBackend takes seeds
    assert seeded[0] == 0 and seeded[2][0].tolist() == [7, 7, 7]
    slot.close()
    plain = servers.serve({"plain": NoSeedEcho()})
    slot = open_slot(plain, "plain")
    code, _, answer = slot.call(leaves_of(backend, np.ones(3, np.float32)), 0, 5, deadline())
    assert code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and status.from_status(answer).fields[0][0] == "seed"
    slot.close()


class NoSeedEcho(EchoBackend):
    supports_seed = False


def test_a_wrong_token_is_refused_and_an_unclaimed_slot_expires(servers, monkeypatch):
    monkeypatch.setattr(shm, "ATTACH_WAIT", 0.3)
    server = servers.serve({"echo": EchoBackend()})
    stub = shm_grpc.SharedMemoryServiceStub(servers.channel(server.address))
    response = stub.OpenSlot(shm_pb.OpenSlotRequest(policy="echo"), timeout=WAIT)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect(response.socket_path)
    sock.sendall(os.urandom(16))
    assert sock.recv(1) == b"\x00"
    sock.close()
    path = os.path.join(segments.SHM_DIR, response.segment)
    assert os.path.exists(path)
    wait_until(lambda: not os.path.exists(path), "the unclaimed segment removed")
    assert len(server.server.shared_memory._slots) == 0


def test_a_killed_actor_frees_its_slot(servers):
    server = servers.serve({"echo": EchoBackend()})
    plane = server.server.shared_memory
    script = textwrap.dedent(f"""
        import grpc, sys, time
        from policy_client.transport.shm import Slot
        slot = Slot.open(grpc.insecure_channel({server.address!r}), "echo", 1, 30)
        print("attached", flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONPATH": ROOT})
    try:
        assert child.stdout.readline().strip() == "attached"
        wait_until(lambda: plane.open_slots == 1, "the child's slot attached")
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT)
        wait_until(lambda: plane.open_slots == 0 and not plane._slots, "the killed actor's slot freed")
    finally:
        child.kill()
        child.wait(WAIT)
        child.stdout.close()


def test_a_stopping_server_answers_unavailable_then_closes_the_slot(servers):
    backend = EchoBackend()
    server = servers.serve({"echo": backend})
    slot = open_slot(server)
    assert slot.call(leaves_of(backend, np.ones(3, np.float32)), 0, None, deadline())[0] == 0
    server.stop(1.0)
    with pytest.raises(SlotBroken):
        slot.call(leaves_of(backend, np.ones(3, np.float32)), 0, None, deadline())
    assert slot.closed
    slot.close()


def test_what_a_dead_server_left_is_removed_at_the_next_start(servers):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    name = f"{segments.PREFIX}{dead.pid}_abcdef"
    path = os.path.join(segments.SHM_DIR, name)
    with open(path, "wb") as f:
        f.write(b"left behind")
    live = os.path.join(segments.SHM_DIR, f"{segments.PREFIX}{os.getpid()}_abcdef")
    with open(live, "wb") as f:
        f.write(b"ours")
    try:
        servers.serve({"echo": EchoBackend()})
        assert not os.path.exists(path)
        assert os.path.exists(live), "a segment of a live server was removed"
    finally:
        for p in (path, live):
            if os.path.exists(p):
                os.unlink(p)


def test_no_slot_for_string_specs_or_when_disabled(servers):
    spec = array_spec.ArraySpec((), np.str_, name="text")
    specs = PolicySpecs(ts.time_step_spec(spec), array_spec.ArraySpec((), np.int64), (), (), None)
    backend = EchoBackend()
    backend.specs = specs
    server = servers.serve({"text": backend})
    stub = shm_grpc.SharedMemoryServiceStub(servers.channel(server.address))
    with pytest.raises(grpc.RpcError) as info:
        stub.OpenSlot(shm_pb.OpenSlotRequest(policy="text"), timeout=WAIT)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "string" in info.value.details()
    off = servers.serve({"echo": EchoBackend()}, shared_memory=False)
    stub = shm_grpc.SharedMemoryServiceStub(servers.channel(off.address))
    with pytest.raises(grpc.RpcError) as info:
        stub.OpenSlot(shm_pb.OpenSlotRequest(policy="echo"), timeout=WAIT)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(NoSlot):
        Slot.open(servers.channel(off.address), "echo", 1, WAIT)


def test_a_slot_freed_while_its_request_is_in_a_batch_leaves_the_batch_whole(servers):
    """Regression: freeing a slot unmapped the memory a running batch still read (a segfault)."""
    gate = threading.Event()
    backend = GatedEchoBackend(gate=gate, stateful=False)
    server = servers.serve({"echo": backend}, gates=(gate,))
    slot = open_slot(server)
    caller = threading.Thread(target=lambda: _ignore(SlotBroken, slot.call, leaves_of(
        backend, np.full(3, 4, np.float32)), 0, None, deadline()))
    caller.start()
    assert backend.entered.wait(WAIT)  # the batch holds views of the slot's request
    slot.close()  # the server frees the slot while the batch runs
    wait_until(lambda: server.server.shared_memory.open_slots == 0, "the slot freed")
    gate.set()
    caller.join(WAIT)
    other = servers.client(server.address, "echo", data_plane="grpc")
    np.testing.assert_array_equal(other.action(echo_time_step(np.ones(3, np.float32))).policy_step.action, [2] * 3)
    np.testing.assert_array_equal(backend.observations[-2], [[4, 4, 4]])  # what the freed slot's batch read


def _ignore(error: type, fn, *args) -> None:
    try:
        fn(*args)
    except error:
        pass
