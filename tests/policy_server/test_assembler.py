"""The push assembler: slices are checked before buffering and must cover every byte exactly once."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from policy_client.wire import errors, status
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import types_pb2 as pb
from policy_server.weights.push import PushAssembler
from policy_server.backends.base import VariableSpec
from tests.support.fakes import EchoBackend

SPECS = [VariableSpec("net/kernel:0", (2, 3), np.dtype(np.float32)), VariableSpec("net/bias:0", (3,), np.dtype(np.float32))]
KERNEL = np.arange(6, dtype=np.float32).reshape(2, 3)
BIAS = np.array([7, 8, 9], np.float32)


def piece(index: int, offset: int, content: bytes, *, name: str = "", shape=None,
          dtype: int = pb.DTYPE_FLOAT32) -> service_pb.VariableSlice:
    return service_pb.VariableSlice(index=index, name=name, dtype=dtype, shape=SPECS[index].shape if shape is None else shape,
                                    offset=offset, content=content)


def test_slices_in_any_order_assemble_exactly():
    assembler = PushAssembler(SPECS, 2)
    kernel = KERNEL.tobytes()
    for p in (piece(1, 0, BIAS.tobytes()), piece(0, 12, kernel[12:]), piece(0, 0, kernel[:12])):
        assembler.add(p)
    kernel_value, bias_value = assembler.values()
    np.testing.assert_array_equal(kernel_value, KERNEL)
    np.testing.assert_array_equal(bias_value, BIAS)
    assert assembler.num_bytes == 36


def test_a_duplicated_slice_cannot_hide_a_missing_one():
    assembler = PushAssembler(SPECS, 2)
    kernel = KERNEL.tobytes()
    assembler.add(piece(0, 0, kernel[:12]))
    assembler.add(piece(1, 0, BIAS.tobytes()))
    with pytest.raises(errors.InvalidArgumentError, match=r"bytes 0\.\.12 overlap bytes 0\.\.12 already received"):
        assembler.add(piece(0, 0, kernel[:12]))  # as many bytes as the missing half: counting would pass


@pytest.mark.parametrize("first, second", [((0, 12), (8, 20)), ((8, 20), (0, 12)), ((0, 24), (4, 8))],
                         ids=["overlap-after", "overlap-before", "inside"])
def test_overlapping_slices_are_refused(first, second):
    assembler = PushAssembler(SPECS, 2)
    kernel = KERNEL.tobytes()
    assembler.add(piece(0, first[0], kernel[first[0]:first[1]]))
    with pytest.raises(errors.InvalidArgumentError, match="overlap") as info:
        assembler.add(piece(0, second[0], kernel[second[0]:second[1]]))
    assert info.value.fields[0][0] == "slices.offset"


def test_a_gap_is_named_with_its_byte_range():
    assembler = PushAssembler(SPECS, 2)
    kernel = KERNEL.tobytes()
    assembler.add(piece(0, 0, kernel[:8]))
    assembler.add(piece(0, 16, kernel[16:]))
    assembler.add(piece(1, 0, BIAS.tobytes()))
    with pytest.raises(errors.InvalidArgumentError, match=r"variable 0 \('net/kernel:0'\): bytes 8\.\.16 of 24 "
                                                          "were never received"):
        assembler.values()


def test_a_variable_never_sent_is_refused():
    assembler = PushAssembler(SPECS, 2)
    assembler.add(piece(0, 0, KERNEL.tobytes()))
    with pytest.raises(errors.InvalidArgumentError, match=r"variable 1 .* bytes 0\.\.12 of 12 were never received"):
        assembler.values()


@pytest.mark.parametrize("bad, match", [
    (piece(2, 0, b"", shape=(3,)), "slices.index 2: the policy has 2 variables"),
    (piece(0, 20, b"\0" * 8), r"bytes 20\.\.28 exceed its size of 24"),
    (piece(0, 0, b"", shape=(3, 2)), r"expected shape \(2, 3\)"),
    (piece(0, 0, b"", dtype=pb.DTYPE_FLOAT64), "dtype float32"),
    (piece(0, 0, b"", dtype=0), "DTYPE_UNSPECIFIED"),
    (piece(1, 0, b"", name="net/kernel:0"), "expected the variable named 'net/bias:0'"),
], ids=["index", "bounds", "shape", "dtype", "no-dtype", "name"])
def test_each_slice_is_checked_before_it_is_buffered(bad, match):
    assembler = PushAssembler(SPECS, 2)
    with pytest.raises(errors.InvalidArgumentError, match=match):
        assembler.add(bad)
    assert assembler.num_bytes == 0


def test_names_match_modulo_keras_numbering():
    assembler = PushAssembler(SPECS, 2)
    assembler.add(piece(1, 0, BIAS.tobytes(), name="net_7/bias:0"))


def test_wrong_variable_count_is_refused():
    with pytest.raises(errors.InvalidArgumentError, match="the policy has 2 variables, the push announces 3"):
        PushAssembler(SPECS, 3)


def test_a_push_with_a_duplicated_slice_is_refused_over_the_wire(servers):
    backend = EchoBackend(stateful=False)
    server = servers.serve({"echo": backend})
    stub = servers.stub(server.address)
    bias = np.float32(5).tobytes()
    requests = [service_pb.PushVariablesRequest(policy="echo", version=3, num_variables=1),
                service_pb.PushVariablesRequest(slices=[piece(0, 0, bias[:2], shape=()),
                                                        piece(0, 0, bias[:2], shape=())])]
    with pytest.raises(grpc.RpcError) as info:
        stub.PushVariables(iter(requests), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = status.from_rpc_error(info.value)
    assert "overlap" in error.details and error.fields[0][0] == "slices.offset"
    assert backend.version == 0 and backend.bias is None  # nothing was swapped in
