"""The policy server of tfa-policy-grpc: hosts TF-Agents policies with batched inference.

Public names (imported on first use, so that `policy-server --help` loads no
TensorFlow): PolicyServer, BackgroundServer, ServerConfig, BatchingConfig,
Backend, PyPolicyBackend, EagerBackend, SavedModelBackend, GraphBackend,
backend_for, WeightUpdate.
"""

import importlib

_PUBLIC = {
    "PolicyServer": "policy_server.server", "BackgroundServer": "policy_server.server",
    "ServerConfig": "policy_server.config", "BatchingConfig": "policy_server.config",
    "Backend": "policy_server.backend", "PyPolicyBackend": "policy_server.backend",
    "VariableSpec": "policy_server.backend", "EagerBackend": "policy_server.tf_backends",
    "SavedModelBackend": "policy_server.tf_backends", "GraphBackend": "policy_server.tf_backends",
    "backend_for": "policy_server.tf_backends", "WeightUpdate": "policy_server.weights",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'policy_server' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
