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
    """Stands in for a request whose bytes did not parse."""

    def __init__(self, message: str):
        self.message = message

    def error(self) -> errors.InvalidArgumentError:
        return errors.InvalidArgumentError(self.message, reason="DecodeError")


def _tolerant_parser(message_type: Any) -> Any:
    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as e:
            return Malformed(f"malformed {message_type.DESCRIPTOR.name}: {e} (not this message, or nested "
                             "deeper than protobuf's limit of 100 messages)")

    return parse


logger = logging.getLogger(__name__)


def unary(method: Any) -> Any:
    """Wraps a unary handler: Malformed requests and errors end the call with their status."""

    @functools.wraps(method)
    async def handler(self, request, context):
        try:
            if isinstance(request, Malformed):
                raise request.error()
            return await method(self, request, context)
        except errors.RemoteError as e:
            await status.abort(context, e)
        except Exception as e:  # pylint: disable=broad-except
            # Never UNKNOWN: a policy's exception travels with its type, a defect as INTERNAL.
            logger.exception("unexpected error in %s", method.__name__)
            await status.abort(context, e)

    return handler


def guarded(method: Any, kind: tuple[bool, bool]) -> Any:
    """`method` (a servicer's handler of streaming `kind`) with Malformed requests answered INVALID_ARGUMENT."""
    client_streaming, server_streaming = kind
    if client_streaming:
        async def requests(request_iterator, context):
            async for request in request_iterator:
                if isinstance(request, Malformed):
                    await status.abort(context, request.error())
                yield request

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
                await status.abort(context, request.error())
            async for response in method(request, context):
                yield response
        return unary_stream

    async def unary_call(request, context):  # unary-unary, or unary-stream writing with context.write
        if isinstance(request, Malformed):
            await status.abort(context, request.error())
        return await method(request, context)
    return unary_call


def add_guarded(servicer: Any, server: grpc.aio.Server, service: Any) -> None:
    """Registers a servicer that knows nothing of `Malformed` (see `guarded`), with tolerant parsing."""
    add_to_server(servicer, server, service, guard=True)


def add_to_server(servicer: Any, server: grpc.aio.Server, service: Any = None,
                  extra_streams: Sequence[tuple[str, Any, Any]] = (), guard: bool = False) -> None:
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
        handlers[name] = factories[kind](method, request_deserializer=_tolerant_parser(request),
                                         response_serializer=response.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
