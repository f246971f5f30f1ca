"""Registers TF-Agents' own classes with the codec (imports tf_agents, hence TensorFlow).

After `register()`, time steps, policy steps, trajectories, TF-Agents' policy
info tuples and array specs decode into TF-Agents' classes instead of the
numpy-only stand-ins. RemotePolicy and the server call it on import.
"""

from __future__ import annotations

from policy_client.wire.namedtuples import NAMED_TYPES, NamedTupleTypes


def register(named_types: NamedTupleTypes = NAMED_TYPES) -> None:
    """Makes `named_types` decode into TF-Agents' classes."""
    # pylint: disable=import-outside-toplevel
    from tf_agents.policies import utils as policy_utils
    from tf_agents.specs import array_spec
    from tf_agents.trajectories import policy_step, time_step, trajectory

    named_types.register_spec_classes(array_spec.ArraySpec, array_spec.BoundedArraySpec)
    for cls in (time_step.TimeStep, policy_step.PolicyStep, policy_step.PolicyInfo, trajectory.Trajectory,
                trajectory.Transition, policy_utils.PolicyInfo, policy_utils.PerArmPolicyInfo):
        named_types.register_namedtuple(cls)
