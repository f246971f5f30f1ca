"""Hypothesis strategies of well-formed but wrong requests, for every RPC, and the valid seed messages.

"Well-formed but wrong": every message parses, but its values are what a
confused or hostile client sends: wrong dtypes and shapes, unknown enum
values, huge declared shapes and string widths, content whose byte length
does not match its shape, NaN and infinities, nests 1 to 150 levels deep,
duplicate or endless dict keys, odd named-tuple type names, huge batch sizes
and seeds, slices of pushes that overlap, overflow or lie about their
variable. `valid_seeds()` are the correct messages the mutation engine
starts from. Strategies draw `(rpc, [serialized message, ...])`: one
message, or for PushVariables the stream of messages of one push.
"""

from __future__ import annotations

import math
import struct

import numpy as np
from hypothesis import strategies as st

from policy_client import wire
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import types_pb2 as pb
from tests.reliability import mutator
from tests.reliability.clients import echo_request, time_step

POLICIES = ("echo", "cartpole")
UNARY = ("ListPolicies", "GetSpecs", "GetInitialState", "Action", "GetStats", "GetVariables", "LoadCheckpoint")
RPCS = UNARY + ("ActionStream", "PushVariables")
REQUEST_TYPES = {"ListPolicies": service_pb.ListPoliciesRequest, "GetSpecs": service_pb.GetSpecsRequest,
                 "GetInitialState": service_pb.GetInitialStateRequest, "Action": service_pb.ActionRequest,
                 "ActionStream": service_pb.ActionRequest, "GetStats": service_pb.GetStatsRequest,
                 "PushVariables": service_pb.PushVariablesRequest, "GetVariables": service_pb.GetVariablesRequest,
                 "LoadCheckpoint": service_pb.LoadCheckpointRequest}

_ITEMSIZE = {pb.DTYPE_BOOL: 1, pb.DTYPE_INT8: 1, pb.DTYPE_INT16: 2, pb.DTYPE_INT32: 4, pb.DTYPE_INT64: 8,
             pb.DTYPE_UINT8: 1, pb.DTYPE_UINT16: 2, pb.DTYPE_UINT32: 4, pb.DTYPE_UINT64: 8, pb.DTYPE_FLOAT16: 2,
             pb.DTYPE_BFLOAT16: 2, pb.DTYPE_FLOAT32: 4, pb.DTYPE_FLOAT64: 8}
HUGE = (2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**62, 2**63 - 1)

# Text protobuf can carry (valid UTF-8: no lone surrogates).
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
long_texts = st.builds(lambda c, n: c * n, st.sampled_from("xé\0/😀"), st.sampled_from((300, 1000, 1000, 20_000)))
names = st.one_of(st.sampled_from(POLICIES + ("", "nope", "echo ", "ECHO")), texts, long_texts)
dtypes = st.one_of(st.sampled_from(list(range(15))), st.sampled_from((15, 99, 2**31 - 1)))
dims = st.one_of(st.integers(0, 4), st.sampled_from(HUGE), st.integers(-(2**63), -1))
shapes = st.one_of(st.lists(dims, max_size=4), st.lists(st.integers(0, 2), min_size=31, max_size=34))
special_floats = st.sampled_from((float("nan"), float("inf"), float("-inf"), -0.0, 5e-324, 3.4e38, 1e308))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), special_floats)


def _count(shape) -> int:
    return math.prod(shape) if all(0 <= d < 2**20 for d in shape) else -1


