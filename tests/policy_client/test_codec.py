"""Round-trip properties and malformed-input tests of policy_client.wire."""

from __future__ import annotations

import collections
import sys
import time
import tracemalloc
import types
import typing

import hypothesis.extra.numpy as hnp
import ml_dtypes
import numpy as np
import pytest
from google.protobuf import message as pb_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# With TF-Agents' classes registered (tf_agents_types.register), the codec decodes into them.
from tf_agents.specs import array_spec
from tf_agents.trajectories import policy_step as tfa_policy_step
from tf_agents.trajectories import time_step as tfa_time_step
from tf_agents.trajectories import trajectory as tfa_trajectory

from policy_client import wire
from policy_client.wire import standins as light
from policy_client.wire.errors import CodecError
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import types_pb2 as pb
from policy_client.wire import tf_agents_types

tf_agents_types.register()

# The strategies below are large; hypothesis warns when it prints them.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

PROPERTY = settings(max_examples=500, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
INT_DTYPES = [np.dtype(d) for d in ("<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8")]
FLOAT_DTYPES = [np.dtype(d) for d in ("<f2", "<f4", "<f8")]
NUMERIC_DTYPES = [np.dtype(np.bool_), *INT_DTYPES, *FLOAT_DTYPES, BFLOAT16]
_UINT_OF_SIZE = {2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}

# Registered named tuples: they must come back as these very classes.
Point = collections.namedtuple("Point", ["x", "y"])
Triple = collections.namedtuple("Triple", "a b c")
# Not registered: it comes back as a made-up class with the same name and fields.
Unregistered = collections.namedtuple("Unregistered", ["u", "v"])


class Holder:
    """Holds a typing.NamedTuple whose qualified name is "Holder.Inner"."""

    class Inner(typing.NamedTuple):
        """A named tuple nested in a class: importable through its __qualname__."""

        left: typing.Any
        right: typing.Any


for _cls in (Point, Triple, Holder.Inner):
    wire.register_namedtuple(_cls)


# ----------------------------------------------------------------- helpers


def assert_array_identical(expected: typing.Any, actual: typing.Any, path: str = "root") -> None:
    """Asserts `actual` is an ndarray bit-identical to `expected`.

    Numeric arrays compare dtype, shape and bytes; strings and object arrays
    compare dtype, shape and their element lists (with the elements' types).

    Args:
      expected: The array that was encoded (or a scalar, compared as a 0-d array).
      actual: The decoded array.
      path: Where in a nest the arrays sit, for the failure message.
    """
    expected = np.asarray(expected)
    assert type(actual) is np.ndarray, f"{path}: {type(actual)} is not an ndarray"
    assert actual.dtype == expected.dtype, f"{path}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{path}: shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind in "OSU":
        expected_list, actual_list = expected.ravel().tolist(), actual.ravel().tolist()
        assert actual_list == expected_list, f"{path}: {actual_list} != {expected_list}"
        assert [type(e) for e in actual_list] == [type(e) for e in expected_list], path
        if expected.dtype.kind != "O":
            assert actual.tobytes() == expected.tobytes(), path
    else:
        assert actual.tobytes() == expected.tobytes(), f"{path}: {actual!r} != {expected!r}"


def _is_registered(cls: type) -> bool:
    """Whether the codec decodes `cls`'s wire name into `cls` itself."""
    name = wire.NAMED_TYPES.wire_name(cls)
    return wire.NAMED_TYPES.namedtuple_class(name, tuple(cls._fields)) is cls


def assert_spec_identical(expected: typing.Any, actual: typing.Any, path: str = "root") -> None:
    """Asserts two array specs have the same class, name, shape, dtype and bounds.

    Args:
      expected: The encoded spec.
      actual: The decoded spec.
      path: Where in a nest the specs sit, for the failure message.
    """
    assert type(actual) is type(expected), f"{path}: {type(actual)} is not {type(expected)}"
    # TF-Agents' ArraySpec.__eq__ is asymmetric (a BoundedArraySpec equals an
    # ArraySpec of its shape), hence both directions and the type check above.
    assert actual == expected and expected == actual, f"{path}: {actual} != {expected}"
    assert actual.name == expected.name, f"{path}: name {actual.name!r} != {expected.name!r}"
    assert actual.shape == expected.shape and type(actual.shape) is tuple, path
    assert actual.dtype == expected.dtype, path
    if hasattr(expected, "minimum"):
        assert_array_identical(expected.minimum, actual.minimum, f"{path}.minimum")
        assert_array_identical(expected.maximum, actual.maximum, f"{path}.maximum")


def assert_nest_identical(expected: typing.Any, actual: typing.Any, path: str = "root") -> None:
    """Asserts a decoded nest has exactly the structure and leaves of the original.

    Container types must match exactly (list, tuple, dict, OrderedDict with its
    key order, the same named tuple class when that class is importable, else
    a named tuple of the same name and fields). Array leaves must be
    bit-identical, spec leaves identical, None stays None.

    Args:
      expected: The nest that was encoded.
      actual: The decoded nest.
      path: The position being compared, for the failure message.
    """
    if expected is None:
        assert actual is None, f"{path}: {actual!r} is not None"
    elif isinstance(expected, tuple) and hasattr(type(expected), "_fields"):
        cls = type(expected)
        if _is_registered(cls):
            assert type(actual) is cls, f"{path}: {type(actual)} is not {cls}"
        else:
            assert isinstance(actual, tuple), f"{path}: {type(actual)} is not a tuple"
            assert type(actual).__name__ == cls.__name__, path
        assert type(actual)._fields == cls._fields, f"{path}: fields {type(actual)._fields}"
        for name in cls._fields:
            assert_nest_identical(getattr(expected, name), getattr(actual, name), f"{path}.{name}")
    elif isinstance(expected, (list, tuple)):
        assert type(actual) is type(expected), f"{path}: {type(actual)} is not {type(expected)}"
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_nest_identical(e, a, f"{path}[{i}]")
    elif isinstance(expected, dict):
        assert type(actual) is type(expected), f"{path}: {type(actual)} is not {type(expected)}"
        if isinstance(expected, collections.OrderedDict):
            assert list(actual) == list(expected), f"{path}: key order {list(actual)}"
        else:
            assert sorted(actual) == sorted(expected), f"{path}: keys {sorted(actual)}"
        for key in expected:
            assert_nest_identical(expected[key], actual[key], f"{path}[{key!r}]")
    elif isinstance(expected, array_spec.ArraySpec):
        assert_spec_identical(expected, actual, path)
    else:
        assert_array_identical(expected, actual, path)


def nest_round_trip(value: typing.Any, copy: bool = False) -> typing.Any:
    """Encodes, serializes, parses and decodes a nest."""
    data = wire.nest_to_proto(value).SerializeToString()
    return wire.nest_from_proto(pb.Nest.FromString(data), copy=copy)


def array_round_trip(value: typing.Any, copy: bool = False) -> np.ndarray:
    """Encodes, serializes, parses and decodes an array."""
    data = wire.array_to_proto(value).SerializeToString()
    return wire.array_from_proto(pb.Tensor.FromString(data), copy=copy)


# ----------------------------------------------------------------- strategies

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)
small_shapes = hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3)


