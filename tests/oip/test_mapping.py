"""The OIP mapping in process, with the project's own generated stubs: names, datatypes, contents, errors.

What tritonclient cannot show: typed contents (it always sends raw), the
bounds in ModelMetadata's properties (Triton's proto has no such field),
nested dict observations, client-held state, auth and metrics.
"""

from __future__ import annotations

import json
import urllib.request

import grpc
import numpy as np
import pytest
from tf_agents.specs import array_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

from policy_client.wire.generated import grpc_predict_v2_pb2 as pb
from policy_client.wire.generated import grpc_predict_v2_pb2_grpc as oip_grpc
from policy_client.wire.standins import PolicySpecs
from policy_server.backends.base import Backend
from policy_server.oip import tensors
from policy_server.security import TokenAuth
from tests.support.fakes import EchoBackend, echo_time_step

pytestmark = pytest.mark.timeout(120)

OBSERVATION = {"pos": array_spec.BoundedArraySpec((2,), np.float32, -1.0, [1.0, 2.0], name="pos"),
               "sensors": {"count": array_spec.ArraySpec((), np.int8, name="count"),
                           "on": array_spec.ArraySpec((3,), np.bool_, name="on")}}
ACTION = {"move": array_spec.BoundedArraySpec((), np.int64, 0, 9, name="move"),
          "half": array_spec.ArraySpec((2,), np.float16, name="half")}


class DictBackend(Backend):
    """Nested dict observations and actions: move = count + number of sensors on; half = pos as float16."""

    kind = "dict"

    def __init__(self):
        super().__init__(PolicySpecs(ts.time_step_spec(OBSERVATION), ACTION, (), (), None), version=4)

    def action(self, time_step, policy_state, seed=None):
        obs = time_step.observation
        move = obs["sensors"]["count"].astype(np.int64) + obs["sensors"]["on"].sum(axis=-1)
        return policy_step.PolicyStep({"move": move, "half": obs["pos"].astype(np.float16)}, (), ())

    def initial_state(self, batch_size):
        return ()


def stub(servers, address: str) -> oip_grpc.GRPCInferenceServiceStub:
    return oip_grpc.GRPCInferenceServiceStub(servers.channel(address))


def add(request: pb.ModelInferRequest, name: str, value, *, typed: bool = False) -> None:
    array = np.asarray(value)
    datatype = tensors.datatype_of(array.dtype)
    tensor = request.inputs.add(name=name, datatype=datatype, shape=array.shape)
    if typed:
        getattr(tensor.contents, tensors.CONTENTS_FIELD[datatype]).extend(array.reshape(-1).tolist())
    else:
        request.raw_input_contents.append(tensors.raw_bytes(array, datatype))


def dict_request(rows: int = 2, typed: bool = False, **overrides) -> pb.ModelInferRequest:
    values = {"step_type": np.ones(rows, np.int32), "reward": np.zeros(rows, np.float32),
              "discount": np.ones(rows, np.float32), "observation/pos": np.full((rows, 2), 0.5, np.float32),
              "observation/sensors/count": np.arange(rows, dtype=np.int8),
              "observation/sensors/on": np.array([[True, False, True]] * rows)}
    values.update(overrides)
    request = pb.ModelInferRequest(model_name="dict")
    for name, value in values.items():
        add(request, name, value, typed=typed)
    return request


def outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    return {o.name: tensors.read_tensor(o.datatype, o.shape, raw, None, tensors.numpy_dtype(o.datatype))
            for o, raw in zip(response.outputs, response.raw_output_contents)}


@pytest.fixture
def dict_server(servers):
    return servers.serve({"dict": DictBackend()})


@pytest.mark.parametrize("typed", [False, True], ids=["raw", "typed"])
def test_nested_observations_map_to_paths_and_both_contents_are_accepted(servers, dict_server, typed):
    response = stub(servers, dict_server.address).ModelInfer(dict_request(typed=typed))
    assert response.model_name == "dict" and response.model_version == "4"
    got = outputs(response)
    assert [o.name for o in response.outputs] == ["action/half", "action/move"]  # tf.nest order: sorted keys
    np.testing.assert_array_equal(got["action/move"], [2, 3])
    assert got["action/half"].dtype == np.float16 and response.outputs[0].datatype == "FP16"


def test_metadata_lists_paths_shapes_datatypes_and_bounds(servers, dict_server):
    meta = stub(servers, dict_server.address).ModelMetadata(pb.ModelMetadataRequest(name="dict"))
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("step_type", "INT32", [-1]), ("reward", "FP32", [-1]), ("discount", "FP32", [-1]),
        ("observation/pos", "FP32", [-1, 2]), ("observation/sensors/count", "INT8", [-1]),
        ("observation/sensors/on", "BOOL", [-1, 3])]
    assert [(t.name, t.datatype) for t in meta.outputs] == [("action/half", "FP16"), ("action/move", "INT64")]
    assert json.loads(meta.properties["observation/pos.maximum"]) == [1.0, 2.0]
    assert json.loads(meta.properties["action/move.minimum"]) == 0
    assert json.loads(meta.properties["action/move.maximum"]) == 9
    assert meta.properties["stateful"] == "false" and meta.versions == ["4"]


