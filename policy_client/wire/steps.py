"""TF-Agents' step tuples and policy specs on the wire.

`TimeStep` <-> `TimeStep`, `PolicyStep` <-> `PolicyStep`, a TimeStep of specs
<-> `TimeStepSpec`, and every spec of a policy <-> `PolicySpecs`. They decode
into the classes registered under TF-Agents' names (see `namedtuples`).
"""

from __future__ import annotations

from typing import Any

from policy_client.wire import nests, specs, tensors
from policy_client.wire.errors import CodecError
from policy_client.wire.generated import types_pb2 as pb
from policy_client.wire.namedtuples import NAMED_TYPES, NamedTupleTypes
from policy_client.wire.standins import PolicySpecs

TIME_STEP = "tf_agents.trajectories.time_step.TimeStep"
POLICY_STEP = "tf_agents.trajectories.policy_step.PolicyStep"
_TIME_STEP_FIELDS = ("step_type", "reward", "discount", "observation")
_POLICY_STEP_FIELDS = ("action", "state", "info")


def time_step_to_proto(time_step: Any) -> pb.TimeStep:
    """Encodes a TimeStep (any object with its four fields).

    Raises:
      CodecError: a field that cannot be encoded (`field` names it).
    """
    msg = pb.TimeStep()
    write_time_step(msg, time_step)
    return msg


def write_time_step(msg: pb.TimeStep, time_step: Any) -> None:
    """Encodes a TimeStep into `msg` in place (see time_step_to_proto)."""
    nests.write_leaf(msg.step_type, time_step.step_type, "time_step.step_type")
    nests.write_leaf(msg.discount, time_step.discount, "time_step.discount")
    nests.write_nest(msg.reward, time_step.reward, path="time_step.reward", depth=1)
    nests.write_nest(msg.observation, time_step.observation, path="time_step.observation", depth=1)


def time_step_from_proto(msg: pb.TimeStep, *, copy: bool = False, named_types: NamedTupleTypes = NAMED_TYPES) -> Any:
    """Decodes a TimeStep message into the registered TimeStep class.

    Raises:
      CodecError: a missing or malformed field (`field` names it).
    """
    fields = {}
    for name in ("step_type", "discount"):
        if not msg.HasField(name):
            raise CodecError(f"time_step.{name} is not set", f"time_step.{name}")
        try:
            fields[name] = tensors.array_from_proto(getattr(msg, name), copy=copy)
        except CodecError as e:
            raise CodecError(f"time_step.{name}: {e}", f"time_step.{name}") from None
    for name in ("reward", "observation"):
        if not msg.HasField(name):
            raise CodecError(f"time_step.{name} is not set", f"time_step.{name}")
        fields[name] = nests.nest_from_proto(getattr(msg, name), copy=copy, path=f"time_step.{name}", depth=1,
                                             named_types=named_types)
    return named_types.make(TIME_STEP, _TIME_STEP_FIELDS, (fields[f] for f in _TIME_STEP_FIELDS))


def policy_step_to_proto(policy_step: Any) -> pb.PolicyStep:
    """Encodes a PolicyStep (action, state, info).

    Raises:
      CodecError: a field that cannot be encoded (`field` names it).
    """
    msg = pb.PolicyStep()
    write_policy_step(msg, policy_step)
    return msg


def write_policy_step(msg: pb.PolicyStep, policy_step: Any) -> None:
    """Encodes a PolicyStep into `msg` in place (see policy_step_to_proto)."""
    for name in _POLICY_STEP_FIELDS:
        nests.write_nest(getattr(msg, name), getattr(policy_step, name), path=f"policy_step.{name}", depth=1)


def policy_step_from_proto(msg: pb.PolicyStep, *, copy: bool = False, named_types: NamedTupleTypes = NAMED_TYPES) -> Any:
    """Decodes a PolicyStep; unset state/info decode as `()`.

    Raises:
      CodecError: a missing action or a malformed field.
    """
    if not msg.HasField("action"):
        raise CodecError("policy_step.action is not set", "policy_step.action")
    values = (nests.nest_from_proto(getattr(msg, name), copy=copy, path=f"policy_step.{name}", depth=1,
                                    named_types=named_types) if msg.HasField(name) else ()
              for name in _POLICY_STEP_FIELDS)
    return named_types.make(POLICY_STEP, _POLICY_STEP_FIELDS, values)


def time_step_spec_to_proto(spec: Any) -> pb.TimeStepSpec:
    """Encodes a TimeStep of specs.

    step_type and discount stay unset when they are not specs: TF-Agents'
    default `ts.time_step_spec()` (no observation spec) has `()` everywhere.
    """
    msg = pb.TimeStepSpec()
    for name in ("step_type", "discount"):
        if specs.is_spec(getattr(spec, name)):
            getattr(msg, name).CopyFrom(specs.spec_to_proto(getattr(spec, name)))
    nests.write_nest(msg.reward, spec.reward, path="time_step_spec.reward")
    nests.write_nest(msg.observation, spec.observation, path="time_step_spec.observation")
    return msg


def time_step_spec_from_proto(msg: pb.TimeStepSpec, named_types: NamedTupleTypes = NAMED_TYPES) -> Any:
    """Decodes a TimeStepSpec into a TimeStep of specs.

    Raises:
      CodecError: a missing or malformed field.
    """
    for name in ("reward", "observation"):
        if not msg.HasField(name):
            raise CodecError(f"time_step_spec.{name} is not set", f"time_step_spec.{name}")
    leaf = lambda name: specs.spec_from_proto(getattr(msg, name), named_types) if msg.HasField(name) else ()  # noqa: E731
    fields = {"step_type": leaf("step_type"),
              "reward": nests.nest_from_proto(msg.reward, path="time_step_spec.reward", named_types=named_types),
              "discount": leaf("discount"),
              "observation": nests.nest_from_proto(msg.observation, path="time_step_spec.observation",
                                                   named_types=named_types)}
    return named_types.make(TIME_STEP, _TIME_STEP_FIELDS, (fields[f] for f in _TIME_STEP_FIELDS))


def policy_specs_to_proto(policy_specs: PolicySpecs) -> pb.PolicySpecs:
    """Encodes every spec of a policy (collect_data_spec only when not None)."""
    msg = pb.PolicySpecs(time_step_spec=time_step_spec_to_proto(policy_specs.time_step_spec))
    for name in ("action_spec", "policy_state_spec", "info_spec", "collect_data_spec"):
        value = getattr(policy_specs, name)
        if value is not None:
            nests.write_nest(getattr(msg, name), value, path=name)
    return msg


def policy_specs_from_proto(msg: pb.PolicySpecs, named_types: NamedTupleTypes = NAMED_TYPES) -> PolicySpecs:
    """Decodes PolicySpecs; unset state/info specs decode as `()`.

    Raises:
      CodecError: a missing time_step_spec/action_spec or a malformed spec.
    """
    for name in ("time_step_spec", "action_spec"):
        if not msg.HasField(name):
            raise CodecError(f"policy_specs.{name} is not set", name)

    def optional(name: str, default: Any) -> Any:
        if not msg.HasField(name):
            return default
        return nests.nest_from_proto(getattr(msg, name), path=name, named_types=named_types)

    return PolicySpecs(
        time_step_spec=time_step_spec_from_proto(msg.time_step_spec, named_types),
        action_spec=optional("action_spec", None), policy_state_spec=optional("policy_state_spec", ()),
        info_spec=optional("info_spec", ()), collect_data_spec=optional("collect_data_spec", None))