def _float_arrays(dtype: np.dtype, shape_strategy: st.SearchStrategy) -> st.SearchStrategy:
    """Floats with NaN, +-inf, -0.0 and subnormals, plus arbitrary bit patterns (NaN payloads)."""
    bits = hnp.arrays(_UINT_OF_SIZE[dtype.itemsize], shape_strategy).map(lambda a: a.view(dtype))
    if dtype == BFLOAT16:
        return bits
    values = hnp.arrays(dtype, shape_strategy, elements=hnp.from_dtype(
        dtype, allow_nan=True, allow_infinity=True, allow_subnormal=True))
    return st.one_of(values, bits)


def numeric_arrays(shape_strategy: st.SearchStrategy = shapes) -> st.SearchStrategy:
    """Arrays of every numeric dtype the wire supports."""
    return st.one_of([_float_arrays(dtype, shape_strategy) if dtype.kind in "fV"
                      else hnp.arrays(dtype, shape_strategy) for dtype in NUMERIC_DTYPES])


def _fixed_width_arrays(dtype: np.dtype, shape_strategy: st.SearchStrategy) -> st.SearchStrategy:
    if dtype.kind == "S":
        return hnp.arrays(dtype, shape_strategy)
    # Lone surrogates have no UTF-8 form: the codec refuses them (tested below).
    # numpy drops trailing NULs itself, so hypothesis refuses to generate them.
    text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                   max_size=dtype.itemsize // 4)
    return hnp.arrays(dtype, shape_strategy, elements=text)


def string_arrays(shape_strategy: st.SearchStrategy = shapes) -> st.SearchStrategy:
    """Fixed-width bytes ("S"), unicode ("U") and object arrays of bytes."""
    fixed = [_fixed_width_arrays(np.dtype(f"{kind}{n}"), shape_strategy)
             for kind in "SU" for n in (1, 2, 3, 5, 8)]
    objects = hnp.arrays(object, shape_strategy, elements=st.binary(max_size=12))
    return st.one_of(*fixed, objects)


def all_arrays(shape_strategy: st.SearchStrategy = shapes) -> st.SearchStrategy:
    """Arrays of every supported dtype."""
    return st.one_of(numeric_arrays(shape_strategy), string_arrays(shape_strategy))


keys = st.text(max_size=6)
nest_leaves = st.one_of(st.none(), st.just(()), all_arrays(small_shapes))


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    """One level of containers around `children`."""
    return st.one_of(
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(keys, children, max_size=3),
        # Arbitrary key order: an OrderedDict must keep it.
        st.lists(st.tuples(keys, children), max_size=3,
                 unique_by=lambda kv: kv[0]).map(collections.OrderedDict),
        st.builds(Point, children, children),
        st.builds(Triple, children, children, children),
        st.builds(Holder.Inner, children, children),
    )


nests = st.recursive(nest_leaves, _extend, max_leaves=8)
# Inside steps, which hold several nests: smaller, to keep the suite fast.
step_nests = st.recursive(nest_leaves, _extend, max_leaves=4)

spec_names = st.none() | st.text(min_size=1, max_size=10)
spec_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
SPEC_DTYPES = [*NUMERIC_DTYPES, np.dtype(object), np.dtype("S5"), np.dtype("U3")]
BOUNDED_DTYPES = [*INT_DTYPES, *FLOAT_DTYPES, BFLOAT16]


@st.composite
def unbounded_specs(draw: st.DrawFn) -> array_spec.ArraySpec:
    """TF-Agents ArraySpecs of any supported dtype."""
    return array_spec.ArraySpec(draw(spec_shapes), draw(st.sampled_from(SPEC_DTYPES)),
                                name=draw(spec_names))


@st.composite
def bounded_specs(draw: st.DrawFn) -> array_spec.BoundedArraySpec:
    """TF-Agents BoundedArraySpecs with scalar or per-element bounds."""
    dtype = draw(st.sampled_from(BOUNDED_DTYPES))
    shape = draw(spec_shapes)
    bounds = []
    for _ in range(2):
        bound_shape = draw(st.sampled_from([(), shape]))
        if dtype == BFLOAT16:
            values = draw(hnp.arrays(np.float32, bound_shape, elements=st.floats(
                -2.0**100, 2.0**100, width=32))).astype(BFLOAT16)
        elif dtype.kind == "f":
            values = draw(hnp.arrays(dtype, bound_shape, elements=hnp.from_dtype(
                dtype, allow_nan=False)))
        else:
            values = draw(hnp.arrays(dtype, bound_shape))
        bounds.append(values)
    minimum, maximum = np.minimum(*bounds), np.maximum(*bounds)
    return array_spec.BoundedArraySpec(shape, dtype, minimum=minimum, maximum=maximum,
                                       name=draw(spec_names))


any_specs = st.one_of(unbounded_specs(), bounded_specs())
spec_nests = st.recursive(any_specs, _extend, max_leaves=4)


@st.composite
def time_steps(draw: st.DrawFn) -> tfa_time_step.TimeStep:
    """TF-Agents TimeSteps, unbatched or batched, with nested observations."""
    batch = draw(st.sampled_from([(), (1,), (3,)]))
    return tfa_time_step.TimeStep(
        step_type=draw(hnp.arrays(np.int32, batch, elements=st.integers(0, 2))),
        reward=draw(st.one_of(_float_arrays(np.dtype("<f4"), st.just(batch)),
                              st.dictionaries(keys, numeric_arrays(st.just(batch)), max_size=2))),
        discount=draw(hnp.arrays(np.float32, batch, elements=st.floats(0, 1, width=32))),
        observation=draw(step_nests))


@st.composite
def policy_steps(draw: st.DrawFn) -> tfa_policy_step.PolicyStep:
    """TF-Agents PolicySteps, often with the `()` state and info of stateless policies."""
    return tfa_policy_step.PolicyStep(
        action=draw(step_nests),
        state=draw(st.one_of(st.just(()), step_nests)),
        info=draw(st.one_of(st.just(()), step_nests)))


