"""Registers every service of the server's port (the PolicyService, the OIP service, the shared-memory service,
health and reflection) with tolerant request parsing.

gRPC deserializes a request before the handler runs; bytes that are not the
message (or nest deeper than protobuf's limit of 100) would fail as an opaque
UNKNOWN or INTERNAL error, with a traceback in the log for each. Here they
parse into `Malformed`: the project's own handlers answer it with
INVALID_ARGUMENT (per message on its streams), and `add_guarded` wraps a
servicer that does not know it (gRPC's health and reflection servicers, the
shared-memory service) so that a malformed request ends its call with
INVALID_ARGUMENT, and nothing is logged.

A message over the server's message limit is one too: gRPC's own limit is
set to twice the server's (`transport_limit`), and a message between the two
parses into a `Malformed` that answers RESOURCE_EXHAUSTED, so a stream
survives it (beyond twice the limit, gRPC ends the call itself). A malformed
message keeps its `request_id` when its top-level fields can be read that far,
so a stream's error answer says which request it was.

Every layer that consumes a client stream (the handlers, the metrics
interceptor, `guarded`) reads it through `client_stream`, with
`context.read()`, never through the async generator that grpc.aio hands the
handler (see `ClientStream`).
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Sequence

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass

from policy_client.wire import errors, status
from policy_client.wire.generated import policy_service_pb2 as service_pb


class Malformed:
    """Stands in for a request whose bytes did not parse, or were over the message limit.

    Attributes:
      message: what is wrong.
      request_id: the request's `request_id` field, where it could be read (else 0).
      too_large: the message is over the server's message limit (RESOURCE_EXHAUSTED).
    """

    def __init__(self, message: str, request_id: int = 0, too_large: bool = False):
        self.message, self.request_id, self.too_large = message, request_id, too_large

    def error(self) -> errors.RemoteError:
        if self.too_large:
            return errors.ResourceExhaustedError(self.message, reason="MessageTooLarge")
        return errors.InvalidArgumentError(self.message, reason="DecodeError")


def transport_limit(max_message_bytes: int) -> int:
    """gRPC's own receive limit for a server whose messages may be `max_message_bytes` long."""
    return min(2 * max_message_bytes, 2**31 - 1)


def _tolerant_parser(message_type: Any, max_bytes: int | None = None) -> Any:
    field = message_type.DESCRIPTOR.fields_by_name.get("request_id")
    number = field.number if field is not None and field.type == field.TYPE_UINT64 else None

    def parse(data: bytes) -> Any:
        if max_bytes is not None and len(data) > max_bytes:
            return Malformed(f"{message_type.DESCRIPTOR.name} of {len(data)} bytes is over the server's message "
                             f"limit of {max_bytes} bytes: send fewer rows per call", _read_varint_field(data, number),
                             too_large=True)
        try:
            return message_type.FromString(data)
        except DecodeError as e:
            return Malformed(f"malformed {message_type.DESCRIPTOR.name}: {e} (not this message, or nested "
                             "deeper than protobuf's limit of 100 messages)", _read_varint_field(data, number))

    return parse


def _read_varint_field(data: bytes, number: int | None) -> int:
    """The value of top-level varint field `number` in protobuf bytes, read until it or a problem is found (0)."""
    if number is None:
        return 0
    position, size = 0, len(data)

    def varint() -> int:
        nonlocal position
        value = shift = 0
        while position < size and shift < 64:
            byte = data[position]
            position += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise ValueError("truncated varint")

    try:
        while position < size:
            tag = varint()
            kind, field = tag & 7, tag >> 3
            if kind == 0:
                value = varint()
                if field == number:
                    return value
            elif kind == 2:
                length = varint()  # read first: `position += varint()` would add to the position before it
                position += length
            elif kind in (1, 5):
                position += 8 if kind == 1 else 4
            else:
                return 0
    except ValueError:
        return 0
    return 0


logger = logging.getLogger(__name__)


class ClientStream:
    """The requests of a client stream, read with `context.read()` (an async iterator).

    grpc.aio hands a handler its requests as an async generator. One that a
    call ends while it is suspended (an abort after the first of a push's
    messages, say) keeps 1.5 to 4 KB of the call's memory for good (grpcio
    1.62: every such PushVariables of the fuzz run, linear in their number);
    `context.read()` reads the same messages, and the same abort frees
    everything. So the generator is never started: the first layer reads
    with `context.read()`, and each layer above it gets a `ClientStream` over
    the one below (`source`).

    Args:
      context: the call's ServicerContext.
      source: an async iterable of the requests (a layer's own); None: context.read().
    """

    def __init__(self, context: grpc.aio.ServicerContext, source: Any = None):
        self._context = context
        self._source = None if source is None else source.__aiter__()

    def __aiter__(self) -> "ClientStream":
        return self

    async def __anext__(self) -> Any:
        if self._source is not None:
            return await self._source.__anext__()
        request = await self._context.read()
        if request is grpc.aio.EOF:
            raise StopAsyncIteration
        return request


