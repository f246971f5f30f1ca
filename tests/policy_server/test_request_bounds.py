"""What a request may make the server do: GetInitialState sizes, LoadCheckpoint paths TensorFlow cannot probe."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf

from policy_client.wire import errors, status
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_server.weights import checkpoints
from policy_server.native.messages import state_row_bytes
from tests.support.fakes import STATE_SPEC, EchoBackend

pytestmark = pytest.mark.timeout(60)


class SizeRecordingEcho(EchoBackend):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.initial_sizes: list = []

    def initial_state(self, batch_size):
        self.initial_sizes.append(batch_size)
        return super().initial_state(batch_size)


def initial_state_error(stub, batch_size: int, policy: str = "echo") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        stub.GetInitialState(service_pb.GetInitialStateRequest(policy=policy, batch_size=batch_size), timeout=10)
    return info.value


def test_state_row_bytes_follow_the_spec():
    assert state_row_bytes(()) == 0
    assert state_row_bytes(STATE_SPEC) == 8
    from tf_agents.specs import array_spec  # pylint: disable=import-outside-toplevel

    spec = {"h": array_spec.ArraySpec((4, 2), np.float32), "flag": array_spec.ArraySpec((), np.bool_),
            "none": array_spec.ArraySpec((0, 5), np.float64)}
    assert state_row_bytes(spec) == 4 * 2 * 4 + 1


def test_initial_states_up_to_the_message_limit_are_built_and_larger_ones_refused_naming_batch_size(servers):
    backend = SizeRecordingEcho()
    server = servers.serve({"echo": backend}, max_message_bytes=4096)
    stub, client = servers.stub(server.address), servers.client(server.address, "echo")
    assert client.get_initial_state(100)["count"].shape == (100,)  # 800 bytes
    error = initial_state_error(stub, 4096 // 8 + 1)
    remote = status.from_rpc_error(error)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, remote
    assert [f for f, _ in remote.fields] == ["batch_size"] and "at most 512 rows" in remote.details
    assert backend.initial_sizes == [100]


@pytest.mark.parametrize("batch_size", [4097, 2**32 - 1])
def test_more_rows_than_a_message_has_bytes_are_invalid_even_for_a_stateless_policy(servers, batch_size):
    backend = SizeRecordingEcho(stateful=False)
    server = servers.serve({"echo": backend}, max_message_bytes=4096)
    stub = servers.stub(server.address)
    error = initial_state_error(stub, batch_size)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [f for f, _ in status.from_rpc_error(error).fields] == ["batch_size"]
    assert backend.initial_sizes == []
    # A stateless policy's state costs nothing: any number of rows a request could carry.
    response = stub.GetInitialState(service_pb.GetInitialStateRequest(policy="echo", batch_size=4096), timeout=10)
    assert not response.state.tuple.values and backend.initial_sizes == [4096]


def test_as_local_initial_states_are_bounded_too(servers):
    backend = SizeRecordingEcho()
    server = servers.serve({"echo": backend}, max_message_bytes=1024)
    request = service_pb.GetInitialStateRequest(policy="echo", batch_size=200,
                                                input_mode=service_pb.INPUT_MODE_AS_LOCAL)
    with pytest.raises(grpc.RpcError) as info:
        servers.stub(server.address).GetInitialState(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and backend.initial_sizes == []


# ----------------------------------------------------------------- checkpoint paths


@pytest.mark.parametrize("path", ["s3://bucket/policy", "hdfs://namenode/policy", "gcs://bucket/policy"])
def test_unsupported_filesystems_are_invalid_argument_naming_path(servers, path):
    server = servers.serve({"echo": EchoBackend()})
    with pytest.raises(errors.InvalidArgumentError) as info:
        servers.client(server.address, "echo").load_checkpoint(path)
    scheme = path.split(":")[0]
    assert f"the {scheme}:// filesystem is not supported by this server's TensorFlow" in info.value.details
    assert [f for f, _ in info.value.fields] == ["path"]


@pytest.mark.parametrize("tf_error, expected", [
    (tf.errors.PermissionDeniedError, errors.FailedPreconditionError),
    (tf.errors.UnauthenticatedError, errors.FailedPreconditionError),
    (tf.errors.DataLossError, errors.FailedPreconditionError),
    (tf.errors.InternalError, errors.FailedPreconditionError),
    (tf.errors.InvalidArgumentError, errors.InvalidArgumentError),
    (tf.errors.NotFoundError, errors.InvalidArgumentError),
    (tf.errors.UnavailableError, errors.UnavailableError),
    (tf.errors.DeadlineExceededError, errors.UnavailableError),
])
def test_every_tensorflow_error_probing_a_path_has_a_status_naming_path(tf_error, expected):
    error = checkpoints.path_error("/some/where", tf_error(None, None, "the filesystem said no"))
    assert type(error) is expected and "the filesystem said no" in error.details
    assert [f for f, _ in error.fields] == ["path"]


def test_a_path_the_server_may_not_read_is_failed_precondition_not_internal(servers, monkeypatch):
    def denied(path):
        raise tf.errors.PermissionDeniedError(None, None, f"{path}: Permission denied")

    server = servers.serve({"echo": EchoBackend()})
    monkeypatch.setattr(tf.io.gfile, "exists", denied)
    with pytest.raises(errors.FailedPreconditionError) as info:
        servers.client(server.address, "echo").load_checkpoint("/root/secret/policy")
    assert "may not read" in info.value.details and [f for f, _ in info.value.fields] == ["path"]


def test_a_long_unsupported_path_is_cut_in_the_error(servers):
    server = servers.serve({"echo": EchoBackend()})
    with pytest.raises(grpc.RpcError) as info:
        servers.stub(server.address).LoadCheckpoint(
            service_pb.LoadCheckpointRequest(policy="echo", path="s3" * 50_000 + "://b/p"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(info.value.details()) <= status.MAX_MESSAGE_CHARS