# ----------------------------------------------------------------- arrays


@PROPERTY
@given(all_arrays())
def test_array_round_trip_is_bit_exact(array: np.ndarray) -> None:
    assert_nest_identical(array, array_round_trip(array))
    assert_nest_identical(array, array_round_trip(array, copy=True))


@PROPERTY
@given(numeric_arrays(), st.data())
def test_non_contiguous_and_big_endian_inputs(array: np.ndarray, data: st.DataObject) -> None:
    if array.ndim >= 2:
        variants = [array.T, array[::2], array[..., ::-1], np.swapaxes(array, 0, 1)[1:]]
    elif array.ndim == 1:
        variants = [array[::2], array[::-1], array[1::3]]
    else:
        variants = [array]
    if array.dtype.itemsize > 1 and array.dtype != BFLOAT16:  # bfloat16 has no byte order.
        variants += [v.astype(v.dtype.newbyteorder(">")) for v in variants]
    value = data.draw(st.sampled_from(variants))
    native = value.dtype.newbyteorder("=")
    decoded = array_round_trip(value)
    assert decoded.dtype == native and decoded.dtype.byteorder in "=|"
    assert_nest_identical(value.copy(order="C").astype(native), decoded)


@PROPERTY
@given(string_arrays(), st.data())
def test_non_contiguous_and_big_endian_strings(array: np.ndarray, data: st.DataObject) -> None:
    variants = [array.T, array.T[::-1]] if array.ndim else [array]
    if array.dtype.kind == "U":
        variants += [v.astype(v.dtype.newbyteorder(">")) for v in variants]
    value = data.draw(st.sampled_from(variants))
    decoded = array_round_trip(value)
    assert decoded.dtype.byteorder in "=|"
    assert_nest_identical(value.copy(order="C").astype(value.dtype.newbyteorder("=")),
                           decoded)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES + [BFLOAT16], ids=str)
def test_float_specials_are_bit_exact(dtype: np.dtype) -> None:
    values = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5], dtype=np.float32)
    array = values.astype(dtype)
    # A NaN with a payload and the sign bit set.
    array = np.concatenate([array, np.full(1, 0xFFFF_FFFF_FFFF_FFFF, np.uint64).view(
        np.uint8)[:dtype.itemsize].view(dtype)])
    decoded = array_round_trip(array)
    assert_nest_identical(array, decoded)
    assert np.signbit(decoded[4].astype(np.float32))


@pytest.mark.parametrize("dtype", [np.byte, np.short, np.intc, np.int_, np.longlong, np.ubyte,
                                   np.ushort, np.uintc, np.uint, np.ulonglong, np.half,
                                   np.single, np.double, np.bool_], ids=lambda d: d.__name__)
def test_platform_dtype_aliases(dtype: type) -> None:
    array = np.arange(4).astype(dtype)
    assert_nest_identical(array, array_round_trip(array))


def test_python_scalars_stay_python_scalars_in_nests() -> None:
    for value in (True, 3, -2.5, b"ab", "h\u00e9", -2**63, 2**63 - 1):
        assert_nest_identical(np.asarray(value), array_round_trip(value))  # as a Tensor: numpy's array
        back = wire.nest_from_proto(wire.nest_to_proto([value, {"k": (value,)}]))
        assert back == [value, {"k": (value,)}] and type(back[0]) is type(value)
    with pytest.raises(CodecError, match="64 bits"):
        wire.nest_to_proto([2**63])


def test_str_in_object_array_decodes_as_utf8_bytes() -> None:
    decoded = array_round_trip(np.array(["h\u00e9", b"x"], dtype=object))
    assert decoded.tolist() == ["h\u00e9".encode(), b"x"]


def test_bool_with_stray_bytes_is_normalized() -> None:
    array = np.array([0, 1, 2, 255], dtype=np.uint8).view(np.bool_)
    assert wire.array_to_proto(array).content == b"\x00\x01\x01\x01"
    assert array_round_trip(array).tolist() == [False, True, True, True]


def test_fixed_width_strings_keep_width_and_trailing_bytes() -> None:
    array = np.array([b"a", b"a\x00b", b""], dtype="S6")
    assert_nest_identical(array, array_round_trip(array))
    text = np.array(["\u00e9", "\U0001f600x", ""], dtype="U7")
    assert_nest_identical(text, array_round_trip(text))


@PROPERTY
@given(numeric_arrays())
def test_decoding_is_zero_copy_unless_copy(array: np.ndarray) -> None:
    msg = pb.Tensor.FromString(wire.array_to_proto(array).SerializeToString())
    view = wire.array_from_proto(msg)
    assert view.base is not None and not view.flags.owndata
    assert not view.flags.writeable
    owned = wire.array_from_proto(msg, copy=True)
    assert owned.flags.writeable and owned.flags.owndata
    assert_nest_identical(array, view)
    assert_nest_identical(array, owned)
    if owned.size:
        owned.reshape(-1).view(np.uint8)[0] ^= 0xFF
        assert_nest_identical(array, wire.array_from_proto(msg))


def test_nest_copy_flag_reaches_every_leaf() -> None:
    value = {"a": np.arange(3, dtype=np.float32), "b": [np.ones((2, 2), np.int8)]}
    msg = wire.nest_to_proto(value)
    views = wire.nest_from_proto(msg)
    copies = wire.nest_from_proto(msg, copy=True)
    assert not views["a"].flags.writeable and not views["b"][0].flags.writeable
    assert copies["a"].flags.writeable and copies["b"][0].flags.writeable


# ----------------------------------------------------------------- nests


@PROPERTY
@given(nests)
def test_nest_round_trip_keeps_container_types(value: typing.Any) -> None:
    assert_nest_identical(value, nest_round_trip(value))


def test_nest_containers_by_hand() -> None:
    Local = collections.namedtuple("Local", ["p", "q"])  # Not registered.
    value = collections.OrderedDict([
        ("z", [(), None, {}, []]),
        ("a", Point(x=np.float32(1), y=(np.int8(2),))),
        ("m", Local(p=collections.OrderedDict(), q=Holder.Inner(left=None, right=()))),
        ("", Triple(a=[], b={"k": ()}, c=np.zeros((0, 3), np.float16))),
    ])
    decoded = nest_round_trip(value)
    assert_nest_identical(value, decoded)
    assert type(decoded["a"]) is Point and type(decoded["m"].q) is Holder.Inner
    assert type(decoded["m"]) is not Local and type(decoded["m"])._fields == ("p", "q")
    # Made-up classes are cached: the same wire name gives the same class.
    assert type(nest_round_trip(value)["m"]) is type(decoded["m"])


