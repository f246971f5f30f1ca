"""The one mapping from a TF-Agents policy's nests to Open Inference Protocol named tensors.

- Inputs are the time step's leaves: `step_type`, `reward`, `discount`,
  `observation` (or `observation/<key>[/...]` for dict, tuple or nested
  observations; list and tuple positions are numbers), then the policy
  state's leaves `state[/<path>]` (a recurrent policy whose state the client
  holds; with a server-held session they are left out).
- Outputs are the PolicyStep's leaves: `action[/<path>]`, `state[/<path>]`,
  `info[/<path>]`.
- Every tensor has the batch as its first dimension (-1 in metadata) and the
  OIP datatype of its spec's dtype. Leaves are in tf.nest order (dict keys
  sorted), the order the batcher stacks.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping, Sequence

import numpy as np
import tree

from policy_client.wire import errors
from policy_client.wire.generated import grpc_predict_v2_pb2 as oip_pb
from policy_client.wire.standins import PolicySpecs
from policy_server.oip import tensors


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One named tensor of the mapping: a leaf of a policy spec."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    datatype: str
    minimum: Any = None
    maximum: Any = None

    @classmethod
    def of(cls, name: str, spec: Any) -> "TensorSpec":
        dtype = np.dtype(spec.dtype)
        return cls(name, dtype, tuple(int(d) for d in spec.shape), tensors.datatype_of(dtype),
                   getattr(spec, "minimum", None), getattr(spec, "maximum", None))

    @property
    def metadata_shape(self) -> list[int]:
        return [-1, *self.shape]


def named_leaves(spec: Any, prefix: str = "") -> list[TensorSpec]:
    """The leaves of a spec nest as named tensors, in tf.nest order ("a/b/0" paths under `prefix`)."""
    named = []
    for path, leaf in tree.flatten_with_path(spec):
        name = "/".join([prefix, *map(str, path)] if prefix else map(str, path))
        named.append(TensorSpec.of(name, leaf))
    return named


def tensor_error(name: str, message: str) -> errors.InvalidArgumentError:
    """INVALID_ARGUMENT about the tensor `name`: "tensor 'NAME': MESSAGE", a field violation naming it."""
    return errors.InvalidArgumentError.at(name, message, details=f"tensor {name!r}: {message}",
                                          reason="OipTensorError")


@dataclasses.dataclass
class Inputs:
    """A request's inputs as leaves: time-step leaves, state leaves (None: not sent), batch rows."""

    time_step: list[np.ndarray]
    state: list[np.ndarray] | None
    rows: int


