"""Per-policy plans give exactly what the generic codec gives, and refuse whatever does not fit."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tree
from tf_agents.specs import array_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

from policy_client.wire import nests, steps, tf_agents_types
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.nest_plan import NestPlan
from policy_client.wire.step_plan import AnswerPlan, RequestPlan

tf_agents_types.register()

Pair = collections.namedtuple("Pair", ["left", "right"])
A = array_spec.ArraySpec
SPECS = {
    "leaf": A((4,), np.float32),
    "dict": {"pos": A((2,), np.float64), "id": A((), np.int64), "img": A((3, 3, 1), np.uint8)},
    "nested": {"b": [A((), np.bool_), (A((2,), np.int8),)], "a": Pair(A((), np.float16), {"z": A((1,), np.uint32)})},
    "ordered": collections.OrderedDict([("z", A((), np.int32)), ("a", A((2,), np.float32))]),
    "empty": (),
}


def sample(spec, rng, outer=()):
    return tree.map_structure(
        lambda s: (rng.integers(0, 2, outer + s.shape).astype(s.dtype) if s.dtype.kind in "biu"
                   else rng.normal(size=outer + s.shape).astype(s.dtype)), spec)


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("outer", [(), (3,)], ids=["unbatched", "batched"])
def test_nest_plan_matches_the_generic_codec(name, outer):
    spec, rng = SPECS[name], np.random.default_rng(0)
    plan = NestPlan(spec)
    value = sample(spec, rng, outer)
    leaves = plan.leaves(value, outer)
    assert leaves is not None and all(a is b for a, b in zip(leaves, tree.flatten(value)))
    msg = nests.nest_to_proto(value)
    planned = type(msg)()
    plan.write(planned, leaves)
    assert planned.SerializeToString(deterministic=True) == msg.SerializeToString(deterministic=True)
    read = plan.read(msg, outer)
    assert read is not None and all(np.array_equal(a, b) for a, b in zip(read, leaves))
    rebuilt = plan.unflatten(read)
    tree.assert_same_structure(rebuilt, value, check_types=True)


@pytest.mark.parametrize("change", ["dtype", "shape", "python-number", "extra-key", "list-for-tuple", "missing"])
def test_values_that_do_not_fit_take_the_generic_path(change):
    spec = SPECS["nested"]
    plan = NestPlan(spec)
    value = sample(spec, np.random.default_rng(1))
    if change == "dtype":
        value["b"][0] = value["b"][0].astype(np.int8)
    elif change == "shape":
        value["a"] = value["a"]._replace(right={"z": np.zeros((2,), np.uint32)})
    elif change == "python-number":
        value["a"] = value["a"]._replace(left=1.5)
    elif change == "extra-key":
        value["c"] = np.zeros(1)
    elif change == "list-for-tuple":
        value["b"][1] = list(value["b"][1])
    else:
        del value["a"]
    assert plan.leaves(value) is None
    msg = nests.nest_to_proto(value)
    assert plan.read(msg) is None


def test_a_message_that_does_not_fit_reads_as_none():
    plan = NestPlan(SPECS["dict"])
    value = sample(SPECS["dict"], np.random.default_rng(2))
    msg = nests.nest_to_proto(value)
    msg.dict.entries[0].value.tensor.content = b"\0"  # wrong byte count
    assert plan.read(msg) is None
    msg = nests.nest_to_proto({**value, "pos": np.zeros(2, np.float32)})  # other dtype
    assert plan.read(msg) is None
    bools = NestPlan(A((2,), np.bool_))
    bad = nests.nest_to_proto(np.array([True, False]))
    bad.tensor.content = b"\x02\x00"
    assert bools.read(bad) is None


def test_string_specs_are_left_to_the_generic_codec():
    plan = NestPlan({"s": A((), object)})
    assert not plan.numeric and plan.leaves({"s": np.array(b"x", dtype=object)}) is None


OBS = {"pos": A((2,), np.float32), "flag": A((), np.bool_)}
TIME_STEP_SPEC = ts.time_step_spec(OBS)
STATE_SPEC = {"h": A((3,), np.float32)}


@pytest.mark.parametrize("stateful", [True, False])
@pytest.mark.parametrize("outer", [(), (2,)], ids=["unbatched", "batched"])
def test_request_plan_matches_the_generic_codec(stateful, outer):
    rng = np.random.default_rng(3)
    state_spec = STATE_SPEC if stateful else ()
    plan = RequestPlan(TIME_STEP_SPEC, state_spec)
    time_step = sample(TIME_STEP_SPEC, rng, outer)
    state = sample(state_spec, rng, outer)
    leaves = plan.leaves(time_step, state, outer)
    assert leaves is not None and len(leaves) == len(tree.flatten((time_step, state)))
    generic = service_pb.ActionRequest()
    steps.write_time_step(generic.time_step, time_step)
    nests.write_nest(generic.policy_state, state)
    planned = service_pb.ActionRequest()
    plan.write(planned.time_step, planned.policy_state, leaves)
    assert planned.SerializeToString(deterministic=True) == generic.SerializeToString(deterministic=True)
    read = plan.read(generic.time_step, generic.policy_state, outer)
    assert read is not None and all(np.array_equal(a, b) for a, b in zip(read, leaves))
    rebuilt_step, rebuilt_state = plan.unflatten(read)
    assert type(rebuilt_step) is ts.TimeStep and rebuilt_step.observation.keys() == OBS.keys()
    without_state = plan.read(generic.time_step, None, outer)  # a request that carries no state
    if stateful:
        assert without_state is None
    else:
        assert all(np.array_equal(a, b) for a, b in zip(without_state, leaves))


def test_request_plan_refuses_a_missing_state_and_a_wrong_step_type():
    plan = RequestPlan(TIME_STEP_SPEC, STATE_SPEC)
    rng = np.random.default_rng(4)
    request = service_pb.ActionRequest()
    time_step = sample(TIME_STEP_SPEC, rng)
    steps.write_time_step(request.time_step, time_step)
    assert plan.read(request.time_step, None) is None
    nests.write_nest(request.policy_state, sample(STATE_SPEC, rng))
    assert plan.read(request.time_step, request.policy_state) is not None
    steps.write_time_step(request.time_step, time_step._replace(step_type=np.int64(0)))
    assert plan.read(request.time_step, request.policy_state) is None


def test_answer_plan_fits_encodes_and_reads_like_the_generic_codec():
    action_spec = array_spec.BoundedArraySpec((), np.int64, 0, 1)
    info_spec = {"log_probability": A((), np.float32)}
    plan = AnswerPlan(action_spec, STATE_SPEC, info_spec)
    step = policy_step.PolicyStep(np.array([1, 0], np.int64), {"h": np.ones((2, 3), np.float32)},
                                  {"log_probability": np.zeros(2, np.float32)})
    assert plan.fits(step) and not plan.fits(step._replace(info=()))
    generic = steps.policy_step_to_proto(step)
    planned = type(generic)()
    plan.write(planned, tree.flatten(step))
    assert planned.SerializeToString(deterministic=True) == generic.SerializeToString(deterministic=True)
    read = plan.read(generic, (2,))
    assert type(read) is policy_step.PolicyStep and read.action.flags.writeable
    np.testing.assert_array_equal(read.state["h"], step.state["h"])
    assert plan.read(generic, ()) is None  # the wrong outer shape: the generic decoder takes it


@pytest.mark.parametrize("empty", [(), [], {}], ids=["tuple", "list", "dict"])
def test_answer_parts_with_no_leaves_read_as_their_structure_only(empty):
    """A stateless policy's state (and an empty info) is read from its exact bytes; another structure is not."""
    action_spec = A((2,), np.float32)
    plan = AnswerPlan(action_spec, empty, empty)
    step = policy_step.PolicyStep(np.array([1.5, -2], np.float32), empty, empty)
    msg = steps.policy_step_to_proto(step)
    read = plan.read(msg)
    assert type(read) is policy_step.PolicyStep and type(read.state) is type(empty) and read.info == empty
    np.testing.assert_array_equal(read.action, step.action)
    for other in [(), [], {}, {"x": ()}, ((),)]:
        if type(other) is not type(empty) or other != empty:
            changed = steps.policy_step_to_proto(step._replace(state=other))
            assert plan.read(changed) is None, other  # not this policy's answer: the generic decoder takes it
    msg.ClearField("state")
    assert plan.read(msg).state == empty  # no state at all: as before