def test_dicts_travel_in_their_own_key_order_and_come_back_in_it() -> None:
    plain = wire.nest_to_proto({"b": None, "a": None, "c": None})
    assert [e.key for e in plain.dict.entries] == ["b", "a", "c"] and not plain.dict.ordered
    assert list(wire.nest_from_proto(plain)) == ["b", "a", "c"]
    ordered = wire.nest_to_proto(collections.OrderedDict([("b", None), ("a", None)]))
    assert [e.key for e in ordered.dict.entries] == ["b", "a"] and ordered.dict.ordered


def test_named_tuple_wire_names() -> None:
    assert wire.nest_to_proto(Point(None, None)).named_tuple.type_name == f"{__name__}.Point"
    assert (wire.nest_to_proto(Holder.Inner(None, None)).named_tuple.type_name
            == f"{__name__}.Holder.Inner")
    step = light.TimeStep(None, None, None, None)
    assert (wire.nest_to_proto(step).named_tuple.type_name
            == "tf_agents.trajectories.time_step.TimeStep")


def test_light_step_tuples_decode_as_tf_agents_when_imported() -> None:
    value = light.PolicyStep(action=np.int64(1), state=(), info=())
    decoded = nest_round_trip(value)
    assert type(decoded) is tfa_policy_step.PolicyStep
    assert_nest_identical(tfa_policy_step.PolicyStep(np.int64(1), (), ()), decoded)


def test_leaf_hook_sees_leaves_only() -> None:
    seen = []

    def hook(leaf: typing.Any) -> typing.Any:
        seen.append(leaf)
        return np.asarray(leaf, dtype=np.float32) if isinstance(leaf, float) else leaf

    value = {"a": [1.5, (None, 2.5)], "b": Point(x=np.int8(1), y=())}
    decoded = wire.nest_from_proto(wire.nest_to_proto(value, leaf=hook))
    assert sorted(map(repr, seen)) == sorted(map(repr, [1.5, 2.5, np.int8(1)]))
    assert decoded["a"][0].dtype == np.float32 and decoded["a"][1][0] is None


# ----------------------------------------------------------------- specs


@PROPERTY
@given(any_specs)
def test_spec_round_trip(spec: array_spec.ArraySpec) -> None:
    msg = pb.ArraySpec.FromString(wire.spec_to_proto(spec).SerializeToString())
    assert msg.HasField("bounds") == isinstance(spec, array_spec.BoundedArraySpec)
    assert_nest_identical(spec, wire.spec_from_proto(msg))


@PROPERTY
@given(spec_nests)
def test_spec_nest_round_trip(value: typing.Any) -> None:
    assert_nest_identical(value, nest_round_trip(value))


def test_spec_edge_cases() -> None:
    # An empty name is how the wire says "no name".
    assert wire.spec_from_proto(wire.spec_to_proto(array_spec.ArraySpec((), np.int32, ""))).name is None
    # TF-Agents accepts any broadcastable bound; the wire carries scalar or full shape.
    spec = array_spec.BoundedArraySpec((2, 3), np.int64, minimum=[[0, 1, 2]], maximum=9)
    msg = wire.spec_to_proto(spec)
    assert list(msg.bounds.minimum.shape) == [2, 3] and list(msg.bounds.maximum.shape) == []
    decoded = wire.spec_from_proto(msg)
    assert decoded == spec and spec == decoded
    assert decoded.minimum.tolist() == [[0, 1, 2], [0, 1, 2]]
    # Infinite float bounds: TF-Agents keeps the dtype's finite extremes.
    spec = array_spec.BoundedArraySpec((2,), np.float32, minimum=-np.inf, maximum=np.inf)
    assert_nest_identical(spec, wire.spec_from_proto(wire.spec_to_proto(spec)))


@pytest.mark.parametrize("spec", [
    light.ArraySpec((2, 0), np.uint16, "a"),
    light.BoundedArraySpec((3,), np.float32, [-1, 0, -np.inf], 1.0, "b"),
    light.BoundedArraySpec((), BFLOAT16, None, None, None),
], ids=repr)
def test_light_specs_decode_as_tf_agents_equivalents(spec: light.ArraySpec) -> None:
    decoded = wire.spec_from_proto(wire.spec_to_proto(spec))
    cls = array_spec.BoundedArraySpec if hasattr(spec, "minimum") else array_spec.ArraySpec
    assert type(decoded) is cls and repr(decoded) == repr(spec)


@pytest.mark.parametrize("args", [
    ((3,), np.float32, None, None),
    ((2,), np.float32, -np.inf, [1.0, np.inf]),
    ((2, 2), np.int8, [0, 1], 5),
    ((), np.uint64, 0, None),
    ((0, 2), np.float16, None, 1.0),
    ((2,), np.float64, [-np.inf, 0.0], np.inf),
], ids=repr)
def test_light_bounded_spec_matches_tf_agents(args: tuple) -> None:
    ours, theirs = light.BoundedArraySpec(*args, "s"), array_spec.BoundedArraySpec(*args, "s")
    assert repr(ours) == repr(theirs)
    assert_nest_identical(theirs.minimum, ours.minimum)
    assert_nest_identical(theirs.maximum, ours.maximum)
    assert ours.check_array(np.zeros(args[0], args[1])) == theirs.check_array(np.zeros(args[0], args[1]))


@pytest.mark.parametrize("args", [
    ((2,), np.int8, [0, 0, 0], 1),   # Not broadcastable.
    ((2,), np.int8, 3, 1),           # minimum > maximum.
    ((), np.int8, -1, 300),          # Outside the dtype's range.
    ((), np.uint8, -1, 3),
], ids=repr)
def test_light_bounded_spec_rejects_what_tf_agents_rejects(args: tuple) -> None:
    with pytest.raises(ValueError):
        array_spec.BoundedArraySpec(*args)
    with pytest.raises(ValueError):
        light.BoundedArraySpec(*args)


def test_light_array_spec_check_array_accepts_numbers_like_tf_agents() -> None:
    for value in (1.5, 3, True, np.float32(1)):
        for dtype in (np.float64, np.int64, np.bool_, np.float32):
            assert (light.ArraySpec((), dtype).check_array(value)
                    == array_spec.ArraySpec((), dtype).check_array(value))


# ----------------------------------------------------------------- steps


@PROPERTY
@given(time_steps())
def test_time_step_round_trip(value: tfa_time_step.TimeStep) -> None:
    msg = pb.TimeStep.FromString(wire.time_step_to_proto(value).SerializeToString())
    decoded = wire.time_step_from_proto(msg)
    assert type(decoded) is tfa_time_step.TimeStep
    assert_nest_identical(value, decoded)


