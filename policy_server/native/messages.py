"""The native messages at the seam: an ActionRequest read against its policy, and each answer as its
ActionResponse; plus the bound on what a GetInitialState request may make the server build."""

from __future__ import annotations

import math
from typing import Any, Hashable, Sequence

import numpy as np
import tree

from policy_client.wire import errors, nests, status, steps, tf_agents_types
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.spec_check import check_nest
from policy_client.wire.step_plan import AnswerPlan
from policy_server.admission import Call, SessionStep
from policy_server.engine.batching import Request
from policy_server.engine.sessions import NATIVE_NAMES
from policy_server.registry import HostedPolicy

# Requests decode into TF-Agents' own TimeStep (hosted py policies call its methods).
tf_agents_types.register()


class ActionCall(Call):
    """An ActionRequest at admission (see policy_server.admission).

    Args:
      request: the request.
      source: its stream, or the unary caller's peer.
      patience: seconds it may wait for a loading policy or its min_version.
    """

    def __init__(self, request: service_pb.ActionRequest, source: Hashable | None = None,
                 patience: float | None = None):
        self.request = request
        self.policy = request.policy
        self.seed = request.seed if request.HasField("seed") else None
        self.min_version = request.min_version
        self.source = source
        self.patience = patience
        self.as_local = request.input_mode == service_pb.INPUT_MODE_AS_LOCAL
        self._session_plan: AnswerPlan | None = None  # a session step's answer leaves out the state

    def read(self, hosted: HostedPolicy) -> Request | SessionStep:
        if self.request.slot_fallback:
            hosted.shm_fallbacks[fallback_reason(self.request.slot_fallback)] += 1
        if self.request.HasField("session"):
            self._session_plan = hosted.answer_plan
            return read_session_step(hosted, self.request)
        return read_request(hosted, self.request)

    def response(self, answer: Any, version: int) -> service_pb.ActionResponse:
        """The ActionResponse of an answer (already encoded, but for a session step's leaves)."""
        if self._session_plan is not None:
            response = service_pb.ActionResponse()
            self._session_plan.write_without_state(response.policy_step, answer)
        else:
            response = answer
        response.version = version
        response.request_id = self.request.request_id
        return response


def fallback_reason(value: int) -> str:
    """The metric label of an ActionRequest.slot_fallback: the enum value's name, e.g. "no_slot"."""
    try:
        return service_pb.SlotFallback.Name(value)[len("SLOT_FALLBACK_"):].lower()
    except ValueError:  # a value of newer protos
        return "other"


def read_request(hosted: HostedPolicy, request: service_pb.ActionRequest) -> Request:
    """An ActionRequest (client-held state) decoded and checked against the policy's specs.

    A request that fits the policy's plan exactly is read straight into flat
    leaves; anything else is decoded and checked field by field, which names
    the first mismatch. An INPUT_MODE_AS_LOCAL request that does not conform
    (or carries `any_time_step`, or a seed the policy cannot take) travels as
    sent, to be handed alone to the policy's own code.

    Raises:
      InvalidArgumentError: naming the field (a google.rpc.BadRequest field
        violation), expected vs got.
    """
    specs = hosted.backend.specs
    rows = request.batch_size
    outer = (rows,) if rows else ()
    seed = request.seed if request.HasField("seed") else None
    as_local = request.input_mode == service_pb.INPUT_MODE_AS_LOCAL
    if request.HasField("any_time_step"):
        if not as_local:
            raise errors.InvalidArgumentError.at(
                "any_time_step", "only INPUT_MODE_AS_LOCAL requests may carry it (strict ones use time_step)")
        return _local_request(request, seed)
    if as_local and seed is not None and not hosted.backend.supports_seed:
        return _local_request(request, seed)  # the local policy's own answer to a seed (usually an exception)
    plan = hosted.request_plan
    if request.HasField("time_step"):
        leaves = plan.read(request.time_step, request.policy_state if request.HasField("policy_state") else None,
                           outer)
        if leaves is not None:
            return Request(leaves, rows, plan.unflatten, seed)
    try:
        if not request.HasField("time_step"):
            raise errors.CodecError("time_step is not set", "time_step")
        time_step = steps.time_step_from_proto(request.time_step)
        check_nest(time_step, specs.time_step_spec, outer_shape=outer, path="time_step")
        state: Any = ()
        if request.HasField("policy_state"):
            state = nests.nest_from_proto(request.policy_state, path="policy_state")
            check_nest(state, specs.policy_state_spec, outer_shape=outer, path="policy_state")
            if not hosted.stateful:
                state = ()
        elif hosted.stateful:
            raise errors.SpecMismatchError("policy_state: the policy is stateful, but the request carries no "
                                           "state (start from GetInitialState)", "policy_state")
    except errors.FieldError as e:
        if as_local and not isinstance(e, errors.CodecError):
            return _local_request(request, seed)
        raise status.as_remote_error(e) from None
    return Request(tree.flatten((time_step, state)), rows, plan.unflatten, seed)


