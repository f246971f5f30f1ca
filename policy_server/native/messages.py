"""Request validation: an ActionRequest decoded and checked against the policy's specs, and bounds of
what a GetInitialState request may make the server build."""

from __future__ import annotations

import math
from typing import Any

import tree

from policy_client.wire import errors, nests, status, steps, tf_agents_types
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.spec_check import check_nest
from policy_server.engine.batching import Request
from policy_server.registry import HostedPolicy

# Requests decode into TF-Agents' own TimeStep (hosted py policies call its methods).
tf_agents_types.register()


def prepare_request(hosted: HostedPolicy, request: service_pb.ActionRequest) -> Request:
    """Decodes and validates an ActionRequest against the policy's specs.

    A request that fits the policy's plan exactly is read straight into flat
    leaves; anything else is decoded and checked field by field, which names
    the first mismatch.

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
            message = "any_time_step: only INPUT_MODE_AS_LOCAL requests may carry it (strict ones use time_step)"
            raise errors.InvalidArgumentError(message, fields=(("any_time_step", message),))
        return _local_request(request, seed)
    if as_local and seed is not None and not hosted.backend.supports_seed:
        return _local_request(request, seed)  # the local policy's own answer to a seed (usually an exception)
    if seed is not None and not hosted.backend.supports_seed:
        message = f"seed: the {hosted.backend.kind} policy {hosted.name!r} cannot take a per-call seed"
        raise errors.InvalidArgumentError(message, fields=(("seed", message),))
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
        raise errors.InvalidArgumentError(str(e), fields=status.field_violations(e),
                                          reason=type(e).__name__) from None
    return Request(tree.flatten((time_step, state)), rows, plan.unflatten, seed)


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
        message = (f"batch_size: {batch_size} rows are more than any request can carry (each row takes at "
                   f"least one byte of a message of at most {max_message_bytes} bytes)")
        raise errors.InvalidArgumentError(message, fields=(("batch_size", message),))
    rows, row_bytes = max(batch_size, 1), state_row_bytes(hosted.backend.specs.policy_state_spec)
    if rows * row_bytes > max_message_bytes:
        message = (f"batch_size: the initial state of {rows} rows of {row_bytes} bytes takes {rows * row_bytes} "
                   f"bytes, more than the server's message limit of {max_message_bytes} bytes; ask for at most "
                   f"{max_message_bytes // row_bytes} rows at a time")
        raise errors.ResourceExhaustedError(message, fields=(("batch_size", message),))


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
        raise errors.InvalidArgumentError(str(e), fields=status.field_violations(e),
                                          reason=type(e).__name__) from None
    return Request([], 0, _no_leaves, seed, local=(time_step, state))


def _no_leaves(leaves: list) -> tuple[Any, Any]:
    raise AssertionError("a local request has no leaves: the scheduler runs it through local_action")
