"""Exceptions <-> gRPC status with the standard rich error model (google.rpc.Status).

Both sides use this one mapping. The server turns a `RemoteError` (or any
exception) into a `google.rpc.Status` whose details carry a
`google.rpc.BadRequest` (one field violation per offending field) and a
`google.rpc.ErrorInfo` (the reason), and a `google.rpc.RetryInfo` when the
call may be sent again after a delay (a full queue); it travels in the `grpc-status-details-bin`
trailer of a failed call, or in `ActionResponse.error` on a stream. The client
turns it back into the same exception class. Any language reads the details
with its own googleapis protos.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from policy_client.wire import errors, raised

DOMAIN = "tfa-policy-grpc"
# Status messages travel in HTTP/2 trailers twice (grpc-message and the
# details), and gRPC's default metadata limit is 8 KiB: client-supplied text
# echoed in a message (a policy name, a field path) is cut to fit.
MAX_MESSAGE_CHARS = 1024
# On a stream the status travels in ActionResponse.error, a message field with
# no metadata limit: an exception's message arrives whole up to this size.
MAX_STREAM_MESSAGE_CHARS = 64 * 1024
MAX_FIELD_CHARS = 256
MAX_FIELDS = 8
_CODE_OF_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`text`, cut to at most `limit` characters with a marker of what was cut."""
    if len(text) <= limit:
        return text
    marker = f"... [{len(text) - limit} more characters]"
    return text[:max(limit - len(marker), 0)] + marker


def code_of(value: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a numeric code (UNKNOWN for values gRPC does not define)."""
    return _CODE_OF_VALUE.get(value, grpc.StatusCode.UNKNOWN)


def as_remote_error(error: BaseException) -> errors.RemoteError:
    """The RemoteError an exception is answered with.

    RemoteErrors are themselves; field errors (codec, spec mismatch) become
    INVALID_ARGUMENT naming their field; anything else is an exception of the
    hosted policy (or a server defect), answered by `raised.from_policy`: its
    code follows its type, its type is its reason and travels along.
    """
    if isinstance(error, errors.RemoteError):
        return error
    if isinstance(error, errors.FieldError):
        return errors.InvalidArgumentError(str(error), fields=field_violations(error), reason=type(error).__name__)
    return raised.from_policy(error)


def field_violations(error: errors.FieldError) -> tuple[tuple[str, str], ...]:
    """The (field, description) of a field error; the description does not repeat the field."""
    if not error.field:
        return ()
    text = str(error)
    prefix = f"{error.field}: "
    return ((error.field, text[len(prefix):] if text.startswith(prefix) else text),)


def to_status(error: BaseException, limit: int = MAX_MESSAGE_CHARS) -> status_pb2.Status:
    """The google.rpc.Status of an exception (see as_remote_error), its message cut to `limit`."""
    remote = as_remote_error(error)
    status = status_pb2.Status(code=remote.code.value[0], message=truncate(remote.details, limit))
    if remote.fields:
        bad_request = error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=truncate(field, MAX_FIELD_CHARS),
                                                        description=truncate(text, MAX_FIELD_CHARS))
            for field, text in remote.fields[:MAX_FIELDS]])
        status.details.add().Pack(bad_request)
    if remote.reason or remote.exception_type:
        info = error_details_pb2.ErrorInfo(reason=truncate(remote.reason, MAX_FIELD_CHARS), domain=DOMAIN)
        if remote.exception_type:
            info.metadata[raised.METADATA_KEY] = remote.exception_type
        status.details.add().Pack(info)
    if remote.retry_delay is not None:
        retry = error_details_pb2.RetryInfo()
        retry.retry_delay.FromNanoseconds(max(int(remote.retry_delay * 1e9), 0))
        status.details.add().Pack(retry)
    return status


def from_status(status: status_pb2.Status) -> errors.RemoteError:
    """The exception for a google.rpc.Status, with its field violations and reason."""
    code = code_of(status.code)
    fields: list[tuple[str, str]] = []
    reason = exception_type = ""
    retry_delay = None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields += [(v.field, v.description) for v in bad_request.field_violations]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
            exception_type = info.metadata.get(raised.METADATA_KEY, "")
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay = retry.retry_delay.ToNanoseconds() / 1e9
    cls = errors.BY_CODE.get(code, errors.RemoteError)
    error = cls(status.message, None if cls is not errors.RemoteError else code, fields=fields, reason=reason,
                exception_type=exception_type, retry_delay=retry_delay)
    return raised.with_local_type(error) if exception_type else error


def from_rpc_error(error: grpc.RpcError) -> errors.RemoteError:
    """The exception for a failed call, read from its rich status when it has one."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else str(error)) or ""
    rich = None
    if hasattr(error, "trailing_metadata"):
        try:
            rich = rpc_status.from_call(error)
        except ValueError:  # a peer that sent a details trailer inconsistent with its status
            rich = None
    if rich is not None:
        return from_status(rich)
    return from_status(status_pb2.Status(code=code.value[0], message=details))


def trailing_metadata(status: status_pb2.Status) -> tuple[tuple[str, Any], ...]:
    """The trailer that carries `status` on a failed call."""
    return rpc_status.to_status(status).trailing_metadata


async def abort(context: grpc.aio.ServicerContext, error: BaseException) -> None:
    """Ends a call with the status of `error` (always raises, as context.abort does).

    Where the handler can return instead, `end` ends the call the same way:
    each context.abort keeps about 100 bytes of the server's memory for good
    (grpcio 1.62), which a client sending bad requests could pile up.
    """
    status = to_status(error)
    await context.abort(code_of(status.code), status.message, trailing_metadata(status))


def end(context: grpc.aio.ServicerContext, error: BaseException) -> None:
    """Sets the status of `error` on a call whose handler then returns (None, or ends its stream)."""
    status = to_status(error)
    context.set_code(code_of(status.code))
    context.set_details(status.message)
    context.set_trailing_metadata(trailing_metadata(status))

