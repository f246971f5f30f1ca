"""Server-held sessions on the native API: ActionRequest.session, for clients that cannot carry a state.

The same session table as the Open Inference Protocol's sequences
(`policy_server.engine.sessions`: bounded, idle ones expire, steps of one session in
order, states kept across weight updates). A step carries one unbatched time
step and no state; the server adds the session's state, queues the row on the
policy's scheduler with everyone else's, keeps the new state, and answers the
action and info (the answer's state is `()`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import tree

from policy_client.wire import errors, status, steps
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.spec_check import check_nest
from policy_server.engine.batching import Request
from policy_server.registry import HostedPolicy
from policy_server.engine.sessions import NATIVE_NAMES

_FIRST = 0  # StepType.FIRST


def start(hosted: HostedPolicy, request: service_pb.ActionRequest) -> asyncio.Future:
    """Checks and takes in one session step; the future resolves to (ActionResponse, version).

    Synchronous up to taking the step in, so the steps of one session keep their order.

    Raises:
      InvalidArgumentError: naming the field (a batch, a state sent along, a time step off the specs).
      FailedPreconditionError / ResourceExhaustedError: a session that is not open; too many open.
    """
    session = request.session
    if not session.id:
        raise _invalid("session.id", "empty: name the session")
    if request.batch_size:
        raise _invalid("batch_size", f"a session step holds one unbatched time step (batch_size 0), got "
                                     f"{request.batch_size}")
    if request.HasField("policy_state") or request.HasField("any_time_step"):
        field = "policy_state" if request.HasField("policy_state") else "any_time_step"
        raise _invalid(field, "the server holds the session's state: send only the time step")
    if not request.HasField("time_step"):
        raise _invalid("time_step", "is not set")
    seed = request.seed if request.HasField("seed") else None
    if seed is not None and not hosted.backend.supports_seed:
        raise _invalid("seed", f"the {hosted.backend.kind} policy {hosted.name!r} cannot take a per-call seed")
    try:
        time_step = steps.time_step_from_proto(request.time_step, copy=True)
        check_nest(time_step, hosted.backend.specs.time_step_spec, outer_shape=(), path="time_step")
    except errors.FieldError as e:
        raise errors.InvalidArgumentError(str(e), fields=status.field_violations(e), reason=type(e).__name__) from None
    leaves = tree.flatten(time_step)
    begin = session.start or int(time_step.step_type) == _FIRST
    ticket = hosted.sessions.begin(("session", session.id), begin, session.end, NATIVE_NAMES)
    task = asyncio.ensure_future(_step(hosted, leaves, seed, ticket, begin))
    task.add_done_callback(lambda _: hosted.sessions.release(ticket))  # also when cancelled before it ran
    return task


async def _step(hosted: HostedPolicy, leaves: list[np.ndarray], seed: int | None, ticket: Any,
                begin: bool) -> tuple[service_pb.ActionResponse, int]:
    plan = hosted.answer_plan
    n_action, n_state = plan.cut_points

    async def act(state: list[np.ndarray]) -> tuple[Any, list[np.ndarray]]:
        row = Request(leaves + state, 0, hosted.request_plan.unflatten, seed, raw=True)
        answer, version = await hosted.scheduler.submit(row)
        return (answer, version), [np.array(x) for x in answer[n_action:n_state]]

    async def initial() -> list[np.ndarray]:
        state = await hosted.scheduler.run_exclusive(lambda: hosted.backend.initial_state(None))
        return [np.array(x) for x in tree.flatten(state)]

    answer, version = await hosted.sessions.step(ticket, begin, initial, act)
    response = service_pb.ActionResponse()
    plan.write_without_state(response.policy_step, answer)
    return response, version


def _invalid(field: str, text: str) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(f"{field}: {text}", fields=((field, text),))