@PROPERTY
@given(policy_steps())
def test_policy_step_round_trip(value: tfa_policy_step.PolicyStep) -> None:
    msg = pb.PolicyStep.FromString(wire.policy_step_to_proto(value).SerializeToString())
    decoded = wire.policy_step_from_proto(msg, copy=True)
    assert type(decoded) is tfa_policy_step.PolicyStep
    assert_nest_identical(value, decoded)


def test_stateless_policy_step_keeps_empty_tuples() -> None:
    value = tfa_policy_step.PolicyStep(action=np.array([1, 0], np.int64))
    msg = wire.policy_step_to_proto(value)
    assert msg.state.WhichOneof("value") == "tuple" and not msg.state.tuple.values
    decoded = wire.policy_step_from_proto(msg)
    assert decoded.state == () and type(decoded.state) is tuple and decoded.info == ()
    # Unset state / info (e.g. from another language) also decode as ().
    bare = pb.PolicyStep(action=msg.action)
    assert wire.policy_step_from_proto(bare)[1:] == ((), ())


OBSERVATION_SPEC = {
    "position": array_spec.BoundedArraySpec((4,), np.float32, -4.8, 4.8, "position"),
    "camera": array_spec.BoundedArraySpec((2, 3, 3), np.uint8, 0, 255, "camera"),
    "goal": array_spec.ArraySpec((), np.int32, "goal"),
    "text": array_spec.ArraySpec((), np.object_, "text"),
}
ACTION_SPEC = array_spec.BoundedArraySpec((), np.int64, 0, 1, "action")


def _policy_specs(collect: bool, state: typing.Any, info: typing.Any) -> light.PolicySpecs:
    time_step_spec = tfa_time_step.time_step_spec(OBSERVATION_SPEC)
    collect_data_spec = None
    if collect:
        collect_data_spec = tfa_trajectory.Trajectory(
            step_type=time_step_spec.step_type, observation=time_step_spec.observation,
            action=ACTION_SPEC, policy_info=info, next_step_type=time_step_spec.step_type,
            reward=time_step_spec.reward, discount=time_step_spec.discount)
    return light.PolicySpecs(time_step_spec=time_step_spec, action_spec=ACTION_SPEC,
                             policy_state_spec=state, info_spec=info,
                             collect_data_spec=collect_data_spec)


@pytest.mark.parametrize("collect", [False, True], ids=["no_collect_spec", "collect_spec"])
@pytest.mark.parametrize("stateful", [False, True], ids=["stateless", "stateful"])
def test_policy_specs_round_trip(collect: bool, stateful: bool) -> None:
    state = [array_spec.ArraySpec((8,), np.float32, "h")] if stateful else ()
    info = {"log_probability": array_spec.ArraySpec((), np.float32)} if stateful else ()
    value = _policy_specs(collect, state, info)
    assert isinstance(value.time_step_spec.discount, array_spec.BoundedArraySpec)
    msg = wire.policy_specs_to_proto(value)
    assert msg.HasField("collect_data_spec") == collect
    decoded = wire.policy_specs_from_proto(pb.PolicySpecs.FromString(msg.SerializeToString()))
    assert type(decoded) is light.PolicySpecs
    assert type(decoded.time_step_spec) is tfa_time_step.TimeStep
    if collect:
        assert type(decoded.collect_data_spec) is tfa_trajectory.Trajectory
    else:
        assert decoded.collect_data_spec is None
    for name in light.PolicySpecs._fields:
        assert_nest_identical(getattr(value, name), getattr(decoded, name), name)


def test_policy_specs_defaults_for_unset_optional_fields() -> None:
    msg = wire.policy_specs_to_proto(_policy_specs(False, (), ()))
    msg.ClearField("policy_state_spec")
    msg.ClearField("info_spec")
    decoded = wire.policy_specs_from_proto(msg)
    assert decoded.policy_state_spec == () and decoded.info_spec == ()
    assert decoded.collect_data_spec is None


@PROPERTY
@given(st.dictionaries(st.text(min_size=1, max_size=5), any_specs, min_size=1, max_size=3))
def test_time_step_spec_round_trip(observation_spec: dict) -> None:
    value = tfa_time_step.time_step_spec(observation_spec)
    decoded = wire.time_step_spec_from_proto(pb.TimeStepSpec.FromString(
        wire.time_step_spec_to_proto(value).SerializeToString()))
    assert type(decoded) is tfa_time_step.TimeStep
    assert_nest_identical(value, decoded)


def _deep(depth: int, leaf: typing.Any, kind: str = "dict") -> typing.Any:
    value = leaf
    for _ in range(depth):
        value = {"k": value} if kind == "dict" else [value]
    return value


def test_deepest_allowed_nests_parse_in_every_message() -> None:
    # Protobuf parsers refuse nesting beyond 100 messages: MAX_NEST_DEPTH must
    # keep the deepest nest parseable in the deepest place it can appear.
    depth = wire.MAX_NEST_DEPTH
    spec_leaf = array_spec.BoundedArraySpec((2,), np.float32, 0.0, 1.0, "x")
    specs_msg = service_pb.GetSpecsResponse()
    specs_msg.specs.CopyFrom(wire.policy_specs_to_proto(_policy_specs(True, (), ())))
    specs_msg.specs.time_step_spec.observation.CopyFrom(wire.nest_to_proto(_deep(depth, spec_leaf)))
    specs_msg.specs.collect_data_spec.named_tuple.fields[1].value.CopyFrom(
        wire.nest_to_proto(_deep(depth - 1, spec_leaf)))
    parsed = wire.parse_message(service_pb.GetSpecsResponse, specs_msg.SerializeToString())
    assert_nest_identical(_deep(depth, spec_leaf),
                          wire.policy_specs_from_proto(parsed.specs).time_step_spec.observation)

    leaf = np.zeros(2, np.float32)
    request = service_pb.ActionRequest()
    request.time_step.CopyFrom(wire.time_step_to_proto(tfa_time_step.TimeStep(
        np.int32(0), np.float32(0), np.float32(1), _deep(depth - 1, leaf))))
    request.policy_state.CopyFrom(wire.nest_to_proto(_deep(depth, leaf)))
    parsed = wire.parse_message(service_pb.ActionRequest, request.SerializeToString())
    assert_nest_identical(_deep(depth - 1, leaf),
                          wire.time_step_from_proto(parsed.time_step).observation)
    with pytest.raises(CodecError, match="deeper than"):
        wire.time_step_to_proto(light.TimeStep(0, 0.0, 1.0, _deep(depth, leaf)))


