"""The admission seam: every front door admits its requests through Admission.submit, and a new front
door is one Call subclass."""

from __future__ import annotations

import queue

import grpc
import numpy as np
import pytest

from policy_client.wire import errors
from policy_client.wire.generated import grpc_predict_v2_pb2 as oip_pb
from policy_client.wire.generated import grpc_predict_v2_pb2_grpc as oip_grpc
from policy_client.wire.generated import triton_streaming_pb2 as stream_pb
from policy_server.admission import Admission, Call
from policy_server.engine.batching import Request
from policy_server.native.messages import ActionCall
from policy_server.oip.infer import InferCall
from policy_server.shm import plane
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT


def count(rows: int = 0) -> dict:
    return {"count": np.zeros((rows,) if rows else (), np.int64)}


def infer_request(rows: int) -> oip_pb.ModelInferRequest:
    """An OIP request for EchoBackend(stateful=False): the time step's four tensors, batch first."""
    request = oip_pb.ModelInferRequest(model_name="echo")
    values = {"step_type": np.zeros(rows, np.int32), "reward": np.zeros(rows, np.float32),
              "discount": np.ones(rows, np.float32), "observation": np.ones((rows, 3), np.float32)}
    datatypes = {np.dtype(np.int32): "INT32", np.dtype(np.float32): "FP32"}
    for name, value in values.items():
        request.inputs.add(name=name, datatype=datatypes[value.dtype], shape=value.shape)
        request.raw_input_contents.append(value.tobytes())
    return request


def test_every_front_door_admits_through_the_one_seam(servers, monkeypatch):
    """Native unary and stream, the shared-memory slot, OIP unary and stream: each submits a Call."""
    kinds = []
    submit = Admission.submit

    def recording(self, call):
        kinds.append(type(call))
        return submit(self, call)

    monkeypatch.setattr(Admission, "submit", recording)
    server = servers.serve({"echo": EchoBackend(stateful=False)})
    with servers.client(server.address, "echo", transport="unary", data_plane="grpc") as unary:
        unary.action(echo_time_step(np.ones(3, np.float32)))
    with servers.client(server.address, "echo", data_plane="grpc") as stream:
        stream.action(echo_time_step(np.ones(3, np.float32)))
    doors = [ActionCall, ActionCall]
    if plane.available():
        with servers.client(server.address, "echo", data_plane="shm") as shared:
            for _ in range(2):  # the first answer teaches the client the specs; the second takes the slot
                shared.action(echo_time_step(np.ones(3, np.float32)))
            assert shared.data_plane == "shm"
        doors += [ActionCall, plane._SlotCall]  # pylint: disable=protected-access
    channel = servers.channel(server.address)
    oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(infer_request(2), timeout=WAIT)
    call = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer",
                                 request_serializer=oip_pb.ModelInferRequest.SerializeToString,
                                 response_deserializer=stream_pb.ModelStreamInferResponse.FromString)
    requests: queue.Queue = queue.Queue()
    answers = call(iter(requests.get, None), timeout=WAIT)
    requests.put(infer_request(1))
    assert not next(answers).error_message
    requests.put(None)
    doors += [InferCall, InferCall]
    assert kinds == doors


class ArrayCall(Call):
    """A front door written in a test: a batch of observations, read straight into leaves."""

    def __init__(self, observation: np.ndarray, policy: str = "echo", seed: int | None = None):
        self.observation, self.policy, self.seed = observation, policy, seed
        self.source = "test-door"

    def read(self, hosted) -> Request:
        if self.observation.shape[1:] != (3,):  # the door's own spec check
            raise errors.InvalidArgumentError.at("observation", f"expected 3 columns, got {self.observation.shape}")
        rows = len(self.observation)
        leaves = [np.zeros(rows, np.int32), np.zeros(rows, np.float32), np.ones(rows, np.float32), self.observation]
        return Request(leaves, rows, hosted.request_plan.unflatten, self.seed, raw=True)


def test_a_new_front_door_is_one_call_subclass(servers):
    backend = EchoBackend(stateful=False, version=7)
    server = servers.serve({"echo": backend})
    observation = np.arange(6, dtype=np.float32).reshape(2, 3)

    async def admit():
        return await server.server.admission.submit(ArrayCall(observation))

    answer, version = server.run(admit(), timeout=WAIT)
    np.testing.assert_array_equal(answer[0], 2 * observation + 7)  # the PolicyStep's leaves: action first
    assert version == 7 and backend.batch_sizes == [2]


def test_admission_refuses_in_the_future_never_by_raising(servers):
    """Unknown policies, a seed the policy cannot take and a read that fails all arrive as the future's error."""
    class NoSeeds(EchoBackend):
        supports_seed = False

    server = servers.serve({"echo": EchoBackend(stateful=False), "plain": NoSeeds(stateful=False)})
    admission = server.server.admission

    async def outcome(call):
        future = admission.submit(call)  # never raises
        try:
            await future
        except errors.RemoteError as e:
            return e
        return None

    observation = np.ones((1, 3), np.float32)
    unknown = server.run(outcome(ArrayCall(observation, policy="nope")), timeout=WAIT)
    assert isinstance(unknown, errors.PolicyNotFoundError) and unknown.fields == (("policy", "no such policy"),)
    seeded = server.run(outcome(ArrayCall(observation, policy="plain", seed=3)), timeout=WAIT)
    assert isinstance(seeded, errors.InvalidArgumentError) and seeded.fields[0][0] == "seed"
    bad = server.run(outcome(ArrayCall(np.ones((1, 4), np.float32))), timeout=WAIT)
    assert isinstance(bad, errors.InvalidArgumentError) and bad.fields[0][0] == "observation"
    # Each refusal of a policy's call is counted once, on its policy.
    assert [server.server.registry.get(n).stats.snapshot().errors for n in ("echo", "plain")] == [1, 1]


def test_a_session_step_from_any_door_runs_through_the_one_session_driver(servers):
    """A native session (ActionRequest.session) and an OIP sequence step the same SessionTable and driver."""
    server = servers.serve({"echo": EchoBackend()})
    with servers.client(server.address, "echo", transport="unary", data_plane="grpc") as client:
        first = client.session_action(echo_time_step(np.ones(3, np.float32)), "a", start=True)
        np.testing.assert_array_equal(first.policy_step.action, 2 * np.ones(3, np.float32))
    channel = servers.channel(server.address)
    request = infer_request(1)
    request.model_name = "echo"
    request.parameters["sequence_id"].int64_param = 5
    request.parameters["sequence_start"].bool_param = True
    oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=WAIT)
    table = server.server.registry.get("echo").sessions
    assert table.counts()["started"] == 2 and table.open == 2
    with pytest.raises(grpc.RpcError) as refused:  # not open: the same driver's refusal, in OIP's names
        request.parameters["sequence_id"].int64_param = 6
        request.parameters["sequence_start"].bool_param = False
        request.inputs[0].ClearField("contents")
        request.raw_input_contents[0] = np.ones(1, np.int32).tobytes()  # MID: does not start the sequence
        oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=WAIT)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "sequence_id" in refused.value.details()