def client_stream(request_iterator: Any, context: grpc.aio.ServicerContext) -> ClientStream:
    """What a handler given `request_iterator` reads: the layer's below if it is one, else context.read()."""
    return request_iterator if isinstance(request_iterator, ClientStream) else ClientStream(context)


def unary(method: Any) -> Any:
    """Wraps a unary handler: Malformed requests and errors end the call with their status."""

    @functools.wraps(method)
    async def handler(self, request, context):
        try:
            if isinstance(request, Malformed):
                raise request.error()
            return await method(self, request, context)
        except errors.RemoteError as e:
            status.end(context, e)
        except Exception as e:  # pylint: disable=broad-except
            # Never UNKNOWN: a policy's exception travels with its type, a defect as INTERNAL.
            logger.exception("unexpected error in %s", method.__name__)
            status.end(context, e)
        return None

    return handler


def guarded(method: Any, kind: tuple[bool, bool]) -> Any:
    """`method` (a servicer's handler of streaming `kind`) with Malformed requests answered INVALID_ARGUMENT."""
    client_streaming, server_streaming = kind
    if client_streaming:
        def requests(request_iterator, context) -> ClientStream:
            async def checked():
                async for request in client_stream(request_iterator, context):
                    if isinstance(request, Malformed):
                        await status.abort(context, request.error())
                    yield request
            return ClientStream(context, checked())

        if server_streaming:
            async def stream_stream(request_iterator, context):
                async for response in method(requests(request_iterator, context), context):
                    yield response
            return stream_stream

        async def stream_unary(request_iterator, context):
            return await method(requests(request_iterator, context), context)
        return stream_unary

    if server_streaming and inspect.isasyncgenfunction(method):
        async def unary_stream(request, context):
            if isinstance(request, Malformed):
                status.end(context, request.error())
                return
            async for response in method(request, context):
                yield response
        return unary_stream

    async def unary_call(request, context):  # unary-unary, or unary-stream writing with context.write
        if isinstance(request, Malformed):
            status.end(context, request.error())
            return None
        return await method(request, context)
    return unary_call


def add_guarded(servicer: Any, server: grpc.aio.Server, service: Any, max_message_bytes: int | None = None) -> None:
    """Registers a servicer that knows nothing of `Malformed` (see `guarded`), with tolerant parsing."""
    add_to_server(servicer, server, service, guard=True, max_message_bytes=max_message_bytes)


def add_to_server(servicer: Any, server: grpc.aio.Server, service: Any = None,
                  extra_streams: Sequence[tuple[str, Any, Any]] = (), guard: bool = False,
                  max_message_bytes: int | None = None) -> None:
    """Registers `servicer` like a generated add_...Servicer_to_server, with tolerant parsing.

    Args:
      servicer: has a handler named after each method.
      server: where to register it.
      service: the ServiceDescriptor (default: the PolicyService).
      extra_streams: (method name, request class, response class) of
        bidirectional streams the descriptor does not declare (Triton's
        ModelStreamInfer on the Open Inference Protocol's service).
      guard: wrap every handler with `guarded` (a servicer that does not
        answer Malformed itself).
      max_message_bytes: the server's message limit: a larger request
        parses into a Malformed (RESOURCE_EXHAUSTED); None: gRPC's limit only.
    """
    service = service or service_pb.DESCRIPTOR.services_by_name["PolicyService"]
    factories = {(False, False): grpc.unary_unary_rpc_method_handler,
                 (True, False): grpc.stream_unary_rpc_method_handler,
                 (False, True): grpc.unary_stream_rpc_method_handler,
                 (True, True): grpc.stream_stream_rpc_method_handler}
    methods = [(m.name, (m.client_streaming, m.server_streaming), GetMessageClass(m.input_type),
                GetMessageClass(m.output_type)) for m in service.methods]
    methods += [(name, (True, True), request, response) for name, request, response in extra_streams]
    handlers = {}
    for name, kind, request, response in methods:
        method = guarded(getattr(servicer, name), kind) if guard else getattr(servicer, name)
        handlers[name] = factories[kind](method, request_deserializer=_tolerant_parser(request, max_message_bytes),
                                         response_serializer=response.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
