"""The policy server of tfa-policy-grpc: hosts TF-Agents policies with batched inference.

Public names (imported on first use, so that `policy-server --help` loads no
TensorFlow): PolicyServer, BackgroundServer, ServerConfig, PolicyConfig,
BatchingConfig, Backend, PyPolicyBackend, EagerBackend, SavedModelBackend,
GraphBackend, backend_for, WeightUpdate.

The package is in wings, one folder per concept (docs/architecture.md): a
request enters through a front door (`native`, `shm`, `oip`), is admitted
once (`admission`), waits and is batched in the `engine`, runs on one of the
`backends`; `weights` change between batches; `telemetry` and `cli` serve
operators.
"""

import importlib

_PUBLIC = {
    "PolicyServer": "policy_server.server", "BackgroundServer": "policy_server.server",
    "ServerConfig": "policy_server.config", "PolicyConfig": "policy_server.config",
    "BatchingConfig": "policy_server.config",
    "Backend": "policy_server.backends", "PyPolicyBackend": "policy_server.backends",
    "VariableSpec": "policy_server.backends", "backend_for": "policy_server.backends",
    "EagerBackend": "policy_server.backends.eager", "SavedModelBackend": "policy_server.backends.saved_model",
    "GraphBackend": "policy_server.backends.graph", "WeightUpdate": "policy_server.weights.swapper",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'policy_server' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
