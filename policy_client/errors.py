"""Exceptions of tfa-policy-grpc: one base class, translated at the boundaries.

Spec and argument problems subclass ValueError (or TypeError), as a local
TF-Agents policy raises, so code written against a local policy catches them
unchanged.
"""

from __future__ import annotations

import grpc


class PolicyGrpcError(Exception):
    """Base class of every error this library raises on purpose."""


class CodecError(PolicyGrpcError, ValueError):
    """A value or message cannot be encoded or decoded (names the problem)."""


class RemoteError(PolicyGrpcError):
    """The server answered a call with a non-OK gRPC status.

    Attributes:
      code: The grpc.StatusCode of the answer.
      details: The server's message.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, details: str, code: grpc.StatusCode | None = None):
        super().__init__(details)
        self.details = details
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details}"


class InvalidArgumentError(RemoteError, ValueError):
    """The request does not match the policy's specs (INVALID_ARGUMENT)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class PolicyNotFoundError(RemoteError, LookupError):
    """The server hosts no policy of that name (NOT_FOUND)."""

    code = grpc.StatusCode.NOT_FOUND


class ResourceExhaustedError(RemoteError):
    """The policy's queue or a message size limit is full (RESOURCE_EXHAUSTED)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(RemoteError, ConnectionError):
    """The server cannot be reached or is shutting down (UNAVAILABLE)."""

    code = grpc.StatusCode.UNAVAILABLE


class FailedPreconditionError(RemoteError):
    """The policy is not ready, e.g. not loaded yet (FAILED_PRECONDITION)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class DeadlineExceededError(RemoteError, TimeoutError):
    """The call did not finish within its deadline (DEADLINE_EXCEEDED)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


_BY_CODE = {cls.code: cls for cls in (
    InvalidArgumentError, PolicyNotFoundError, ResourceExhaustedError,
    UnavailableError, FailedPreconditionError, DeadlineExceededError)}


def from_status(code: grpc.StatusCode, details: str) -> RemoteError:
    """Returns the exception for a gRPC status code and message."""
    cls = _BY_CODE.get(code, RemoteError)
    return cls(details, code) if cls is RemoteError else cls(details)


def from_rpc_error(error: grpc.RpcError) -> RemoteError:
    """Returns the exception for a failed call (use as `raise ... from error`)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return from_status(code, details or "")
