"""A policy's plans: its request side (time step + state) and answer side (policy step), compiled once.

Both ends use them on the hot path: the client checks and encodes a
conforming time step leaf by leaf and decodes the answer the same way; the
server decodes a conforming request straight into flat leaves (ready to stack
into a batch) and encodes each answer from its rows. Whatever does not fit a
plan returns None, and the caller takes the generic codec, which names the
problem.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tree

from policy_client.wire import tensors
from policy_client.wire.generated import types_pb2 as pb
from policy_client.wire.nest_plan import NestPlan, read_tensor
from policy_client.wire.namedtuples import NAMED_TYPES, NamedTupleTypes
from policy_client.wire.steps import POLICY_STEP


class _LeafSpec:
    """dtype enum, numpy dtype and shape of one leaf spec."""

    def __init__(self, spec: Any):
        self.dtype = np.dtype(spec.dtype)
        self.enum = tensors.dtype_to_proto(self.dtype)[0]
        self.shape = tuple(int(d) for d in spec.shape)
        self.numeric = self.enum != pb.DTYPE_STRING


class RequestPlan:
    """(time_step_spec, policy_state_spec) compiled; leaves in dm-tree order of (time_step, state).

    Args:
      time_step_spec: a TimeStep of array specs.
      policy_state_spec: the state spec nest (`()` for stateless policies).
    """

    def __init__(self, time_step_spec: Any, policy_state_spec: Any, named_types: NamedTupleTypes = NAMED_TYPES):
        self.structure = (time_step_spec, policy_state_spec)
        # A TimeStep spec without step_type / discount specs (TF-Agents' default
        # `ts.time_step_spec()`) describes no request: nothing conforms to it.
        self.usable = all(hasattr(getattr(time_step_spec, f, None), "dtype") for f in ("step_type", "discount"))
        if not self.usable:
            self.stateful, self.numeric = not NestPlan(policy_state_spec, named_types).empty, False
            return
        self._step_type = _LeafSpec(time_step_spec.step_type)
        self._discount = _LeafSpec(time_step_spec.discount)
        self._reward = NestPlan(time_step_spec.reward, named_types)
        self._observation = NestPlan(time_step_spec.observation, named_types)
        self._state = NestPlan(policy_state_spec, named_types)
        self._all = NestPlan(self.structure, named_types)
        self.stateful = not self._state.empty
        self.numeric = self._all.numeric
        n_reward, n_obs = len(self._reward.specs), len(self._observation.specs)
        self._cuts = (1, 1 + n_reward, 2 + n_reward, 2 + n_reward + n_obs)

    def leaves(self, time_step: Any, policy_state: Any, outer: tuple[int, ...] = ()) -> list[np.ndarray] | None:
        """The leaves of a conforming (time_step, policy_state), else None (client side)."""
        if not self.usable:
            return None
        return self._all.leaves((time_step, policy_state if self.stateful else ()), outer)

    def write(self, time_step_msg: pb.TimeStep, state_msg: pb.Nest, leaves: Sequence[np.ndarray]) -> None:
        """Encodes conforming leaves into a TimeStep message and a state Nest."""
        a, b, c, d = self._cuts
        tensors.write_array(time_step_msg.step_type, leaves[0])
        self._reward.write(time_step_msg.reward, leaves[a:b])
        tensors.write_array(time_step_msg.discount, leaves[b])
        self._observation.write(time_step_msg.observation, leaves[c:d])
        self._state.write(state_msg, leaves[d:])

    def read(self, time_step_msg: pb.TimeStep, state_msg: pb.Nest | None,
             outer: tuple[int, ...] = ()) -> list[np.ndarray] | None:
        """The leaves of a conforming request (read-only views), else None (server side).

        `state_msg` None means the request carries no state; that fits only a
        stateless policy.
        """
        if not self.numeric:
            return None
        step_type = read_tensor(time_step_msg.step_type, self._step_type.enum, self._step_type.dtype,
                                outer + self._step_type.shape)
        discount = read_tensor(time_step_msg.discount, self._discount.enum, self._discount.dtype,
                               outer + self._discount.shape)
        if step_type is None or discount is None:
            return None
        reward = self._reward.read(time_step_msg.reward, outer)
        observation = self._observation.read(time_step_msg.observation, outer)
        if reward is None or observation is None:
            return None
        if state_msg is None:
            state = None if self.stateful else []
        else:
            state = self._state.read(state_msg, outer)
        if state is None:
            return None
        return [step_type, *reward, discount, *observation, *state]

    def unflatten(self, leaves: Sequence[Any]) -> tuple[Any, Any]:
        """(time_step, policy_state) in the specs' structure."""
        if not self.usable:
            return tree.unflatten_as(self.structure, list(leaves))
        return self._all.unflatten(leaves)