class PolicyTensors:
    """The named tensors of one policy's specs.

    Args:
      specs: the policy's array specs.

    Raises:
      ValueError: two leaves map to one name (dict keys holding "/"), or a
        dtype OIP cannot carry.
    """

    def __init__(self, specs: PolicySpecs):
        self.specs = specs
        self.time_step = named_leaves(specs.time_step_spec)
        self.state = named_leaves(specs.policy_state_spec, "state")
        self.outputs = (named_leaves(specs.action_spec, "action") + named_leaves(specs.policy_state_spec, "state")
                        + named_leaves(specs.info_spec, "info"))
        self.inputs = self.time_step + self.state
        self._inputs = {t.name: t for t in self.inputs}
        self._outputs = {t.name: t for t in self.outputs}
        if len(self._inputs) != len(self.inputs) or len(self._outputs) != len(self.outputs):
            raise ValueError("two leaves of the policy's specs map to one tensor name")
        self._state_outputs = {t.name for t in self.outputs if t.name == "state" or t.name.startswith("state/")}
        self.step_type_index = next((i for i, t in enumerate(self.time_step) if t.name == "step_type"), None)

    @property
    def stateful(self) -> bool:
        return bool(self.state)

    def read(self, request: oip_pb.ModelInferRequest) -> Inputs:
        """The request's inputs, checked against the specs.

        Raises:
          InvalidArgumentError: naming the tensor (unknown, missing, sent
            twice, wrong datatype or shape, contents that do not fit).
        """
        raw = request.raw_input_contents
        if raw and len(raw) != len(request.inputs):
            why = f"holds {len(raw)} entries for {len(request.inputs)} inputs"
            raise errors.InvalidArgumentError.at("raw_input_contents", why, details=f"raw_input_contents {why}")
        found: dict[str, np.ndarray] = {}
        rows = None
        for index, tensor in enumerate(request.inputs):
            spec = self._input_spec(tensor.name, found)
            if raw and tensor.HasField("contents"):
                raise tensor_error(spec.name, "has typed contents, but the request uses raw_input_contents")
            array = self._read_one(spec, tensor, raw[index] if raw else None)
            if rows is not None and array.shape[0] != rows:
                raise tensor_error(spec.name, f"batch {array.shape[0]}, but the inputs before it have batch {rows}")
            rows = array.shape[0]
            found[spec.name] = array
        missing = [t.name for t in self.time_step if t.name not in found]
        if missing:
            raise tensor_error(missing[0], f"missing; the inputs are {[t.name for t in self.time_step]}")
        state = [found.get(t.name) for t in self.state]
        if any(s is not None for s in state) and any(s is None for s in state):
            absent = next(t.name for t, s in zip(self.state, state) if s is None)
            raise tensor_error(absent, "missing: send every state/... input or none")
        return Inputs([found[t.name] for t in self.time_step], state if self.state and state[0] is not None
                      else None, int(rows))

    def _input_spec(self, name: str, found: Mapping[str, Any]) -> TensorSpec:
        spec = self._inputs.get(name)
        if spec is None:
            raise tensor_error(name, f"not an input of this model; its inputs are {[t.name for t in self.inputs]}")
        if name in found:
            raise tensor_error(name, "sent twice")
        return spec

    @staticmethod
    def _read_one(spec: TensorSpec, tensor: Any, raw: bytes | None) -> np.ndarray:
        if tensor.datatype != spec.datatype:
            raise tensor_error(spec.name, f"expected datatype {spec.datatype}, got {tensor.datatype or '(none)'}")
        shape = list(tensor.shape)
        if len(shape) != 1 + len(spec.shape) or tuple(shape[1:]) != spec.shape or shape[0] < 1:
            raise tensor_error(spec.name, f"expected shape {spec.metadata_shape} (batch first, at least 1), "
                                     f"got {shape}")
        try:
            return tensors.read_tensor(spec.datatype, shape, raw, tensor.contents, spec.dtype)
        except ValueError as e:
            raise tensor_error(spec.name, str(e)) from None

    def wanted(self, request: oip_pb.ModelInferRequest, session: bool) -> list[int]:
        """Indices of the outputs to answer with: those requested, else all (but the state in a session).

        Raises:
          InvalidArgumentError: a requested output the model does not have.
        """
        if not request.outputs:
            return [i for i, t in enumerate(self.outputs) if not (session and t.name in self._state_outputs)]
        names = [t.name for t in self.outputs]
        picked = []
        for output in request.outputs:
            if output.name not in self._outputs:
                raise tensor_error(output.name, f"not an output of this model; its outputs are {names}")
            picked.append(names.index(output.name))
        return picked

    def write(self, response: oip_pb.ModelInferResponse, leaves: Sequence[np.ndarray], wanted: Sequence[int]) -> None:
        """Writes the wanted outputs of an answer's leaves (tf.nest order of the PolicyStep) as raw contents.

        Raises:
          InternalError: the policy answered with another structure than its specs.
        """
        if len(leaves) != len(self.outputs):
            raise errors.InternalError(f"the policy answered with {len(leaves)} tensors; its specs have "
                                       f"{len(self.outputs)} ({[t.name for t in self.outputs]})")
        for index in wanted:
            spec, value = self.outputs[index], np.asarray(leaves[index])
            response.outputs.add(name=spec.name, datatype=spec.datatype, shape=value.shape)
            response.raw_output_contents.append(tensors.raw_bytes(value, spec.datatype))

    def metadata(self, response: oip_pb.ModelMetadataResponse) -> None:
        """Fills the inputs, outputs and, in properties, the bounds ("<tensor>.minimum" / ".maximum", JSON)."""
        for target, specs in ((response.inputs, self.inputs), (response.outputs, self.outputs)):
            for spec in specs:
                target.add(name=spec.name, datatype=spec.datatype, shape=spec.metadata_shape)
        for spec in self.inputs + self.outputs:
            if spec.minimum is not None:
                response.properties[f"{spec.name}.minimum"] = _json(spec.minimum)
                response.properties[f"{spec.name}.maximum"] = _json(spec.maximum)
        if self.state:
            response.properties["state_inputs"] = ",".join(t.name for t in self.state)


def _json(value: Any) -> str:
    """A bound as JSON: a number, or nested lists for per-element bounds."""
    array = np.asarray(value)
    return json.dumps(array.tolist() if array.ndim else array.item())
