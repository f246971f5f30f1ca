"""One ModelInferRequest through a hosted policy's batcher: checked, batched, answered as named tensors.

The request's time-step leaves (and its state: sent as `state/...` inputs,
or held by the server for a sequence, see `policy_server.engine.sessions`) become
an ordinary batcher `Request`, queued on the same scheduler as the native
Action calls, so OIP rows and native rows share batches and versions. The
answer is the PolicyStep's leaves (`raw`), written as raw output contents.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Hashable

import numpy as np
import tree

from policy_client.wire import errors
from policy_client.wire.generated import grpc_predict_v2_pb2 as oip_pb
from policy_server.engine.batching import Request
from policy_server.oip.mapping import PolicyTensors, invalid
from policy_server.registry import HostedPolicy

SEQUENCE_ID, SEQUENCE_START, SEQUENCE_END = "sequence_id", "sequence_start", "sequence_end"
_FIRST = 0  # StepType.FIRST


@dataclasses.dataclass(frozen=True)
class Sequence:
    """A request's Triton sequence parameters."""

    key: Hashable
    start: bool
    end: bool


def sequence_of(request: oip_pb.ModelInferRequest) -> Sequence | None:
    """The request's sequence (`sequence_id` int64/uint64 or string), or None when it names none.

    Raises:
      InvalidArgumentError: a sequence parameter of the wrong type.
    """
    params = request.parameters
    if SEQUENCE_ID not in params:
        return None
    value = params[SEQUENCE_ID]
    kind = value.WhichOneof("parameter_choice")
    if kind not in ("int64_param", "uint64_param", "string_param"):
        message = f"{SEQUENCE_ID}: expected an integer or string parameter, got {kind or 'none'}"
        raise errors.InvalidArgumentError(message, fields=((SEQUENCE_ID, message),))
    key = getattr(value, kind)
    if key in (0, ""):
        return None  # Triton: 0 and "" name no sequence
    flags = []
    for name in (SEQUENCE_START, SEQUENCE_END):
        flag = params[name] if name in params else None
        if flag is not None and flag.WhichOneof("parameter_choice") != "bool_param":
            message = f"{name}: expected a bool parameter"
            raise errors.InvalidArgumentError(message, fields=((name, message),))
        flags.append(bool(flag.bool_param) if flag is not None else False)
    return Sequence(("s", key) if kind == "string_param" else ("i", int(key)), *flags)