@st.composite
def tensors(draw) -> pb.Tensor:
    """A Tensor: any dtype (unknown ones too), any shape, content of the right length or not."""
    tensor = pb.Tensor(dtype=draw(dtypes), shape=draw(shapes))
    mode = draw(st.sampled_from(("exact", "exact", "nan", "short", "long", "empty", "strings", "string_width")))
    count, itemsize = _count(tensor.shape), _ITEMSIZE.get(tensor.dtype, 4)
    exact = count * itemsize if 0 <= count <= 4096 else 0
    if mode in ("exact", "short", "long"):
        size = max(exact + {"exact": 0, "short": -draw(st.integers(1, 8)), "long": draw(st.integers(1, 8))}[mode], 0)
        tensor.content = draw(st.binary(min_size=size, max_size=size)) if size <= 64 else bytes(size)
    elif mode == "nan":
        tensor.dtype = draw(st.sampled_from((pb.DTYPE_FLOAT16, pb.DTYPE_FLOAT32, pb.DTYPE_FLOAT64)))
        values = draw(st.lists(floats, min_size=1, max_size=6))
        del tensor.shape[:]
        tensor.shape.append(len(values))
        tensor.content = np.asarray(values, {pb.DTYPE_FLOAT16: "<f2", pb.DTYPE_FLOAT32: "<f4",
                                             pb.DTYPE_FLOAT64: "<f8"}[tensor.dtype]).tobytes()
    elif mode in ("strings", "string_width"):
        tensor.dtype = pb.DTYPE_STRING if draw(st.booleans()) else tensor.dtype
        tensor.string_kind = draw(st.sampled_from((0, 1, 2, 3, 99)))
        tensor.string_val.extend(draw(st.lists(st.binary(max_size=20), max_size=5)))
        if mode == "string_width":  # small on the wire, declared huge
            tensor.string_itemsize = draw(st.sampled_from((1, 2**20, 2**26, 2**28, 2**30, 2**32 - 1)))
        if draw(st.booleans()):
            tensor.content = b"\1\2\3"
    return tensor


@st.composite
def scalars(draw) -> pb.Scalar:
    kind = draw(st.sampled_from(("bool_value", "int_value", "float_value", "string_value", "bytes_value")))
    value = {"bool_value": st.booleans(), "int_value": st.integers(-(2**63), 2**63 - 1), "float_value": floats,
             "string_value": st.one_of(texts, long_texts), "bytes_value": st.binary(max_size=50)}[kind]
    return pb.Scalar(**{kind: draw(value)})


TENSORS = tensors()
SCALARS = scalars()

type_names = st.one_of(st.sampled_from(("tf_agents.trajectories.time_step.TimeStep", "TimeStep",
                                        "collections.OrderedDict", "os.system", "builtins.eval", "__main__.X",
                                        "a.b.c.D", "", "policy_client.wire.standins.TimeStep")), texts, long_texts)
keys = st.one_of(st.sampled_from(("count", "observation", "", "step_type")), texts, long_texts)


def nests(max_leaves: int = 8) -> st.SearchStrategy[pb.Nest]:
    """Nests of tensors, scalars, specs and None inside lists, tuples, dicts (repeated keys too) and named tuples."""
    leaves = st.one_of(TENSORS.map(lambda t: pb.Nest(tensor=t)), SCALARS.map(lambda s: pb.Nest(scalar=s)),
                       st.just(pb.Nest(none=pb.NoneValue())),
                       st.builds(lambda n, s, d: pb.Nest(spec=pb.ArraySpec(name=n, shape=s, dtype=d)), texts, shapes,
                                 dtypes),
                       st.just(pb.Nest()))

    def extend(children):
        entries = st.lists(st.tuples(keys, children), max_size=4).map(
            lambda kv: [pb.NestEntry(key=k, value=v) for k, v in kv])
        return st.one_of(
            st.lists(children, max_size=4).map(lambda v: pb.Nest(list=pb.NestSequence(values=v))),
            st.lists(children, max_size=4).map(lambda v: pb.Nest(tuple=pb.NestSequence(values=v))),
            st.builds(lambda e, o: pb.Nest(dict=pb.NestMapping(entries=e, ordered=o)), entries, st.booleans()),
            st.builds(lambda n, e: pb.Nest(named_tuple=pb.NamedTuple(type_name=n, fields=e)), type_names, entries))

    return st.recursive(leaves, extend, max_leaves=max_leaves)


NESTS = nests()