@pytest.mark.parametrize("mutate, message", [
    (lambda r: (r.inputs.add(name="observation/extra", datatype="FP32", shape=[2]),
                r.raw_input_contents.append(b"\0" * 8)),
     "tensor 'observation/extra': not an input of this model"),
    (lambda r: setattr(r.inputs[4], "datatype", "INT16"), "tensor 'observation/sensors/count': expected datatype "
                                                          "INT8, got INT16"),
    (lambda r: r.raw_input_contents.__setitem__(3, b"\0" * 12),
     "tensor 'observation/pos': raw contents hold 12 bytes, shape [2, 2] of FP32 needs 16"),
    (lambda r: r.inputs[1].shape.append(1), "tensor 'reward': expected shape [-1] (batch first, at least 1), "
                                             "got [2, 1]"),
    (lambda r: r.raw_input_contents.pop(), "raw_input_contents holds 5 entries for 6 inputs"),
], ids=["unknown", "datatype", "raw-size", "shape", "raw-count"])
def test_bad_inputs_are_invalid_argument_naming_the_tensor(servers, dict_server, mutate, message):
    request = dict_request()
    mutate(request)
    with pytest.raises(grpc.RpcError) as raised:
        stub(servers, dict_server.address).ModelInfer(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()


def test_typed_contents_are_checked_too(servers, dict_server):
    oip = stub(servers, dict_server.address)
    request = dict_request(typed=True)
    request.inputs[4].contents.int_contents[0] = 300  # does not fit INT8
    with pytest.raises(grpc.RpcError) as raised:
        oip.ModelInfer(request)
    assert "tensor 'observation/sensors/count': int_contents hold values outside [-128, 127]" in \
        raised.value.details()
    request = dict_request(typed=True)
    del request.inputs[0].contents.int_contents[:]
    with pytest.raises(grpc.RpcError) as raised:
        oip.ModelInfer(request)
    assert "tensor 'step_type': int_contents hold 0 elements, shape [2] needs 2" in raised.value.details()


def test_versions_unknown_models_and_requested_outputs(servers, dict_server):
    oip = stub(servers, dict_server.address)
    request = dict_request()
    request.outputs.add(name="action/move")
    response = oip.ModelInfer(request)
    assert [o.name for o in response.outputs] == ["action/move"]
    request.model_version = "3"
    with pytest.raises(grpc.RpcError) as raised:
        oip.ModelInfer(request)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND and "serves version 4 now" in raised.value.details()
    assert oip.ModelReady(pb.ModelReadyRequest(name="dict", version="4")).ready
    assert not oip.ModelReady(pb.ModelReadyRequest(name="dict", version="3")).ready
    with pytest.raises(grpc.RpcError) as raised:
        oip.ModelReady(pb.ModelReadyRequest(name="nope"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def echo_request(observation, state=None, model="echo", first: bool = True) -> pb.ModelInferRequest:
    step = echo_time_step(observation, batch_size=len(observation))
    if not first:
        step = step._replace(step_type=np.ones_like(step.step_type))
    request = pb.ModelInferRequest(model_name=model)
    for name in ("step_type", "reward", "discount", "observation"):
        add(request, name, np.asarray(getattr(step, name)))
    if state is not None:
        add(request, "state/count", state)
    return request


def test_client_held_state_travels_as_state_tensors_and_matches_sessions(servers):
    server = servers.serve({"echo": EchoBackend()})
    oip = stub(servers, server.address)
    observation = np.ones((1, 3), np.float32)
    state = np.zeros(1, np.int64)
    for _ in range(3):
        state = outputs(oip.ModelInfer(echo_request(observation, state)))["state/count"]
    np.testing.assert_array_equal(state, [3])
    # The same steps in a session: the server holds the count.
    for step in range(3):
        request = echo_request(observation, first=step == 0)  # a FIRST step type would restart it
        request.parameters["sequence_id"].int64_param = 5
        request.parameters["sequence_start"].bool_param = step == 0
        request.outputs.add(name="state/count")
        got = outputs(oip.ModelInfer(request))["state/count"]
    np.testing.assert_array_equal(got, state)
    with pytest.raises(grpc.RpcError) as raised:  # a session's state is the server's
        request = echo_request(observation, state)
        request.parameters["sequence_id"].int64_param = 5
        oip.ModelInfer(request)
    assert "tensor 'state/count': the server holds this sequence's state" in raised.value.details()


def test_native_and_oip_rows_share_the_batcher_and_the_stats(servers):
    backend = EchoBackend(stateful=False)
    server = servers.serve({"echo": backend})
    oip = stub(servers, server.address)
    futures = [oip.ModelInfer.future(echo_request(np.full((2, 3), i, np.float32))) for i in range(8)]
    for i, future in enumerate(futures):
        np.testing.assert_array_equal(outputs(future.result(20))["action"], np.full((2, 3), 2.0 * i))
    stats = servers.client(server.address, "echo").stats()[0]
    assert stats["requests"] == 8 and stats["rows"] == 16


class OneRowBackend(Backend):
    """Not batchable: takes one unbatched time step, as a plain PyPolicy does."""

    kind = "one_row"
    batchable = False

    def __init__(self):
        super().__init__(EchoBackend(stateful=False).specs)
        self.shapes: list[tuple[int, ...]] = []

    def action(self, time_step, policy_state, seed=None):
        self.shapes.append(time_step.observation.shape)
        return policy_step.PolicyStep(time_step.observation * 2, (), {"version": np.int64(self.version)})

    def initial_state(self, batch_size):
        return ()


def test_a_non_batchable_policy_gets_one_row_unbatched(servers):
    backend = OneRowBackend()
    server = servers.serve({"echo": backend})
    response = stub(servers, server.address).ModelInfer(echo_request(np.ones((1, 3), np.float32)))
    assert [list(o.shape) for o in response.outputs] == [[1, 3], [1]] and backend.shapes == [(3,)]
    np.testing.assert_array_equal(outputs(response)["action"], [[2, 2, 2]])


def test_actors_may_infer_and_calls_count_in_metrics(servers):
    actor = "a" * 24
    server = servers.serve({"echo": EchoBackend(stateful=False)}, auth=TokenAuth({"actor": [actor]}),
                           metrics_port=0)
    oip = stub(servers, server.address)
    with pytest.raises(grpc.RpcError) as raised:
        oip.ModelInfer(echo_request(np.ones((1, 3), np.float32)))
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    metadata = (("authorization", f"Bearer {actor}"),)
    oip.ModelInfer(echo_request(np.ones((1, 3), np.float32)), metadata=metadata)
    assert oip.ServerReady(pb.ServerReadyRequest(), metadata=metadata).ready
    text = urllib.request.urlopen(server.server.metrics_url, timeout=10).read().decode()
    assert 'tfa_policy_requests_total{code="OK",method="ModelInfer",policy="echo"} 1.0' in text
    # Refused before its request is read, as on the native service: no policy label.
    assert 'tfa_policy_requests_total{code="UNAUTHENTICATED",method="ModelInfer",policy="<unknown>"} 1.0' in text
    assert 'tfa_policy_open_sessions{policy="echo"} 0.0' in text


def test_a_stream_ends_with_unavailable_when_the_server_stops_without_waiting_for_the_grace(servers):
    import queue
    import threading
    import time

    from policy_client.wire.generated import triton_streaming_pb2 as stream_pb

    server = servers.serve({"echo": EchoBackend(stateful=False)})
    call = servers.channel(server.address).stream_stream(
        "/inference.GRPCInferenceService/ModelStreamInfer", request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=stream_pb.ModelStreamInferResponse.FromString)
    requests: queue.Queue = queue.Queue()
    answers = call(iter(requests.get, None))
    requests.put(echo_request(np.ones((1, 3), np.float32)))
    first = next(answers)
    assert not first.error_message and first.infer_response.model_name == "echo"
    started = time.monotonic()
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 30.0})
    stopper.start()
    with pytest.raises(grpc.RpcError) as raised:
        next(answers)
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in raised.value.details()
    requests.put(None)
    stopper.join(30)
    assert time.monotonic() - started < 10


def test_get_stats_shows_the_open_sessions(servers):
    server = servers.serve({"echo": EchoBackend()})
    oip = stub(servers, server.address)
    for sequence in (1, 2):
        request = echo_request(np.ones((1, 3), np.float32))
        request.parameters["sequence_id"].int64_param = sequence
        oip.ModelInfer(request)
    assert servers.client(server.address, "echo").stats()[0]["open_sessions"] == 2


def test_requests_carry_their_source_for_fair_batches(servers, monkeypatch):
    """A unary caller is its peer and a stream is one source, as on the native API (fair_queue)."""
    import queue

    from policy_client.wire.generated import triton_streaming_pb2 as stream_pb
    from policy_server.engine.scheduler import BatchScheduler

    sources = []
    submit = BatchScheduler.submit

    def recording(self, request):
        sources.append(request.source)
        return submit(self, request)

    monkeypatch.setattr(BatchScheduler, "submit", recording)
    server = servers.serve({"echo": EchoBackend(stateful=False)})
    oip = stub(servers, server.address)
    for _ in range(2):
        oip.ModelInfer(echo_request(np.ones((1, 3), np.float32)))
    call = servers.channel(server.address).stream_stream(
        "/inference.GRPCInferenceService/ModelStreamInfer", request_serializer=pb.ModelInferRequest.SerializeToString,
        response_deserializer=stream_pb.ModelStreamInferResponse.FromString)
    requests: queue.Queue = queue.Queue()
    answers = call(iter(requests.get, None))
    for _ in range(2):
        requests.put(echo_request(np.ones((1, 3), np.float32)))
        assert not next(answers).error_message
    requests.put(None)
    assert len(sources) == 4 and None not in sources
    unary, stream = sources[:2], sources[2:]
    assert isinstance(unary[0], str) and "127.0.0.1" in unary[0]  # the caller's peer
    assert stream[0] is stream[1] and stream[0] not in unary