class Inference:
    """Answers ModelInferRequests for the policies of a registry (one PolicyTensors per policy)."""

    def __init__(self) -> None:
        self._tensors: dict[str, PolicyTensors] = {}
        self._initial: dict[str, tuple[int, list[np.ndarray]]] = {}

    def tensors(self, hosted: HostedPolicy) -> PolicyTensors:
        """The named tensors of a hosted policy (built once)."""
        found = self._tensors.get(hosted.name)
        if found is None or found.specs is not hosted.backend.specs:
            found = self._tensors[hosted.name] = PolicyTensors(hosted.backend.specs)
        return found

    def start(self, hosted: HostedPolicy, request: oip_pb.ModelInferRequest,
              source: Hashable | None = None) -> asyncio.Future:
        """Checks and queues a request; the future resolves to its ModelInferResponse.

        `source` is who sent it (a stream, a unary caller's peer): batches share
        their rows fairly between sources (policy_server/engine/fair_queue.py).

        Everything up to queueing (and taking a sequence's step in) is
        synchronous, so the steps of one sequence keep their order.

        Raises:
          InvalidArgumentError: naming the tensor or parameter.
          NotFoundError / FailedPreconditionError / ResourceExhaustedError:
            another model_version, a sequence that is not open, too many.
        """
        version = hosted.backend.version
        if request.model_version and request.model_version != str(version):
            raise errors.PolicyNotFoundError(
                f"model_version: {hosted.name!r} serves version {version} now, not {request.model_version!r} "
                "(leave model_version empty for the version being served)", fields=(("model_version", "not served"),))
        named = self.tensors(hosted)
        sequence = sequence_of(request)
        inputs = named.read(request)
        wanted = named.wanted(request, session=sequence is not None)
        if sequence is None:
            if named.stateful and inputs.state is None:
                raise invalid(named.state[0].name, "missing: the policy is recurrent; send its state/... inputs "
                                                   "(client-held state) or name a sequence with sequence_id")
            future = self._submit(hosted, inputs.time_step + (inputs.state or []), inputs.rows, source)
            return asyncio.ensure_future(self._respond(hosted, request, named, wanted, future))
        if inputs.rows != 1:
            message = f"{SEQUENCE_ID}: each step of a sequence holds one row (batch 1), got {inputs.rows}"
            raise errors.InvalidArgumentError(message, fields=((SEQUENCE_ID, message),))
        if inputs.state is not None:
            raise invalid(named.state[0].name, "the server holds this sequence's state: do not send it")
        first = named.step_type_index is not None and int(inputs.time_step[named.step_type_index][0]) == _FIRST
        start = sequence.start or first
        ticket = hosted.sessions.begin(sequence.key, start, sequence.end)
        task = asyncio.ensure_future(self._step(hosted, request, named, wanted, inputs.time_step, ticket, start,
                                                 source))
        task.add_done_callback(lambda _: hosted.sessions.release(ticket))  # also when cancelled before it ran
        return task

    async def _step(self, hosted: HostedPolicy, request: oip_pb.ModelInferRequest, named: PolicyTensors,
                    wanted: list[int], time_step: list[np.ndarray], ticket: Any, start: bool,
                    source: Hashable | None = None) -> Any:
        n_action = len(named.outputs) - len(named.state) - _info_count(named)

        async def act(state: list[np.ndarray]) -> tuple[Any, Any]:
            leaves, version = await self._submit(hosted, time_step + state, 1, source)
            new_state = [np.array(x) for x in leaves[n_action:n_action + len(named.state)]]
            return (leaves, version), new_state

        leaves, version = await hosted.sessions.step(ticket, start, lambda: self._initial_state(hosted), act)
        return _response(hosted, request, named, wanted, leaves, version)

    async def _respond(self, hosted: HostedPolicy, request: oip_pb.ModelInferRequest, named: PolicyTensors,
                       wanted: list[int], future: asyncio.Future) -> oip_pb.ModelInferResponse:
        leaves, version = await future
        return _response(hosted, request, named, wanted, leaves, version)

    def _submit(self, hosted: HostedPolicy, leaves: list[np.ndarray], rows: int,
                source: Hashable | None = None) -> asyncio.Future:
        """Queues rows on the policy's scheduler; resolves to (PolicyStep leaves with the batch first, version).

        A backend that is not batchable gets a one-row request unbatched (as
        the native API sends it), and larger ones as they are.
        """
        unbatched = not hosted.backend.batchable and rows == 1
        plan = hosted.request_plan
        structure = (hosted.backend.specs.time_step_spec, hosted.backend.specs.policy_state_spec)
        unflatten = plan.unflatten if plan.usable else (lambda xs: tree.unflatten_as(structure, list(xs)))
        request = Request([x[0] for x in leaves] if unbatched else leaves, 0 if unbatched else rows, unflatten,
                          raw=True, source=source)
        future = hosted.scheduler.submit(request)
        if not unbatched:
            return future
        return asyncio.ensure_future(_rebatched(future))

    async def _initial_state(self, hosted: HostedPolicy) -> list[np.ndarray]:
        """The policy's initial state for one row (leaves with the batch first), cached per version."""
        cached = self._initial.get(hosted.name)
        version = hosted.backend.version
        if cached is None or cached[0] != version:
            state = await hosted.scheduler.run_exclusive(lambda: hosted.backend.initial_state(1))
            leaves = [np.array(x).reshape((1,) + t.shape) for x, t in zip(tree.flatten(state), self.tensors(
                hosted).state)]
            cached = self._initial[hosted.name] = (version, leaves)
        return [x.copy() for x in cached[1]]


async def _rebatched(future: asyncio.Future) -> tuple[list[np.ndarray], int]:
    leaves, version = await future
    return [np.asarray(x)[None] for x in leaves], version


def _info_count(named: PolicyTensors) -> int:
    return sum(1 for t in named.outputs if t.name == "info" or t.name.startswith("info/"))


def _response(hosted: HostedPolicy, request: oip_pb.ModelInferRequest, named: PolicyTensors, wanted: list[int],
              leaves: list[np.ndarray], version: int) -> oip_pb.ModelInferResponse:
    response = oip_pb.ModelInferResponse(model_name=hosted.name, model_version=str(version), id=request.id)
    named.write(response, leaves, wanted)
    return response