def read_session_step(hosted: HostedPolicy, request: service_pb.ActionRequest) -> SessionStep:
    """A step of a server-held session (ActionRequest.session): one unbatched time step, no state.

    Raises:
      InvalidArgumentError: naming the field (a batch, a state sent along, a time step off the specs).
    """
    session = request.session
    if not session.id:
        raise errors.InvalidArgumentError.at("session.id", "empty: name the session")
    if request.batch_size:
        raise errors.InvalidArgumentError.at(
            "batch_size", f"a session step holds one unbatched time step (batch_size 0), got {request.batch_size}")
    if request.HasField("policy_state") or request.HasField("any_time_step"):
        field = "policy_state" if request.HasField("policy_state") else "any_time_step"
        raise errors.InvalidArgumentError.at(field, "the server holds the session's state: send only the time step")
    if not request.HasField("time_step"):
        raise errors.InvalidArgumentError.at("time_step", "is not set")
    try:
        time_step = steps.time_step_from_proto(request.time_step, copy=True)
        check_nest(time_step, hosted.backend.specs.time_step_spec, outer_shape=(), path="time_step")
    except errors.FieldError as e:
        raise status.as_remote_error(e) from None
    return SessionStep(("session", session.id), session.start, session.end, NATIVE_NAMES, tree.flatten(time_step),
                       int(time_step.step_type))


class ResponseEncoder:
    """The scheduler's StepEncoder for native requests: each answer becomes its ActionResponse
    (its version and request id are set at the door)."""

    def __init__(self, plan: AnswerPlan):
        self.plan = plan

    def fits(self, step: Any) -> bool:
        return self.plan.fits(step)

    def encode_leaves(self, leaves: Sequence[np.ndarray]) -> service_pb.ActionResponse:
        response = service_pb.ActionResponse()
        self.plan.write(response.policy_step, leaves)
        return response

    def encode(self, step: Any) -> service_pb.ActionResponse:
        response = service_pb.ActionResponse()
        steps.write_policy_step(response.policy_step, step)
        return response


def state_row_bytes(state_spec: Any) -> int:
    """Bytes one row of a state of `state_spec` holds (0 for a stateless policy's ())."""
    return sum(math.prod(spec.shape) * max(spec.dtype.itemsize, 1) for spec in tree.flatten(state_spec))


def check_initial_state_rows(hosted: HostedPolicy, batch_size: int, max_message_bytes: int) -> None:
    """Refuses a GetInitialState batch_size before the state is built.

    No Action request can carry more rows than its message has bytes, and a
    state larger than the server's message limit could never be sent.

    Raises:
      InvalidArgumentError: more rows than a message has bytes (field batch_size).
      ResourceExhaustedError: a state over max_message_bytes (field batch_size).
    """
    if batch_size > max_message_bytes:
        raise errors.InvalidArgumentError.at(
            "batch_size", f"{batch_size} rows are more than any request can carry (each row takes at least one "
                          f"byte of a message of at most {max_message_bytes} bytes)")
    rows, row_bytes = max(batch_size, 1), state_row_bytes(hosted.backend.specs.policy_state_spec)
    if rows * row_bytes > max_message_bytes:
        raise errors.ResourceExhaustedError.at(
            "batch_size", f"the initial state of {rows} rows of {row_bytes} bytes takes {rows * row_bytes} bytes, "
                          f"more than the server's message limit of {max_message_bytes} bytes; ask for at most "
                          f"{max_message_bytes // row_bytes} rows at a time")


def _local_request(request: service_pb.ActionRequest, seed: int | None) -> Request:
    """A request served as the local policy would be: the nests as sent, alone (INPUT_MODE_AS_LOCAL)."""
    try:
        if request.HasField("any_time_step"):
            time_step = nests.nest_from_proto(request.any_time_step, copy=True, path="any_time_step")
        elif request.HasField("time_step"):
            time_step = steps.time_step_from_proto(request.time_step, copy=True)
        else:
            raise errors.CodecError("time_step is not set", "time_step")
        state = nests.nest_from_proto(request.policy_state, copy=True, path="policy_state") \
            if request.HasField("policy_state") else ()
    except errors.FieldError as e:
        raise status.as_remote_error(e) from None
    return Request([], 0, _no_leaves, seed, local=(time_step, state))


def _no_leaves(leaves: list) -> tuple[Any, Any]:
    raise AssertionError("a local request has no leaves: the scheduler runs it through local_action")
