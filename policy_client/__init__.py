"""Client library of tfa-policy-grpc: RemotePolicy, load(), PolicyClient, VariablePublisher, FanOutPublisher.

The core (the `wire` layer, PolicyClient, the publishers, the errors)
imports without TensorFlow; RemotePolicy and load() need tf_agents and are
imported on first use.
"""

from policy_client import wire
from policy_client.transport.channel import make_channel
from policy_client.client import ActionResult, PolicyClient, PolicyInfo
from policy_client.learner.fanout import FanOutPublisher
from policy_client.learner.publisher import VariablePublisher
from policy_client.transport.security import TOKEN_ENV, TOKEN_FILE_ENV, tls_credentials
from policy_client.wire.errors import (CodecError, DeadlineExceededError, FailedPreconditionError, InternalError,
                                       InvalidArgumentError, PermissionDeniedError, PolicyGrpcError,
                                       PolicyNotFoundError, RemoteError, ResourceExhaustedError, SpecMismatchError,
                                       UnauthenticatedError, UnavailableError, UnimplementedError)
from policy_client.wire.namedtuples import register_namedtuple
from policy_client.wire.standins import PolicySpecs, TimeStep

__all__ = [
    "ActionResult", "CodecError", "DeadlineExceededError", "FailedPreconditionError", "FanOutPublisher",
    "InternalError",
    "InvalidArgumentError", "PermissionDeniedError", "PolicyClient", "PolicyGrpcError", "PolicyInfo",
    "PolicyNotFoundError", "PolicySpecs", "RemoteError", "RemotePolicy", "ResourceExhaustedError",
    "SpecMismatchError", "TOKEN_ENV", "TOKEN_FILE_ENV", "TimeStep", "UnauthenticatedError", "UnavailableError",
    "UnimplementedError", "VariablePublisher", "load", "make_channel", "register_namedtuple", "tls_credentials",
    "wire",
]


def __getattr__(name: str):
    if name in ("RemotePolicy", "load"):
        try:
            if name == "RemotePolicy":
                from policy_client.remote_policy import RemotePolicy as found  # pylint: disable=import-outside-toplevel
            else:
                from policy_client.loader import load as found  # pylint: disable=import-outside-toplevel
        except ModuleNotFoundError as e:
            if e.name is None or e.name.split(".")[0] not in ("tf_agents", "tensorflow"):
                raise
            raise ModuleNotFoundError(
                f"policy_client.{name} needs TF-Agents ({e.name} is not installed): install tfa-policy-grpc "
                "for it; the TF-free PolicyClient needs none", name=e.name) from e
        return found
    raise AttributeError(f"module 'policy_client' has no attribute {name!r}")