# ----------------------------------------------------------------- malformed input


def test_codec_error_is_a_value_error() -> None:
    assert issubclass(CodecError, ValueError)


def test_content_length_must_match_dtype_and_shape() -> None:
    msg = pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[3], content=b"\x00" * 8)
    with pytest.raises(CodecError,
                       match=r"content has 8 bytes but shape \[3\] of DTYPE_FLOAT32 needs 3 x 4 = 12"):
        wire.array_from_proto(msg)
    with pytest.raises(CodecError, match="content has 1 bytes"):
        wire.array_from_proto(pb.Tensor(dtype=pb.DTYPE_INT64, content=b"\x00"))


@pytest.mark.parametrize("enum", [99, -1, 2**31 - 1])
def test_unknown_dtype_enum(enum: int) -> None:
    with pytest.raises(CodecError, match=f"unknown dtype enum {enum}"):
        wire.array_from_proto(pb.Tensor(dtype=enum, shape=[1], content=b"\x00"))
    with pytest.raises(CodecError, match=f"unknown dtype enum {enum}"):
        wire.spec_from_proto(pb.ArraySpec(dtype=enum))


def test_unspecified_dtype() -> None:
    with pytest.raises(CodecError, match="dtype is not set"):
        wire.array_from_proto(pb.Tensor(shape=[1], content=b"\x00"))
    with pytest.raises(CodecError, match=r"spec 'x': dtype is not set"):
        wire.nest_from_proto(pb.Nest(spec=pb.ArraySpec(name="x")))


def test_unknown_string_kind() -> None:
    with pytest.raises(CodecError, match="unknown string_kind 7"):
        wire.array_from_proto(pb.Tensor(dtype=pb.DTYPE_STRING, string_kind=7))


def test_negative_dimension() -> None:
    with pytest.raises(CodecError, match=r"shape \[2, -1\] has a negative dimension"):
        wire.array_from_proto(pb.Tensor(dtype=pb.DTYPE_UINT8, shape=[2, -1]))
    with pytest.raises(CodecError, match="negative dimension"):
        wire.spec_from_proto(pb.ArraySpec(dtype=pb.DTYPE_UINT8, shape=[-3]))
    with pytest.raises(CodecError, match="negative dimension"):
        wire.spec_to_proto(light.ArraySpec((-1,), np.float32))


def test_rank_above_numpy_limit() -> None:
    with pytest.raises(CodecError, match="rank 33 exceeds the maximum of 32"):
        wire.array_from_proto(pb.Tensor(dtype=pb.DTYPE_UINT8, shape=[1] * 33, content=b"\x01"))


def test_unknown_dimension_on_encode() -> None:
    tensor_spec_like = types.SimpleNamespace(shape=(None, 3), dtype=np.float32, name="obs")
    with pytest.raises(CodecError, match=r"spec 'obs': shape \[None, 3\] has an unknown dimension"):
        wire.spec_to_proto(tensor_spec_like)


