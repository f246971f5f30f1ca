"""Golden bytes that pin the tfa_policy_grpc.v1 wire format produced by the wire.

Every literal below was generated once with the codec and checked by hand
(e.g. 1.5 as a little-endian float32 is 0000c03f, -0.0 is 00000080). A change
here is a wire-format change: clients in other languages and older peers see
it too. Update a literal only on purpose, with a new field or a new version.
"""

from __future__ import annotations

import collections
import typing

import numpy as np
import pytest

from policy_client import wire
from policy_client.wire import standins as light
from policy_client.wire import errors, status
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import types_pb2 as pb


def _class_of(light_class: type, module: str) -> tuple[type, ...]:
    """The class a value decodes into: the one registered under TF-Agents' name (ours or TF-Agents')."""
    if light_class is light.BoundedArraySpec:
        return (wire.NAMED_TYPES.bounded_array_spec,)
    name = f"{module}.{light_class.__name__}"
    return (wire.NAMED_TYPES.namedtuple_class(name, tuple(light_class._fields)),)


def _check_float32(value: typing.Any) -> None:
    assert value.dtype == np.float32 and value.shape == (2,)
    assert value[0] == 1.5 and value[1] == 0 and np.signbit(value[1])


def _check_strings(value: typing.Any) -> None:
    assert value.dtype == object and value.tolist() == [b"cart", b"pole", b""]


def _check_unicode(value: typing.Any) -> None:
    assert value.dtype == np.dtype("<U2") and value.tolist() == ["\u00e9", "ab"]


def _check_nest(value: typing.Any) -> None:
    assert type(value) is dict and list(value) == ["a", "b"]  # Sorted on the wire.
    (flags,) = value["a"]
    assert flags.dtype == np.bool_ and flags.tolist() == [True, False]
    count, nothing = value["b"]
    assert type(value["b"]) is tuple and count.dtype == np.int32 and count == 7 and nothing is None


def _check_named(value: typing.Any) -> None:
    assert type(value) is collections.OrderedDict and list(value) == ["z", "a"]
    assert isinstance(value["z"], _class_of(light.PolicyStep, "tf_agents.trajectories.policy_step"))
    assert value["z"].action.dtype == np.uint8 and value["z"].action == 3
    assert value["z"].state == () and value["z"].info == () and value["a"] is None


def _check_spec(value: typing.Any) -> None:
    assert isinstance(value, _class_of(light.BoundedArraySpec, "tf_agents.specs.array_spec"))
    assert value.name == "action" and value.shape == (2,) and value.dtype == np.int64
    assert value.minimum.shape == () and value.minimum == 0
    assert value.maximum.tolist() == [3, 4]


def _check_time_step(value: typing.Any) -> None:
    assert isinstance(value, _class_of(light.TimeStep, "tf_agents.trajectories.time_step"))
    assert value.step_type.dtype == np.int32 and value.step_type.shape == () and value.step_type == 1
    assert value.reward.dtype == np.float32 and value.reward == 1.0
    assert value.discount.dtype == np.float32 and value.discount == 1.0
    assert value.observation.dtype == np.float32
    assert value.observation.tolist() == [0.25, -0.5, 0.0, 2.0]


def _check_policy_step(value: typing.Any) -> None:
    assert isinstance(value, _class_of(light.PolicyStep, "tf_agents.trajectories.policy_step"))
    assert value.action.dtype == np.int64 and value.action.shape == () and value.action == 1
    assert value.state == () and value.info == ()


def _stream_error() -> service_pb.ActionResponse:
    error = errors.InvalidArgumentError("time_step.observation: expected shape (4,)",
                                        fields=(("time_step.observation", "expected shape (4,)"),),
                                        reason="SpecMismatchError")
    return service_pb.ActionResponse(request_id=7, error=status.to_status(error))


def _check_stream_error(value: typing.Any) -> None:
    assert value.request_id == 7 and not value.HasField("policy_step")
    error = status.from_status(value.error)
    assert type(error) is errors.InvalidArgumentError and error.reason == "SpecMismatchError"
    assert error.details == "time_step.observation: expected shape (4,)"
    assert error.fields == (("time_step.observation", "expected shape (4,)"),)


class Golden(typing.NamedTuple):
    """One pinned message: how to build it, its bytes, how to decode and check it."""

    build: typing.Callable[[], typing.Any]
    hex: str
    message_type: type
    decode: typing.Callable[[typing.Any], typing.Any]
    check: typing.Callable[[typing.Any], None]


