"""Any `py_policy.PyPolicy`, served as it is: called once per request (or per batch, when it is batched)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tree

from policy_server.backends.base import Backend, specs_of, to_numpy


class PyPolicyBackend(Backend):
    """Any `py_policy.PyPolicy`, called as it is.

    Args:
      policy: the policy.
      batched: True when the policy takes time steps with an outer batch
        dimension (e.g. `PyTFEagerPolicy(..., batch_time_steps=False)`): the
        batcher then stacks many requests into one call. False (default) calls
        the policy once per request, with the request's values unchanged.
      version: the initial policy version.
    """

    kind = "py_policy"

    def __init__(self, policy: Any, *, batched: bool = False, version: int = 0):
        super().__init__(specs_of(policy), version)
        self.policy = policy
        self.batchable = batched
        self.supports_seed = _accepts_seed(policy)

    def action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        # A local policy gets the caller's own (writable) arrays; requests are
        # read as read-only views of their bytes, so those are copied.
        time_step, policy_state = tree.map_structure(_writable, (time_step, policy_state))
        step = self.policy.action(time_step, policy_state, seed=seed) if seed is not None else \
            self.policy.action(time_step, policy_state)
        return to_numpy(step)

    def initial_state(self, batch_size: int | None) -> Any:
        return to_numpy(self.policy.get_initial_state(batch_size))

    def local_action(self, time_step: Any, policy_state: Any, seed: int | None = None) -> Any:
        # Exactly the local call: a policy whose _action takes no seed raises
        # TypeError here, as it does locally.
        step = self.policy.action(time_step, policy_state, seed=seed) if seed is not None else \
            self.policy.action(time_step, policy_state)
        return to_numpy(step)


def _writable(value: Any) -> Any:
    return np.array(value) if isinstance(value, np.ndarray) and not value.flags.writeable else value


def _accepts_seed(policy: Any) -> bool:
    """Whether `policy.action(..., seed=...)` can work: `_action` takes a seed.

    PyPolicy.action passes a seed on to `_action(..., seed=seed)`, which many
    policies do not declare (a TypeError), and PyTFPolicy refuses
    ("`seed` is passed to the class as an argument").
    """
    import inspect  # pylint: disable=import-outside-toplevel

    from tf_agents.policies import py_tf_policy  # pylint: disable=import-outside-toplevel

    if isinstance(policy, py_tf_policy.PyTFPolicy):
        return False
    try:
        params = inspect.signature(policy._action).parameters  # pylint: disable=protected-access
    except (AttributeError, TypeError, ValueError):
        return True  # cannot tell: let the call decide
    return "seed" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
