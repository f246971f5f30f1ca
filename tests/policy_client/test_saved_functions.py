"""The SavedModel policy's own functions on a RemotePolicy: get_metadata() and PolicySaver.register_function's.

A policy saved with metadata and a registered function ("q_values", the Q
network on a batch of observations) is served from its directory; the
RemotePolicy (over gRPC and over shared memory), and `load("grpc://...")`, must
offer what SavedModelPyTFEagerPolicy and `load(path)` offer: the same values
as constant tensors, the saved input signature, the local error types, and
AttributeError for any other name.
"""

from __future__ import annotations

import concurrent.futures
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import policy_saver, py_tf_eager_policy

import policy_client
from policy_client import PolicyClient, RemotePolicy
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_server import EagerBackend
from policy_server.backends.base import TensorSignature
from policy_server.backends.saved_model import SavedModelBackend
from policy_server.server import BackgroundServer
from tests.support.same import raised
from tests.support.fakes import EchoBackend

OBS = np.array([[0.01, 0.02, -0.03, 0.04], [0.1, -0.2, 0.05, 0.0], [0.0, 0.0, 0.0, 0.0]], np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, cartpole_tf_policy):
    """(SavedModel path, the local SavedModelPyTFEagerPolicy, a server of it and of the eager policy)."""
    policy = cartpole_tf_policy
    path = str(tmp_path_factory.mktemp("saved") / "policy")
    network = policy.wrapped_policy._q_network if hasattr(policy, "wrapped_policy") else policy._q_network  # pylint: disable=protected-access
    saver = policy_saver.PolicySaver(policy, train_step=tf.Variable(42, dtype=tf.int64),
                                     metadata={"env_step": tf.Variable(7, dtype=tf.int64),
                                               "lr": tf.Variable(0.5, dtype=tf.float32)})
    saver.register_function("q_values", lambda observation: network(observation)[0], policy.time_step_spec.observation)
    saver.save(path)
    local = py_tf_eager_policy.SavedModelPyTFEagerPolicy(path, load_specs_from_pbtxt=True)
    with BackgroundServer({"saved": SavedModelBackend(path), "eager": EagerBackend(policy)}) as server:
        yield path, local, server



@pytest.mark.parametrize("plane", ["grpc", "shm"])
def test_metadata_and_registered_functions_as_the_local_saved_model_policy(saved, plane):
    _, local, server = saved
    with RemotePolicy(server.address, "saved", data_plane=plane, timeout=30) as remote:
        metadata, expected = remote.get_metadata(), local.get_metadata()
        assert set(metadata) == set(expected) == {"env_step", "lr"}
        for key, value in expected.items():
            assert isinstance(metadata[key], tf.Tensor) and metadata[key].dtype == value.dtype
            assert metadata[key].numpy() == value.numpy()
        q_values = remote.q_values(OBS)
        assert isinstance(q_values, tf.Tensor)
        np.testing.assert_array_equal(q_values.numpy(), local.q_values(OBS).numpy())
        np.testing.assert_array_equal(remote.q_values(tf.constant(OBS)).numpy(), q_values.numpy())  # tensors too
        assert remote.q_values.input_signature == [("args[0]", np.dtype(np.float32), (None, 4))]
        # What the saved signature refuses, refused alike.
        wrong = np.zeros((2, 5), np.float32)
        local_error, remote_error = raised(lambda: local.q_values(wrong)), raised(lambda: remote.q_values(wrong))
        assert isinstance(remote_error, type(local_error)), (type(local_error), type(remote_error))
        # Anything else is the local AttributeError.
        assert isinstance(raised(lambda: local.no_such_function), AttributeError)
        with pytest.raises(AttributeError, match="no_such_function"):
            remote.no_such_function  # noqa: B018  # pylint: disable=pointless-statement
        assert not hasattr(remote, "no_such_function") and not hasattr(remote, "_private_name")
        assert remote.get_train_step() == local.get_train_step() == 42


