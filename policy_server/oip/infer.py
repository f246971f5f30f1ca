"""One ModelInferRequest through a hosted policy's batcher: checked, batched, answered as named tensors.

The request's time-step leaves (and its state: sent as `state/...` inputs,
or held by the server for a sequence, see `policy_server.engine.sessions`) become
an ordinary batcher `Request`, queued on the same scheduler as the native
Action calls, so OIP rows and native rows share batches and versions. The
answer is the PolicyStep's leaves (`raw`), written as raw output contents.
"""

from __future__ import annotations

import dataclasses
from typing import Hashable

import numpy as np

from policy_client.wire import errors
from policy_client.wire.generated import grpc_predict_v2_pb2 as oip_pb
from policy_server.admission import Call, SessionStep
from policy_server.engine.batching import Request
from policy_server.engine.sessions import OIP_NAMES
from policy_server.oip.mapping import PolicyTensors, tensor_error
from policy_server.registry import HostedPolicy

SEQUENCE_ID, SEQUENCE_START, SEQUENCE_END = "sequence_id", "sequence_start", "sequence_end"


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
        raise errors.InvalidArgumentError.at(SEQUENCE_ID, f"expected an integer or string parameter, got "
                                                          f"{kind or 'none'}")
    key = getattr(value, kind)
    if key in (0, ""):
        return None  # Triton: 0 and "" name no sequence
    flags = []
    for name in (SEQUENCE_START, SEQUENCE_END):
        flag = params[name] if name in params else None
        if flag is not None and flag.WhichOneof("parameter_choice") != "bool_param":
            raise errors.InvalidArgumentError.at(name, "expected a bool parameter")
        flags.append(bool(flag.bool_param) if flag is not None else False)
    return Sequence(("s", key) if kind == "string_param" else ("i", int(key)), *flags)


class Inference:
    """The named tensors of every policy, built once per policy (and again when its specs change)."""

    def __init__(self) -> None:
        self._tensors: dict[str, PolicyTensors] = {}

    def tensors(self, hosted: HostedPolicy) -> PolicyTensors:
        """The named tensors of a hosted policy."""
        found = self._tensors.get(hosted.name)
        if found is None or found.specs is not hosted.backend.specs:
            found = self._tensors[hosted.name] = PolicyTensors(hosted.backend.specs)
        return found


class InferCall(Call):
    """A ModelInferRequest at admission (see policy_server.admission).

    Args:
      inference: the servicer's named tensors.
      request: the request.
      source: who sent it (a stream, a unary caller's peer): batches share
        their rows fairly between sources.
      patience: seconds it may wait for a loading policy.
    """

    def __init__(self, inference: Inference, request: oip_pb.ModelInferRequest, source: Hashable | None = None,
                 patience: float | None = None):
        self.inference, self.request = inference, request
        self.policy = request.model_name
        self.source = source
        self.patience = patience
        self._answer: tuple[HostedPolicy, PolicyTensors, list[int], bool] | None = None

    def read(self, hosted: HostedPolicy) -> Request | SessionStep:
        """The request's tensors (and sequence), checked against the policy.

        Raises:
          InvalidArgumentError: naming the tensor or parameter.
          PolicyNotFoundError: another model_version than the one served.
        """
        request, version = self.request, hosted.backend.version
        if request.model_version and request.model_version != str(version):
            raise errors.PolicyNotFoundError.at(
                "model_version", "not served", details=f"model_version: {hosted.name!r} serves version {version} now, "
                f"not {request.model_version!r} (leave model_version empty for the version being served)")
        named = self.inference.tensors(hosted)
        sequence = sequence_of(request)
        inputs = named.read(request)
        wanted = named.wanted(request, session=sequence is not None)
        if sequence is None:
            if named.stateful and inputs.state is None:
                raise tensor_error(named.state[0].name, "missing: the policy is recurrent; send its state/... inputs "
                                                   "(client-held state) or name a sequence with sequence_id")
            leaves, rows = inputs.time_step + (inputs.state or []), inputs.rows
            # A backend that is not batchable gets a one-row request unbatched, as the native API sends it.
            unbatched = not hosted.backend.batchable and rows == 1
            self._answer = (hosted, named, wanted, unbatched)
            return Request([x[0] for x in leaves] if unbatched else leaves, 0 if unbatched else rows,
                           hosted.request_plan.unflatten, raw=True)
        if inputs.rows != 1:
            raise errors.InvalidArgumentError.at(SEQUENCE_ID, f"each step of a sequence holds one row (batch 1), "
                                                              f"got {inputs.rows}")
        if inputs.state is not None:
            raise tensor_error(named.state[0].name, "the server holds this sequence's state: do not send it")
        step_type = int(inputs.time_step[named.step_type_index][0]) if named.step_type_index is not None else -1
        self._answer = (hosted, named, wanted, True)
        return SessionStep(sequence.key, sequence.start, sequence.end, OIP_NAMES, [x[0] for x in inputs.time_step],
                           step_type)

    def response(self, leaves: list[np.ndarray], version: int) -> oip_pb.ModelInferResponse:
        """The ModelInferResponse of the PolicyStep's leaves (batch first, added back for an unbatched call)."""
        hosted, named, wanted, unbatched = self._answer
        if unbatched:
            leaves = [np.asarray(x)[None] for x in leaves]
        response = oip_pb.ModelInferResponse(model_name=hosted.name, model_version=str(version), id=self.request.id)
        named.write(response, leaves, wanted)
        return response