GOLDEN = {
    # dtype=12 (FLOAT32), shape=[2], content = 1.5 (0000c03f), -0.0 (00000080).
    "float32_tensor": Golden(
        lambda: wire.array_to_proto(np.array([1.5, -0.0], np.float32)),
        "080c1201021a080000c03f00000080",
        pb.Tensor, wire.array_from_proto, _check_float32),
    # dtype=14 (STRING), shape=[3], string_val, string_kind OBJECT (0, omitted).
    "object_string_tensor": Golden(
        lambda: wire.array_to_proto(np.array([b"cart", b"pole", b""], dtype=object)),
        "080e1201032204636172742204706f6c652200",
        pb.Tensor, wire.array_from_proto, _check_strings),
    # string_val in UTF-8 (c3a9 is e-acute), string_kind=2 (UNICODE), string_itemsize=2.
    "unicode_string_tensor": Golden(
        lambda: wire.array_to_proto(np.array(["\u00e9", "ab"], dtype="U2")),
        "080e1201022202c3a92202616228023002",
        pb.Tensor, wire.array_from_proto, _check_unicode),
    # A plain dict (entries in its own order) of a list and a tuple holding None.
    "dict_tuple_nest": Golden(
        lambda: wire.nest_to_proto({"a": [np.array([True, False])], "b": (np.int32(7), None)}),
        "2a2f0a140a0161120f1a0d0a0b0a0908011201021a0201000a170a0162121222100a0a0a0808041a04070000"
        "000a023a00",
        pb.Nest, wire.nest_from_proto, _check_nest),
    # An OrderedDict (ordered=true, own order) holding a PolicyStep under TF-Agents' name.
    "ordered_dict_named_tuple_nest": Golden(
        lambda: wire.nest_to_proto(collections.OrderedDict(
            [("z", light.PolicyStep(np.uint8(3), (), ())), ("a", None)])),
        "2a6f0a620a017a125d325b0a2d74665f6167656e74732e7472616a6563746f726965732e706f6c6963795f73"
        "7465702e506f6c6963795374657012110a06616374696f6e12070a0508061a0103120b0a0573746174651202"
        "2200120a0a04696e666f120222000a070a016112023a001001",
        pb.Nest, wire.nest_from_proto, _check_named),
    # name="action", shape=[2], dtype=5 (INT64), bounds: scalar minimum 0, per-element maximum [3, 4].
    "bounded_array_spec": Golden(
        lambda: wire.spec_to_proto(light.BoundedArraySpec((2,), np.int64, 0, [3, 4], "action")),
        "0a06616374696f6e120102180522270a0c08051a080000000000000000121708051201021a100300000000"
        "0000000400000000000000",
        pb.ArraySpec, wire.spec_from_proto, _check_spec),
    # An unbatched CartPole-like TimeStep: MID step, reward 1, discount 1, (4,) float32 observation.
    "cartpole_time_step": Golden(
        lambda: wire.time_step_to_proto(light.TimeStep(
            step_type=np.int32(1), reward=np.float32(1.0), discount=np.float32(1.0),
            observation=np.array([0.25, -0.5, 0.0, 2.0], np.float32))),
        "0a0808041a0401000000120a0a08080c1a040000803f1a08080c1a040000803f22190a17080c1201041a10"
        "0000803e000000bf0000000000000040",
        pb.TimeStep, wire.time_step_from_proto, _check_time_step),
    # A stateless PolicyStep: int64 action 1, state and info the empty tuple (Nest{tuple{}}).
    "stateless_policy_step": Golden(
        lambda: wire.policy_step_to_proto(light.PolicyStep(np.int64(1), (), ())),
        "0a0e0a0c08051a080100000000000000120222001a022200",
        pb.PolicyStep, wire.policy_step_from_proto, _check_policy_step),
    # A per-message stream error: request_id=7, error (field 4) = google.rpc.Status{code=3
    # (INVALID_ARGUMENT), message, details=[Any(google.rpc.BadRequest{field_violations}),
    # Any(google.rpc.ErrorInfo{reason, domain})]}. Fields 1 and 2 of the error are what
    # the pre-0.1 Status message had, so older readers still get the code and message.
    "stream_error_response": Golden(
        _stream_error,
        "180722dd010803122a74696d655f737465702e6f62736572766174696f6e3a20657870656374656420736861"
        "70652028342c291a5b0a29747970652e676f6f676c65617069732e636f6d2f676f6f676c652e7270632e4261"
        "6452657175657374122e0a2c0a1574696d655f737465702e6f62736572766174696f6e121365787065637465"
        "642073686170652028342c291a500a28747970652e676f6f676c65617069732e636f6d2f676f6f676c652e72"
        "70632e4572726f72496e666f12240a11537065634d69736d617463684572726f72120f7466612d706f6c6963"
        "792d67727063",
        service_pb.ActionResponse, lambda m: m, _check_stream_error),
}


@pytest.mark.parametrize("name", GOLDEN)
def test_encoding_matches_golden_bytes(name: str) -> None:
    golden = GOLDEN[name]
    assert golden.build().SerializeToString(deterministic=True).hex() == golden.hex


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_bytes_decode_to_the_expected_values(name: str) -> None:
    golden = GOLDEN[name]
    msg = wire.parse_message(golden.message_type, bytes.fromhex(golden.hex))
    golden.check(golden.decode(msg))


def test_float32_golden_is_little_endian_ieee754() -> None:
    content = wire.array_to_proto(np.array([1.5, -0.0], np.float32)).content
    assert content.hex() == "0000c03f" + "00000080"
    assert content == np.array([1.5, -0.0], dtype="<f4").tobytes()


if __name__ == "__main__":  # Prints the current bytes, to review a deliberate change.
    for case, entry in GOLDEN.items():
        print(case, entry.build().SerializeToString(deterministic=True).hex())
