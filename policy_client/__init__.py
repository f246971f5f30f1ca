"""Client library of tfa-policy-grpc: codec, transport, RemotePolicy and load().

The core (codec, PolicyClient, errors) imports without TensorFlow; RemotePolicy
and load() need tf_agents and are imported on first use.
"""

from policy_client import errors
from policy_client.client import ActionResult, PolicyClient, PolicyInfo, make_channel
from policy_client.errors import (CodecError, DeadlineExceededError, FailedPreconditionError,
                                  InvalidArgumentError, PolicyGrpcError, PolicyNotFoundError,
                                  RemoteError, ResourceExhaustedError, UnavailableError)
from policy_client.specs import PolicySpecs

__all__ = [
    "ActionResult", "CodecError", "DeadlineExceededError", "FailedPreconditionError",
    "InvalidArgumentError", "PolicyClient", "PolicyGrpcError", "PolicyInfo", "PolicyNotFoundError",
    "PolicySpecs", "RemoteError", "RemotePolicy", "ResourceExhaustedError", "UnavailableError",
    "errors", "load", "make_channel",
]


def __getattr__(name: str):
    if name == "RemotePolicy":
        from policy_client.remote_policy import RemotePolicy  # pylint: disable=import-outside-toplevel

        return RemotePolicy
    if name == "load":
        from policy_client.loader import load  # pylint: disable=import-outside-toplevel

        return load
    raise AttributeError(f"module 'policy_client' has no attribute {name!r}")