def test_numpy_scalars_of_the_spec_dtype_take_the_plan():
    """np.int32(1) where the spec is int32 () is as good as a 0-d array (issue 33's cliff): the plan takes it,
    and writes the generic codec's bytes; other scalars (Python's, another dtype, a batched leaf) do not."""
    spec = {"id": A((), np.int64), "x": A((), np.float32), "v": A((2,), np.float32)}
    plan = NestPlan(spec)
    value = {"id": np.int64(3), "x": np.float32(0.5), "v": np.zeros(2, np.float32)}
    leaves = plan.leaves(value)
    assert leaves is not None and all(type(leaf) is np.ndarray for leaf in leaves)
    planned = service_pb.ActionRequest().policy_state
    plan.write(planned, leaves)
    assert planned.SerializeToString(deterministic=True) == \
        nests.nest_to_proto(value).SerializeToString(deterministic=True)
    for other in ({**value, "id": 3}, {**value, "x": np.float64(0.5)}, {**value, "id": np.int32(3)}):
        assert plan.leaves(other) is None
    assert plan.leaves({**value, "id": np.int64(3)}, (1,)) is None  # a scalar is never a batched leaf


def test_a_time_step_of_numpy_scalars_takes_the_request_plan():
    specs = ts.time_step_spec(A((4,), np.float32))
    plan = RequestPlan(specs, ())
    step = ts.TimeStep(np.int32(1), np.float32(0), np.float32(1), np.zeros(4, np.float32))
    assert plan.leaves(step, ()) is not None
