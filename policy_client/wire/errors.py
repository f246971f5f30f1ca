"""The one exception vocabulary of tfa-policy-grpc, shared by client and server.

Every error this library raises on purpose is a `PolicyGrpcError`. Errors that
travel as a gRPC status are `RemoteError`s: the server raises them, the
`status` module turns them into a `google.rpc.Status` and back, and the client
re-raises the same class. Spec and argument problems subclass `ValueError`, as
a local TF-Agents policy raises, so code written against a local policy
catches them unchanged.
"""

from __future__ import annotations

from typing import Any, Sequence

import grpc


class PolicyGrpcError(Exception):
    """Base class of every error this library raises on purpose."""


class FieldError(PolicyGrpcError, ValueError):
    """A value that does not fit its field.

    Attributes:
      field: the path of the offending field, e.g. "time_step.observation"
        (empty when the problem is not in one field).
    """

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


class CodecError(FieldError):
    """A value or message cannot be encoded or decoded (names the problem)."""


class NotANestError(CodecError, TypeError, AttributeError):
    """Something that is not a nest of arrays (any object, a mock, a module) where one belongs; `field` says where.

    Locally, TF-Agents' policies raise a ValueError, a TypeError or an
    AttributeError for such a value, depending on the policy (a TF policy
    checks the nest's structure; a Python policy reads `time_step.step_type`).
    The client cannot send the value to find out, so this error is all three:
    the handler written for the local policy catches it.
    """


class SpecMismatchError(FieldError):
    """A value does not match its spec; the message names the field."""


class RemoteError(PolicyGrpcError):
    """An error that travels as a gRPC status (non-OK).

    Attributes:
      code: the grpc.StatusCode it travels with.
      details: the message.
      fields: (field path, description) pairs; they travel as
        google.rpc.BadRequest field violations.
      reason: a short machine-readable cause (google.rpc.ErrorInfo.reason),
        e.g. the Python exception type a hosted policy raised.
      exception_type: for an exception the hosted policy raised, the portable
        type it travels as, e.g. "builtins.ValueError" (see `raised`); the
        client raises a class deriving from that type too.
      retry_delay: seconds after which the same call may succeed
        (google.rpc.RetryInfo), e.g. once a full queue has drained; None: no hint.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    retry_delay: float | None = None

    def __init__(self, details: str, code: grpc.StatusCode | None = None, *,
                 fields: Sequence[tuple[str, str]] = (), reason: str = "", exception_type: str = "",
                 retry_delay: float | None = None):
        super().__init__(details)
        self.fill(details, code, fields, reason, exception_type)
        self.retry_delay = retry_delay

    @classmethod
    def at(cls, field: str, text: str, *, details: str | None = None, **kwargs: Any) -> "RemoteError":
        """The error about one field: the message "FIELD: TEXT", and one field violation (FIELD, TEXT).

        Args:
          field: the path of the offending field, e.g. "time_step.observation" or "seed".
          text: what is wrong with it (without the field's name).
          details: the message, when it is not "FIELD: TEXT".
          **kwargs: `reason`, `exception_type`.
        """
        return cls(f"{field}: {text}" if details is None else details, fields=((field, text),), **kwargs)

    def fill(self, details: str, code: grpc.StatusCode | None, fields: Sequence[tuple[str, str]],
             reason: str, exception_type: str) -> None:
        """Sets the attributes (also for classes whose other bases need their own __init__)."""
        self.details = details
        self.fields = tuple(fields)
        self.reason = reason
        self.exception_type = exception_type
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        # An exception the hosted policy raised reads as it would locally.
        return self.details if self.exception_type else f"{self.code.name}: {self.details}"


class InvalidArgumentError(RemoteError, ValueError):
    """The request does not match the policy's specs (INVALID_ARGUMENT)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class PolicyNotFoundError(RemoteError, LookupError):
    """The server hosts no policy of that name (NOT_FOUND)."""

    code = grpc.StatusCode.NOT_FOUND


class ResourceExhaustedError(RemoteError):
    """The policy's queue or a message size limit is full (RESOURCE_EXHAUSTED).

    A full queue says so with the reason QUEUE_FULL and a `retry_delay`
    (google.rpc.RetryInfo): the clients send the call again after it, within
    their deadline (to another replica where the target has several).
    """

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(RemoteError, ConnectionError):
    """The server cannot be reached or is shutting down (UNAVAILABLE)."""

    code = grpc.StatusCode.UNAVAILABLE


class FailedPreconditionError(RemoteError):
    """The policy is not ready or refuses the operation (FAILED_PRECONDITION)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class DeadlineExceededError(RemoteError, TimeoutError):
    """The call did not finish within its deadline (DEADLINE_EXCEEDED)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class InternalError(RemoteError):
    """The server failed to answer, e.g. the hosted policy raised (INTERNAL)."""

    code = grpc.StatusCode.INTERNAL


class UnimplementedError(RemoteError):
    """The server or the hosted policy does not implement the operation (UNIMPLEMENTED)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class UnauthenticatedError(RemoteError, PermissionError):
    """The call carries no valid token (UNAUTHENTICATED)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(RemoteError, PermissionError):
    """The token's role may not make this call, e.g. an actor pushing weights (PERMISSION_DENIED)."""

    code = grpc.StatusCode.PERMISSION_DENIED


# ErrorInfo.reason of a request refused because its policy's queue is full.
QUEUE_FULL = "QUEUE_FULL"

BY_CODE: dict[grpc.StatusCode, type[RemoteError]] = {cls.code: cls for cls in (
    InvalidArgumentError, PolicyNotFoundError, ResourceExhaustedError, UnavailableError,
    FailedPreconditionError, DeadlineExceededError, InternalError, UnimplementedError,
    UnauthenticatedError, PermissionDeniedError)}
