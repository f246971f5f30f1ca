"""Where a batch runs: one backend per way a policy arrives.

- `base`: the `Backend` interface every one implements (and `VariableSpec`);
- `py_policy`: any `PyPolicy`, called once per request;
- `eager`: a `TFPolicy` or `PyTFEagerPolicy`, as a traced function;
- `saved_model`: a `PolicySaver` SavedModel directory;
- `functions`: a SavedModel's other functions (`get_metadata`, registered ones);
- `graph`: a `PyTFPolicy` in graph mode, in its own session.

`backend_for` picks the backend for a policy. Nothing here imports
TensorFlow until a TF backend is asked for.
"""

from __future__ import annotations

from typing import Any

from policy_server.backends.base import Backend, UnsupportedSeedError, VariableSpec
from policy_server.backends.py_policy import PyPolicyBackend

__all__ = ["Backend", "PyPolicyBackend", "UnsupportedSeedError", "VariableSpec", "backend_for"]


def backend_for(policy: Any) -> Backend:
    """The backend that hosts `policy` as it is.

    A Backend is itself; a TFPolicy or PyTFEagerPolicy runs on EagerBackend; a
    string is a PolicySaver SavedModel directory; any other PyPolicy runs on
    PyPolicyBackend, called once per request.

    Raises:
      TypeError: a graph-mode PyTFPolicy (build a GraphBackend with its graph)
        or something that is not a policy.
    """
    # pylint: disable=import-outside-toplevel
    from tf_agents.policies import py_policy, py_tf_eager_policy, py_tf_policy, tf_policy

    if isinstance(policy, Backend):
        return policy
    if isinstance(policy, str):
        from policy_server.backends.saved_model import SavedModelBackend

        return SavedModelBackend(policy)
    if isinstance(policy, (tf_policy.TFPolicy, py_tf_eager_policy.PyTFEagerPolicyBase)):
        from policy_server.backends.eager import EagerBackend

        return EagerBackend(policy)
    if isinstance(policy, py_tf_policy.PyTFPolicy):
        raise TypeError("a graph-mode PyTFPolicy needs its graph: serve GraphBackend(policy, graph, policy_dir=...)")
    if isinstance(policy, py_policy.PyPolicy):
        return PyPolicyBackend(policy)
    raise TypeError(f"cannot serve a {type(policy).__name__}: expected a Backend, a TFPolicy, a PyPolicy "
                    "or a SavedModel path")