@st.composite
def deep_nests(draw) -> bytes:
    """A serialized chain of containers 1 to 150 levels deep.

    Built on the wire (tests.reliability.mutator): protobuf's Python API refuses to build messages past its
    own limit of 100 levels, which a peer can still send.
    """
    depth = draw(st.one_of(st.integers(1, 60), st.sampled_from((23, 24, 25, 49, 50, 51, 99, 100, 101, 150))))
    nest = mutator.parse(pb.Nest(tensor=pb.Tensor(dtype=pb.DTYPE_INT64, content=bytes(8))).SerializeToString())
    for _ in range(depth):
        nest = mutator._wrap_nest(nest, draw(st.sampled_from(("list", "tuple", "dict", "named_tuple"))))  # pylint: disable=protected-access
    return mutator.serialize(nest)


DEEP_NESTS = deep_nests()
ANY_NEST_BYTES = st.one_of(NESTS.map(lambda n: n.SerializeToString()), DEEP_NESTS)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field on the wire (appended to a message, protobuf sets or merges it)."""
    return mutator.encode_varint(number << 3 | mutator.LEN) + mutator.encode_varint(len(payload)) + payload


def with_nests(draw, request: service_pb.ActionRequest) -> bytes:
    """`request` serialized, sometimes with any nest, or one far too deep, in a nest slot."""
    slot = draw(st.sampled_from(("policy_state", "any_time_step", "observation", "reward", None, None)))
    if slot is None:
        return request.SerializeToString()
    nest = draw(ANY_NEST_BYTES)
    if slot in ("policy_state", "any_time_step"):
        request.ClearField(slot)
        return request.SerializeToString() + _field({"policy_state": 3, "any_time_step": 8}[slot], nest)
    time_step = service_pb.ActionRequest().time_step
    time_step.CopyFrom(request.time_step)
    time_step.ClearField(slot)
    request.ClearField("time_step")
    return request.SerializeToString() + _field(2, time_step.SerializeToString() +
                                                _field({"observation": 4, "reward": 2}[slot], nest))


@st.composite
def valid_but_wrong_actions(draw) -> bytes:
    """A correct request for "echo" or "cartpole", with one thing made wrong (serialized)."""
    policy = draw(st.sampled_from(POLICIES))
    rows = draw(st.sampled_from((0, 0, 1, 3)))
    width = 3 if policy == "echo" else 4
    values = draw(st.lists(floats, min_size=1, max_size=3))  # repeated to fill the observation
    with np.errstate(over="ignore", invalid="ignore"):
        observation = np.resize(np.asarray(values, np.float64).astype(np.float32), width * max(rows, 1)).reshape(
            (rows, width) if rows else (width,))
    request = echo_request("echo", observation, rows, stateful=True) if policy == "echo" else \
        _cartpole_request(observation, rows)
    if draw(st.integers(0, 9)) == 0:
        request.seed = draw(st.integers(-(2**63), 2**63 - 1))
    request.input_mode = draw(st.sampled_from((0, 0, 1, 2, 2, 3, 2**31 - 1)))
    leaf = draw(st.sampled_from(("step_type", "reward", "discount", "observation", "state", "batch_size", "none")))
    edit = draw(st.sampled_from(("dtype", "shape", "huge_shape", "content", "replace", "clear")))
    target = {"step_type": request.time_step.step_type, "discount": request.time_step.discount,
              "reward": request.time_step.reward.tensor, "observation": request.time_step.observation.tensor,
              "state": request.policy_state.dict.entries[0].value.tensor if policy == "echo" else None}.get(leaf)
    if leaf == "batch_size":
        request.batch_size = draw(st.sampled_from((0, 1, 2, 4, 1000, 2**31, 2**32 - 1)))
    elif target is not None:
        if edit == "dtype":
            target.dtype = draw(dtypes)
        elif edit == "shape":
            target.shape.append(draw(st.integers(0, 5)))
        elif edit == "huge_shape":
            target.shape[:] = draw(st.lists(st.sampled_from(HUGE), min_size=1, max_size=3))
        elif edit == "content":
            target.content = target.content[:-1] if target.content and draw(st.booleans()) else target.content + b"\0"
        elif edit == "replace":
            target.CopyFrom(draw(TENSORS))
        else:
            target.Clear()
    return with_nests(draw, request)


def _cartpole_request(observation: np.ndarray, rows: int) -> service_pb.ActionRequest:
    request = service_pb.ActionRequest(policy="cartpole", batch_size=rows)
    wire.write_time_step(request.time_step, time_step(observation, rows))
    wire.write_nest(request.policy_state, ())
    return request


@st.composite
def wild_actions(draw) -> bytes:
    """Any ActionRequest: any policy name, any nests in every slot (serialized)."""
    request = service_pb.ActionRequest(policy=draw(names), batch_size=draw(st.sampled_from((0, 1, 3, 2**32 - 1))),
                                       request_id=draw(st.integers(0, 2**64 - 1)),
                                       input_mode=draw(st.sampled_from((0, 1, 2, 5))))
    if draw(st.booleans()):
        ts = request.time_step
        ts.step_type.CopyFrom(draw(TENSORS))
        ts.discount.CopyFrom(draw(TENSORS))
        ts.reward.CopyFrom(draw(NESTS))
        ts.observation.CopyFrom(draw(NESTS))
    if draw(st.booleans()):
        request.policy_state.CopyFrom(draw(NESTS))
    if draw(st.booleans()):
        request.any_time_step.CopyFrom(draw(NESTS))
    if draw(st.booleans()):
        request.seed = draw(st.integers(-(2**63), 2**63 - 1))
    return with_nests(draw, request)


actions = st.one_of(valid_but_wrong_actions(), valid_but_wrong_actions(), wild_actions())
paths = st.one_of(st.sampled_from(("", "/", "/nonexistent", "/tmp", "/proc/self", "/dev/null", "s3://bucket/x",
                                   "hdfs://host/x", "ram://x", "file:///nonexistent", "./policy_checkpoint_0000000010",
                                   "/nonexistent/policy_checkpoint_99999999999999999999", "\0", "../../etc")),
                  texts, long_texts)


@st.composite
def pushes(draw) -> list[bytes]:
    """One push (header, then slices) for "echo" (one float32 scalar) or another policy, mostly wrong."""
    header = service_pb.PushVariablesRequest(policy=draw(st.one_of(st.sampled_from(POLICIES), names)),
                                             version=draw(st.one_of(st.integers(0, 10**6), st.sampled_from(
                                                 (-1, -(2**63), 2**40, 2**40 + 10**6, 2**62, 2**63 - 1)))),
                                             num_variables=draw(st.sampled_from((0, 1, 1, 2, 6, 2**32 - 1))))
    slices = draw(st.lists(st.builds(
        lambda i, n, d, s, o, c: pb_slice(i, n, d, s, o, c),
        st.sampled_from((0, 0, 1, 2**32 - 1)), st.one_of(st.just("echo/bias:0"), st.just(""), texts, long_texts),
        st.one_of(st.just(pb.DTYPE_FLOAT32), dtypes), st.one_of(st.just([]), shapes),
        st.one_of(st.sampled_from((0, 0, 1, 2, 3, 4)), st.sampled_from(HUGE + (2**64 - 1,))),
        st.one_of(st.just(struct.pack("<f", 1.5)), st.binary(max_size=9), st.just(b"\0" * 100_000))),
        max_size=4))
    messages = [header]
    for piece in slices:  # in the message before, or a message of its own
        if draw(st.booleans()):
            messages.append(service_pb.PushVariablesRequest())
        messages[-1].slices.append(piece)
    return [m.SerializeToString() for m in messages]


def pb_slice(index, name, dtype, shape, offset, content) -> service_pb.VariableSlice:
    return service_pb.VariableSlice(index=index, name=name, dtype=dtype, shape=shape, offset=offset, content=content)


def _one(rpc: str, messages: st.SearchStrategy) -> st.SearchStrategy:
    return messages.map(lambda m: (rpc, [m if isinstance(m, bytes) else m.SerializeToString()]))


requests = st.one_of(
    _one("Action", actions), _one("ActionStream", actions), _one("ActionStream", actions),
    _one("GetSpecs", st.builds(service_pb.GetSpecsRequest, policy=names)),
    _one("GetInitialState", st.builds(service_pb.GetInitialStateRequest, policy=names,
                                      batch_size=st.sampled_from((0, 1, 2, 7, 64, 1000, 2**20, 2**32 - 1)),
                                      input_mode=st.sampled_from((0, 1, 2, 3, 2**31 - 1)))),
    _one("GetStats", st.builds(service_pb.GetStatsRequest, policy=names)),
    _one("ListPolicies", st.just(service_pb.ListPoliciesRequest())),
    _one("GetVariables", st.builds(service_pb.GetVariablesRequest, policy=names, include_values=st.booleans())),
    _one("LoadCheckpoint", st.builds(service_pb.LoadCheckpointRequest, policy=names, path=paths,
                                     version=st.one_of(st.integers(0, 100), st.sampled_from((-1, 2**63 - 1))))),
    pushes().map(lambda m: ("PushVariables", m)))


def valid_seeds() -> dict[str, list[list[bytes]]]:
    """Correct messages of every RPC (for the mutation engine): rpc -> list of message lists."""
    echo = [echo_request("echo", np.array([1, 2, 3], np.float32), stateful=True),
            echo_request("echo", np.arange(9, dtype=np.float32).reshape(3, 3), 3, stateful=True),
            echo_request("echo", np.array([np.nan, np.inf, -0.0], np.float32), stateful=True)]
    cartpole = [_cartpole_request(np.zeros(4, np.float32), 0), _cartpole_request(np.ones((2, 4), np.float32), 2)]
    seeded = service_pb.ActionRequest()
    seeded.CopyFrom(cartpole[0])
    seeded.seed = 7
    as_local = service_pb.ActionRequest(policy="cartpole", input_mode=service_pb.INPUT_MODE_AS_LOCAL)
    wire.write_nest(as_local.any_time_step, {"step_type": 0, "reward": 0.0, "discount": 1.0,
                                             "observation": [0.0, 0.1, 0.2, 0.3]})
    wire.write_nest(as_local.policy_state, ())
    actions_ = [m.SerializeToString() for m in (*echo, *cartpole, seeded, as_local)]
    push_header = service_pb.PushVariablesRequest(policy="echo", version=1, num_variables=1)
    push_slice = service_pb.PushVariablesRequest(slices=[pb_slice(0, "echo/bias:0", pb.DTYPE_FLOAT32, [], 0,
                                                                  struct.pack("<f", 0.0))])
    return {
        "Action": [[a] for a in actions_], "ActionStream": [[a] for a in actions_],
        "ListPolicies": [[b""]],
        "GetSpecs": [[service_pb.GetSpecsRequest(policy=p).SerializeToString()] for p in POLICIES],
        "GetInitialState": [[service_pb.GetInitialStateRequest(policy=p, batch_size=b, input_mode=m)
                             .SerializeToString()] for p, b, m in (("echo", 0, 0), ("echo", 4, 2), ("cartpole", 1, 2))],
        "GetStats": [[service_pb.GetStatsRequest(policy=p).SerializeToString()] for p in ("", "echo")],
        "GetVariables": [[service_pb.GetVariablesRequest(policy="echo", include_values=True).SerializeToString()]],
        "LoadCheckpoint": [[service_pb.LoadCheckpointRequest(policy=p, path="/nonexistent/policy_checkpoint_0000000010")
                            .SerializeToString()] for p in POLICIES],
        "PushVariables": [[push_header.SerializeToString(), push_slice.SerializeToString()]],
    }