@pytest.mark.parametrize("dtype", [pb.DTYPE_FLOAT64, pb.DTYPE_BOOL])
def test_huge_shape_fails_fast_without_allocating(dtype: int) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(CodecError, match=r"content has 8 bytes but shape \[1000000, 1000000\]"):
            wire.array_from_proto(pb.Tensor(dtype=dtype, shape=[1000000, 1000000], content=b"\x00" * 8))
        with pytest.raises(CodecError,
                           match=r"1 elements but shape \[1000000, 1000000\] needs 1000000000000"):
            wire.array_from_proto(pb.Tensor(dtype=pb.DTYPE_STRING, shape=[10**6, 10**6], string_val=[b"x"]))
        with pytest.raises(CodecError, match="too large for any array"):
            wire.array_from_proto(pb.Tensor(dtype=dtype, shape=[0, 2**62, 2**62]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 1.0
    assert peak < 1 << 20


def test_zero_sized_arrays_with_huge_dimensions_decode() -> None:
    decoded = wire.array_from_proto(pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[0, 10**15]))
    assert decoded.shape == (0, 10**15) and decoded.size == 0


def test_fixed_width_strings_cannot_claim_huge_widths() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(CodecError, match="string_itemsize 4000000000 exceeds"):
            wire.array_from_proto(pb.Tensor(
                dtype=pb.DTYPE_STRING, string_kind=pb.STRING_KIND_UNICODE,
                string_itemsize=4_000_000_000, shape=[1], string_val=[b"a"]))
        with pytest.raises(CodecError, match="exceeds 1073741824 bytes"):
            wire.array_from_proto(pb.Tensor(
                dtype=pb.DTYPE_STRING, string_kind=pb.STRING_KIND_BYTES,
                string_itemsize=2**29, shape=[3], string_val=[b"a"] * 3))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_a_tiny_tensor_cannot_declare_a_huge_fixed_width() -> None:
    """Beyond FIXED_STRING_SLACK bytes, the width must be within MAX_STRING_PADDING x what the elements carry."""
    tracemalloc.start()
    try:
        for kind in (pb.STRING_KIND_UNICODE, pb.STRING_KIND_BYTES):
            with pytest.raises(CodecError, match="more than 16 times the 3 bytes they take in the message"):
                wire.array_from_proto(pb.Tensor(dtype=pb.DTYPE_STRING, string_kind=kind, string_itemsize=2**24,
                                                shape=[1], string_val=[b"x"]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_padded_fixed_width_strings_round_trip_up_to_the_slack_and_dense_ones_beyond() -> None:
    padded = np.array(["a", ""] * 100, dtype="U1000")  # 800 kB for 200 short elements
    assert_nest_identical(padded, array_round_trip(padded))
    dense = np.array([f"{i:08d}" for i in range(100_000)])  # U8, 3.2 MB, 1 MB of text
    assert_nest_identical(dense, array_round_trip(dense))
    mostly_padding = np.array(["a"] * 1000, dtype="U1000")  # 4 MB for 3 kB on the wire
    with pytest.raises(CodecError, match="use the width of the longest element"):
        wire.array_to_proto(mostly_padding)


def test_fixed_width_string_longer_than_its_width() -> None:
    with pytest.raises(CodecError, match="longer than its string_itemsize 2"):
        wire.array_from_proto(pb.Tensor(dtype=pb.DTYPE_STRING, string_kind=pb.STRING_KIND_BYTES,
                                         string_itemsize=2, shape=[1], string_val=[b"abc"]))


def test_invalid_utf8_in_unicode_tensor() -> None:
    with pytest.raises(CodecError, match="invalid UTF-8"):
        wire.array_from_proto(pb.Tensor(dtype=pb.DTYPE_STRING, string_kind=pb.STRING_KIND_UNICODE,
                                         string_itemsize=2, shape=[1], string_val=[b"\xff"]))


def test_unencodable_text() -> None:
    with pytest.raises(CodecError, match="cannot be sent as UTF-8"):
        wire.array_to_proto(np.array(["\ud800"]))
    with pytest.raises(CodecError, match="mapping key at the root: '\\\\ud800' cannot be sent"):
        wire.nest_to_proto({"\ud800": None})
    with pytest.raises(CodecError, match="spec name"):
        wire.spec_to_proto(light.ArraySpec((), np.int8, "\udfff"))


def _deep_message(depth: int) -> pb.Nest:
    root = pb.Nest()
    node = root
    for _ in range(depth):
        node = node.list.values.add()
    node.none.SetInParent()
    return root


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_encoding_a_nest_10000_deep(kind: str) -> None:
    value = _deep(10_000, np.zeros(1), kind)
    with pytest.raises(CodecError, match=f"nest is deeper than {wire.MAX_NEST_DEPTH} levels"):
        wire.nest_to_proto(value)
    with pytest.raises(CodecError, match="deeper than"):
        wire.policy_step_to_proto(light.PolicyStep(value, (), ()))


def test_encoding_a_self_referencing_nest() -> None:
    value: list = []
    value.append(value)
    with pytest.raises(CodecError, match="deeper than"):
        wire.nest_to_proto(value)


def test_decoding_a_nest_10000_deep_built_in_memory() -> None:
    msg = _deep_message(10_000)
    with pytest.raises(CodecError, match=f"nest is deeper than {wire.MAX_NEST_DEPTH} levels at "
                                         r"\[0\]\[0\]"):
        wire.nest_from_proto(msg)
    # Built in place: copying a message this deep goes through the (refusing) parser.
    step = wire.time_step_to_proto(light.TimeStep(np.int32(0), np.float32(0), np.float32(1), None))
    node = step.observation
    for _ in range(10_000):
        node = node.list.values.add()
    node.none.SetInParent()
    with pytest.raises(CodecError, match=r"deeper than .* at time_step.observation\[0\]"):
        wire.time_step_from_proto(step)


def test_parsing_a_nest_10000_deep_from_bytes() -> None:
    # The codec never sees it: protobuf refuses messages nested more than 100
    # deep with DecodeError, which parse_message turns into a CodecError.
    data = _deep_message(10_000).SerializeToString()
    with pytest.raises(pb_message.DecodeError):
        pb.Nest.FromString(data)
    with pytest.raises(CodecError, match="cannot parse .* as tfa_policy_grpc.v1.Nest"):
        wire.parse_message(pb.Nest, data)
    with pytest.raises(CodecError, match="cannot parse"):
        wire.parse_message(pb.Tensor, b"\xff\xff")


def test_unset_nest_value() -> None:
    with pytest.raises(CodecError, match="nest value is not set at the root"):
        wire.nest_from_proto(pb.Nest())
    msg = pb.Nest()
    msg.tuple.values.add().dict.entries.add(key="obs")
    with pytest.raises(CodecError, match=r"nest value is not set at \[0\]\['obs'\]"):
        wire.nest_from_proto(msg)


def test_duplicate_mapping_keys() -> None:
    msg = pb.Nest()
    for _ in range(2):
        msg.dict.entries.add(key="a").value.none.SetInParent()
    with pytest.raises(CodecError, match="duplicate key 'a' at the root"):
        wire.nest_from_proto(msg)


def test_bool_bytes_other_than_0_and_1() -> None:
    with pytest.raises(CodecError, match="bool tensor holds bytes other than 0 and 1"):
        wire.array_from_proto(pb.Tensor(dtype=pb.DTYPE_BOOL, shape=[2], content=b"\x01\x02"))


def test_string_element_count_mismatch() -> None:
    msg = pb.Tensor(dtype=pb.DTYPE_STRING, shape=[3], string_val=[b"a", b"b"])
    with pytest.raises(CodecError, match=r"string tensor has 2 elements but shape \[3\] needs 3"):
        wire.array_from_proto(msg)


def test_elements_in_the_wrong_field() -> None:
    with pytest.raises(CodecError, match="string tensor must carry its elements in string_val"):
        wire.array_from_proto(pb.Tensor(dtype=pb.DTYPE_STRING, content=b"x", string_val=[b"x"]))
    with pytest.raises(CodecError, match="DTYPE_UINT8 tensor must carry its elements in content"):
        wire.array_from_proto(pb.Tensor(dtype=pb.DTYPE_UINT8, content=b"x", string_val=[b"x"]))


def test_non_string_mapping_keys() -> None:
    with pytest.raises(CodecError, match=r"mapping keys must be strings, got 1 at \['obs'\]"):
        wire.nest_to_proto({"obs": {1: np.zeros(2)}})
    with pytest.raises(CodecError, match="mapping keys must be strings, got None"):
        wire.nest_to_proto(collections.OrderedDict([(None, 1)]))


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128, "datetime64[s]", np.longdouble,
                                   [("a", np.int8)]], ids=str)
def test_unsupported_dtype_on_encode(dtype: typing.Any) -> None:
    array = np.zeros(2, dtype=dtype)
    with pytest.raises(CodecError, match="cannot be sent: supported are"):
        wire.array_to_proto(array)
    with pytest.raises(CodecError, match=r"\['action'\]\[1\]: dtype .* cannot be sent"):
        wire.nest_to_proto({"action": [np.zeros(1), array]})
    with pytest.raises(CodecError, match="cannot be sent"):
        wire.spec_to_proto(light.ArraySpec((), dtype))


def test_unsupported_leaves_on_encode() -> None:
    with pytest.raises(CodecError, match=r"cannot encode object at \['a'\]"):
        wire.nest_to_proto({"a": object()})
    with pytest.raises(CodecError, match="hold bytes or str, got an element of type int"):
        wire.array_to_proto(np.array([b"a", 3], dtype=object))
    with pytest.raises(CodecError, match="not a dtype"):
        wire.dtype_to_proto("no-such-dtype")


def test_invalid_named_tuples() -> None:
    for type_name, fields, pattern in [
            ("m.Bad-Name", ["a"], "invalid type or field names"),
            ("m.T", ["_private"], "invalid type or field names"),
            ("m.T", ["class"], "keyword"),
            ("m.T", ["a", "a"], "[Dd]uplicate"),
            ("", [], "invalid type or field names")]:
        msg = pb.Nest()
        msg.named_tuple.type_name = type_name
        for field in fields:
            msg.named_tuple.fields.add(key=field).value.none.SetInParent()
        with pytest.raises(CodecError, match=pattern):
            wire.nest_from_proto(msg)


@pytest.mark.parametrize("type_name", ["builtins.tuple", "builtins.object", "collections.OrderedDict",
                                       "policy_client.wire.MAX_NEST_DEPTH"])
def test_named_tuple_type_names_of_other_things(type_name: str) -> None:
    msg = pb.Nest()
    msg.named_tuple.type_name = type_name
    decoded = wire.nest_from_proto(msg)
    assert decoded == () and type(decoded) is not tuple and type(decoded)._fields == ()


def test_named_tuple_lookup_never_triggers_lazy_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    lazy = types.ModuleType("lazy_module_for_codec_test")

    def module_getattr(name: str) -> typing.Any:
        raise AssertionError(f"the codec asked the lazy module for {name!r}")

    lazy.__getattr__ = module_getattr  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, lazy.__name__, lazy)
    msg = pb.Nest()
    msg.named_tuple.type_name = f"{lazy.__name__}.submodule.Thing"
    msg.named_tuple.fields.add(key="a").value.none.SetInParent()
    decoded = wire.nest_from_proto(msg)
    assert type(decoded).__name__ == "Thing" and decoded.a is None