def test_load_offers_the_same_methods_locally_and_remotely(saved):
    path, _, server = saved
    here, there = policy_client.load(path), policy_client.load(f"grpc://{server.address}/saved")
    try:
        assert here.get_metadata()["env_step"].numpy() == there.get_metadata()["env_step"].numpy() == 7
        np.testing.assert_array_equal(here.q_values(OBS).numpy(), there.q_values(OBS).numpy())
    finally:
        there.close()


def test_other_backends_have_no_functions_as_locally(saved, cartpole_tf_policy):
    _, _, server = saved
    local = py_tf_eager_policy.PyTFEagerPolicy(cartpole_tf_policy)
    with RemotePolicy(server.address, "eager", timeout=30) as remote:
        for name in ("get_metadata", "q_values"):
            assert isinstance(raised(lambda: getattr(local, name)()), AttributeError)  # noqa: B023
            assert isinstance(raised(lambda: getattr(remote, name)()), AttributeError)  # noqa: B023


def test_the_rpcs_list_and_refuse_clearly(saved):
    _, _, server = saved
    with grpc.insecure_channel(server.address) as channel:
        list_functions = channel.unary_unary("/tfa_policy_grpc.v1.PolicyService/ListFunctions",
                                             request_serializer=service_pb.ListFunctionsRequest.SerializeToString,
                                             response_deserializer=service_pb.ListFunctionsResponse.FromString)
        call = channel.unary_unary("/tfa_policy_grpc.v1.PolicyService/CallFunction",
                                   request_serializer=service_pb.CallFunctionRequest.SerializeToString,
                                   response_deserializer=service_pb.CallFunctionResponse.FromString)
        listed = list_functions(service_pb.ListFunctionsRequest(policy="saved"), timeout=30)
        assert [f.name for f in listed.functions] == ["get_metadata", "q_values"] and listed.version == 42
        assert [(t.path, list(t.shape)) for t in listed.functions[1].inputs] == [("args[0]", [-1, 4])]
        assert list(list_functions(service_pb.ListFunctionsRequest(policy="eager"), timeout=30).functions) == []
        with pytest.raises(grpc.RpcError) as raised:
            call(service_pb.CallFunctionRequest(policy="saved", function="nope"), timeout=30)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        assert "function: " in raised.value.details() and "get_metadata, q_values" in raised.value.details()


class _FunctionsBackend(EchoBackend):
    """An echo policy with two functions: "double" takes rows (signature (None, 3)), each call sleeping 50 ms;
    "total" takes rows but answers one number for all of them (so it cannot be split)."""

    def __init__(self):
        super().__init__()
        self.executions: list[tuple[str, int]] = []

    def functions(self):
        rows = [TensorSignature("args[0]", np.dtype(np.float32), (None, 3))]
        return {"double": rows, "total": rows}

    def call_function(self, name, args):
        (x,) = args
        self.executions.append((name, len(x)))
        time.sleep(0.05)
        return 2 * x if name == "double" else np.float32(x.sum())


def test_concurrent_calls_of_a_row_taking_function_run_as_one_batch():
    backend = _FunctionsBackend()
    with BackgroundServer({"f": backend}) as server, PolicyClient(server.address, "f", timeout=30) as client:
        inputs = [np.full((i % 3 + 1, 3), i, np.float32) for i in range(8)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda x: client.call_function("double", x), inputs))
        for x, result in zip(inputs, results):
            np.testing.assert_array_equal(result, 2 * x)  # each caller its own rows
        doubles = [rows for name, rows in backend.executions if name == "double"]
        assert sum(doubles) == sum(len(x) for x in inputs) and len(doubles) < len(inputs), doubles
        # A result without the rows' leading dimension cannot be split: each call alone, and the right answer.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            totals = list(pool.map(lambda x: client.call_function("total", x), inputs[:4]))
        assert [float(t) for t in totals] == [float(x.sum()) for x in inputs[:4]]
