"""A CartPole policy whose episodes hold both actions, to check that clients decode either value.

The greedy demo policy (a random network) answers 0 to nearly every
observation of an episode (all 0 over the 10 steps of seed 0), so a client
that decoded every action as 0 would pass a comparison on its episodes.
BalancingPolicy keeps the pole up for the 200 steps of an episode, answering
0 and 1 about equally often.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tf_agents.policies import py_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step

BALANCING = "cartpole_balancing"


def balancing_action(observation: np.ndarray) -> np.ndarray:
    """1 (push right) when the pole leans or turns right, theta + theta_dot > 0; else 0 (left)."""
    observation = np.asarray(observation, np.float32)
    return (observation[..., 2] + observation[..., 3] > 0).astype(np.int64)


class BalancingPolicy(py_policy.PyPolicy):
    """CartPole's specs (stateless, no info); the action of `balancing_action`, for any outer dimensions."""

    def __init__(self):
        from examples.cartpole import ACTION_SPEC, cartpole_time_step_spec  # pylint: disable=import-outside-toplevel

        super().__init__(tensor_spec.to_nest_array_spec(cartpole_time_step_spec()),
                         tensor_spec.to_nest_array_spec(ACTION_SPEC))

    def _action(self, time_step: Any, policy_state: Any) -> policy_step.PolicyStep:
        return policy_step.PolicyStep(balancing_action(time_step.observation), policy_state, ())