def test_unregistered_named_tuples_come_back_as_themselves_when_their_module_is_imported() -> None:
    decoded = nest_round_trip(Unregistered(u=np.int8(1), v=None))
    assert type(decoded) is Unregistered and decoded.u == 1 and decoded.v is None


def test_other_named_tuples_come_back_as_made_up_classes() -> None:
    msg = pb.Nest()
    msg.named_tuple.type_name = "module_not_imported_here.Unregistered"
    for key in ("u", "v"):
        msg.named_tuple.fields.add(key=key).value.none.SetInParent()
    decoded = wire.nest_from_proto(msg)
    assert type(decoded) is not Unregistered and type(decoded).__name__ == "Unregistered"
    assert decoded._fields == ("u", "v") and decoded.u is None
    msg.named_tuple.type_name = f"{__name__}.Unregistered"  # the class is here, but its fields differ
    msg.named_tuple.fields[1].key = "w"
    assert type(wire.nest_from_proto(msg)) is not Unregistered


def test_registered_class_replaces_the_one_decoded_into() -> None:
    named_types = wire.NamedTupleTypes()
    Mine = collections.namedtuple("Mine", ["action", "state", "info"])
    named_types.register_namedtuple(Mine, "tf_agents.trajectories.policy_step.PolicyStep")
    decoded = wire.nest_from_proto(wire.nest_to_proto(light.PolicyStep(None, (), ())), named_types=named_types)
    assert type(decoded) is Mine
    with pytest.raises(TypeError, match="not a named tuple"):
        named_types.register_namedtuple(tuple)


def test_named_tuple_fields_must_match_a_registered_class() -> None:
    msg = wire.nest_to_proto(Point(x=None, y=None))
    msg.named_tuple.fields[1].key = "z"  # Not Point's fields: a made-up class instead.
    decoded = wire.nest_from_proto(msg)
    assert type(decoded) is not Point and type(decoded)._fields == ("x", "z")


@pytest.mark.parametrize("classes", ["tf_agents", "light"])
def test_invalid_bounds(classes: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if classes == "light":  # As decoded where tf_agents is not imported.
        monkeypatch.setattr(wire.NAMED_TYPES, "array_spec", light.ArraySpec)
        monkeypatch.setattr(wire.NAMED_TYPES, "bounded_array_spec", light.BoundedArraySpec)
    spec = wire.spec_to_proto(array_spec.BoundedArraySpec((2,), np.int8, 0, 5, "b"))
    bad = pb.ArraySpec()
    bad.CopyFrom(spec)
    bad.bounds.minimum.CopyFrom(wire.array_to_proto(np.int8(9)))
    with pytest.raises(CodecError, match="spec 'b': invalid bounds"):
        wire.spec_from_proto(bad)
    bad.bounds.minimum.CopyFrom(wire.array_to_proto(np.zeros(3, np.int8)))
    with pytest.raises(CodecError, match="spec 'b': invalid bounds"):
        wire.spec_from_proto(bad)
    bad.bounds.minimum.CopyFrom(wire.array_to_proto(np.float64(0)))
    with pytest.raises(CodecError, match="spec 'b': bounds.minimum has dtype float64, the spec int8"):
        wire.spec_from_proto(bad)
    bad.bounds.ClearField("minimum")
    with pytest.raises(CodecError, match="spec 'b': bounds.minimum is not set"):
        wire.spec_from_proto(bad)
    bad.bounds.minimum.dtype = pb.DTYPE_INT8
    with pytest.raises(CodecError, match=r"spec 'b': bounds.minimum: tensor content has 0 bytes"):
        wire.spec_from_proto(bad)


def test_missing_step_fields() -> None:
    step = wire.time_step_to_proto(light.TimeStep(np.int32(0), np.float32(0), np.float32(1), None))
    for name in ("step_type", "reward", "discount", "observation"):
        broken = pb.TimeStep()
        broken.CopyFrom(step)
        broken.ClearField(name)
        with pytest.raises(CodecError, match=f"time_step.{name} is not set"):
            wire.time_step_from_proto(broken)
    with pytest.raises(CodecError, match="time_step.discount: bool tensor"):
        wire.time_step_from_proto(pb.TimeStep(
            step_type=step.step_type, reward=step.reward, observation=step.observation,
            discount=pb.Tensor(dtype=pb.DTYPE_BOOL, content=b"\x07")))
    with pytest.raises(CodecError, match="policy_step.action is not set"):
        wire.policy_step_from_proto(pb.PolicyStep())
    specs = wire.policy_specs_to_proto(_policy_specs(False, (), ()))
    for name in ("time_step_spec", "action_spec"):
        broken = pb.PolicySpecs()
        broken.CopyFrom(specs)
        broken.ClearField(name)
        with pytest.raises(CodecError, match=f"policy_specs.{name} is not set"):
            wire.policy_specs_from_proto(broken)
    specs.time_step_spec.ClearField("observation")
    with pytest.raises(CodecError, match="time_step_spec.observation is not set"):
        wire.policy_specs_from_proto(specs)
    specs.time_step_spec.observation.tuple.SetInParent()
    specs.time_step_spec.ClearField("discount")  # TF-Agents' default empty spec: ()
    assert wire.policy_specs_from_proto(specs).time_step_spec.discount == ()