class AnswerPlan:
    """(action_spec, policy_state_spec, info_spec) compiled as a PolicyStep; leaves in dm-tree order."""

    def __init__(self, action_spec: Any, policy_state_spec: Any, info_spec: Any, named_types: NamedTupleTypes = NAMED_TYPES):
        fields = ("action", "state", "info")
        self.structure = named_types.make(POLICY_STEP, fields, (action_spec, policy_state_spec, info_spec))
        self._all = NestPlan(self.structure, named_types)
        self._parts = [NestPlan(s, named_types) for s in (action_spec, policy_state_spec, info_spec)]
        counts = [len(p.specs) for p in self._parts]
        self._cuts = (counts[0], counts[0] + counts[1])
        # The one encoding of each part with no leaves (a stateless policy's `()` state, an empty info):
        # a part whose bytes are these is read without walking its structure (4-5 us each per answer).
        self._no_leaves = [_encoding(p) if p.empty else None for p in self._parts]

    def fits(self, step: Any) -> bool:
        """Whether a policy step has exactly the specs' structure (its leaves may be any arrays)."""
        flat = self._all.structure_leaves(step)
        return flat is not None and all(isinstance(x, (np.ndarray, np.generic)) for x in flat)

    def write(self, msg: pb.PolicyStep, leaves: Sequence[np.ndarray]) -> None:
        """Encodes the leaves of a step that fits (see `fits`) into a PolicyStep message."""
        a, b = self._cuts
        self._parts[0].write(msg.action, leaves[:a])
        self._parts[1].write(msg.state, leaves[a:b])
        self._parts[2].write(msg.info, leaves[b:])

    @property
    def cut_points(self) -> tuple[int, int]:
        """Where the state's leaves start and end among a step's leaves (action, state, info)."""
        return self._cuts

    def write_without_state(self, msg: pb.PolicyStep, leaves: Sequence[np.ndarray]) -> None:
        """As `write`, with the state left `()` (a server-held session keeps it)."""
        a, b = self._cuts
        self._parts[0].write(msg.action, leaves[:a])
        msg.state.tuple.SetInParent()
        self._parts[2].write(msg.info, leaves[b:])

    def unflatten(self, leaves: Sequence[Any]) -> Any:
        """The PolicyStep of its leaves (dm-tree order), in the specs' structure."""
        return self._all.unflatten(list(leaves))

    def read(self, msg: pb.PolicyStep, outer: tuple[int, ...] = (), copy: bool = True) -> Any | None:
        """The PolicyStep of a message whose every leaf has its spec's dtype and shape, else None."""
        parts = []
        for name, plan, no_leaves in zip(("action", "state", "info"), self._parts, self._no_leaves):
            if not msg.HasField(name):
                if plan.empty and name != "action":
                    parts.append([])
                    continue
                return None
            part = getattr(msg, name)
            if no_leaves is not None and part.SerializeToString() == no_leaves:
                parts.append([])
                continue
            leaves = plan.read(part, outer)
            if leaves is None:
                return None
            parts.append([x.copy() for x in leaves] if copy else leaves)
        return self._all.unflatten([x for part in parts for x in part])


def _encoding(plan: NestPlan) -> bytes:
    """The bytes of the Nest message that `plan` (one with no leaves) writes for its value."""
    msg = pb.Nest()
    plan.write(msg, [])
    return msg.SerializeToString()
