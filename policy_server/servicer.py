"""The PolicyService implementation: decode, validate, queue, answer."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from typing import Any, AsyncIterator

import grpc
from google.protobuf.message import DecodeError

from policy_client import codec
from policy_client.errors import CodecError
from policy_client.generated import policy_service_pb2 as service_pb
from policy_client.generated import policy_service_pb2_grpc as service_grpc
from policy_client.spec_check import SpecMismatchError, check_nest
from policy_server import errors
from policy_server.backend import Backend
from policy_server.batching import Batcher, BatchingConfig, Request
from policy_server.stats import PolicyStats
from policy_server.variables import PushAssembler

logger = logging.getLogger(__name__)


def _encode_step(step: Any) -> service_pb.ActionResponse:
    """Worker thread: the response with its policy step, encoded off the event loop."""
    response = service_pb.ActionResponse()
    codec.write_policy_step(response.policy_step, step)
    return response


@dataclasses.dataclass
class HostedPolicy:
    """A named policy with its batcher and statistics."""

    name: str
    backend: Backend
    batcher: Batcher
    stats: PolicyStats

    @classmethod
    def create(cls, name: str, backend: Backend, config: BatchingConfig) -> "HostedPolicy":
        stats = PolicyStats()
        return cls(name, backend, Batcher(backend, config, stats, postprocess=_encode_step), stats)


class Registry:
    """The named policies one server hosts; the first one added is the default."""

    def __init__(self) -> None:
        self._policies: dict[str, HostedPolicy] = {}
        self._expected: list[str] = []

    def expect(self, names) -> None:
        """Names policies that will be added once loaded (FAILED_PRECONDITION until then)."""
        self._expected = list(names)

    def add(self, hosted: HostedPolicy) -> None:
        if hosted.name in self._policies:
            raise ValueError(f"policy {hosted.name!r} is already registered")
        self._policies[hosted.name] = hosted

    def get(self, name: str) -> HostedPolicy:
        """Returns the named policy (the default for an empty name).

        Raises:
          ServingError: NOT_FOUND for an unknown name, FAILED_PRECONDITION for
            a policy still loading.
        """
        if not name and self._expected:
            name = self._expected[0]
        hosted = self._policies.get(name)
        if hosted is not None:
            return hosted
        if name in self._expected:
            raise errors.ServingError(grpc.StatusCode.FAILED_PRECONDITION, f"policy {name!r} is still loading")
        raise errors.not_found(f"no policy named {name!r}; this server hosts {sorted(self._expected)}")

    def __iter__(self):
        return iter(self._policies.values())

    def __len__(self) -> int:
        return len(self._policies)


def prepare_request(hosted: HostedPolicy, request: service_pb.ActionRequest) -> Request:
    """Decodes and validates an ActionRequest against the policy's specs.

    Raises:
      ServingError: INVALID_ARGUMENT naming the field, expected vs got.
    """
    specs = hosted.backend.specs
    rows = request.batch_size
    outer = (rows,) if rows else ()
    seed = request.seed if request.HasField("seed") else None
    if seed is not None and not hosted.backend.supports_seed:
        raise errors.invalid_argument(f"seed: the {hosted.backend.kind} policy {hosted.name!r} "
                                      "cannot take a per-call seed")
    try:
        if not request.HasField("time_step"):
            raise CodecError("time_step is not set")
        time_step = codec.time_step_from_proto(request.time_step)
        check_nest(time_step, specs.time_step_spec, outer_shape=outer, path="time_step")
        state: Any = ()
        if request.HasField("policy_state"):
            state = codec.nest_from_proto(request.policy_state)
            check_nest(state, specs.policy_state_spec, outer_shape=outer, path="policy_state")
            if not has_leaves(specs.policy_state_spec):
                state = ()
        elif has_leaves(specs.policy_state_spec):
            raise SpecMismatchError("policy_state: the policy is stateful, but the request carries no "
                                    "state (start from GetInitialState)")
    except (CodecError, SpecMismatchError) as e:
        raise errors.invalid_argument(str(e)) from None
    return Request(time_step=time_step, policy_state=state, rows=rows, seed=seed)


def has_leaves(spec: Any) -> bool:
    """Whether a spec nest holds at least one spec (i.e. is not empty)."""
    import tree  # pylint: disable=import-outside-toplevel

    return bool(tree.flatten(spec))


class Malformed:
    """Stands in for a request whose bytes did not parse.

    gRPC deserializes before the handler runs; without this, bytes that are not
    the message (or nest deeper than protobuf's limit of 100) would fail as an
    opaque INTERNAL error instead of INVALID_ARGUMENT.
    """

    def __init__(self, message: str):
        self.message = message


def _tolerant_parser(message_type: Any) -> Any:
    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as e:
            return Malformed(f"malformed {message_type.DESCRIPTOR.name}: {e} (not this message, or nested "
                             "deeper than protobuf's limit of 100 messages)")

    return parse


def _refuse_malformed(method: Any) -> Any:
    """Wraps a unary handler: a Malformed request is answered with INVALID_ARGUMENT,
    a ServingError with its own status."""

    @functools.wraps(method)
    async def handler(self, request, context):
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
        try:
            return await method(self, request, context)
        except errors.ServingError as e:
            await context.abort(e.code, e.message)

    return handler


def add_to_server(servicer: "PolicyServicer", server: grpc.aio.Server) -> None:
    """Registers the service like the generated add_...ToServer, with tolerant parsing."""
    service = service_pb.DESCRIPTOR.services_by_name["PolicyService"]
    factories = {(False, False): grpc.unary_unary_rpc_method_handler,
                 (True, False): grpc.stream_unary_rpc_method_handler,
                 (False, True): grpc.unary_stream_rpc_method_handler,
                 (True, True): grpc.stream_stream_rpc_method_handler}
    handlers = {}
    for method in service.methods:
        factory = factories[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = factory(
            getattr(servicer, method.name),
            request_deserializer=_tolerant_parser(getattr(service_pb, method.input_type.name)),
            response_serializer=getattr(service_pb, method.output_type.name).SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))


class PolicyServicer(service_grpc.PolicyServiceServicer):
    """Answers PolicyService RPCs from a Registry."""

    def __init__(self, registry: Registry):
        self.registry = registry
        # The answer queue of every open ActionStream (see end_streams).
        self._streams: set[asyncio.Queue] = set()
        self._streams_ended = False

    def end_streams(self) -> None:
        """Ends every open ActionStream once the answers it owes are sent.

        Called by the server's `stop` after the batchers answered every accepted
        request: each stream stops reading, sends the answers of what it has
        read, then ends with UNAVAILABLE, so clients reconnect (to another
        server) instead of holding the shutdown for its whole grace period.
        """
        self._streams_ended = True
        for answers in self._streams:
            answers.put_nowait(_END_STREAM)

    @_refuse_malformed
    async def ListPolicies(self, request, context):  # noqa: N802 (gRPC method names)
        return service_pb.ListPoliciesResponse(policies=[
            service_pb.PolicyInfo(name=h.name, version=h.backend.version, backend=h.backend.kind,
                                  stateful=has_leaves(h.backend.specs.policy_state_spec))
            for h in self.registry])

    @_refuse_malformed
    async def GetSpecs(self, request, context):  # noqa: N802
        hosted = await self._get(request.policy, context)
        return service_pb.GetSpecsResponse(specs=codec.policy_specs_to_proto(hosted.backend.specs),
                                           version=hosted.backend.version, policy=hosted.name)

    @_refuse_malformed
    async def GetInitialState(self, request, context):  # noqa: N802
        hosted = await self._get(request.policy, context)
        batch_size = request.batch_size or None
        state = await hosted.batcher.run_exclusive(lambda: hosted.backend.initial_state(batch_size))
        return service_pb.GetInitialStateResponse(state=codec.nest_to_proto(state),
                                                  version=hosted.backend.version)

    @_refuse_malformed
    async def Action(self, request, context):  # noqa: N802
        try:
            return await self._answer(request)
        except errors.ServingError as e:
            await context.abort(e.code, e.message)
        except Exception as e:  # pylint: disable=broad-except
            logger.exception("unexpected error answering an Action call")
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

    async def ActionStream(self, request_iterator, context) -> AsyncIterator[Any]:  # noqa: N802
        """Answers each request of the stream once, in request order."""
        answers: asyncio.Queue = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    if isinstance(request, Malformed):
                        answers.put_nowait(_done(service_pb.ActionResponse(error=service_pb.Status(
                            code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message=request.message))))
                    else:
                        answers.put_nowait(asyncio.ensure_future(self._answer_in_stream(request)))
            finally:
                answers.put_nowait(None)

        if self._streams_ended:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        reader = asyncio.ensure_future(read())
        self._streams.add(answers)
        try:
            while (answer := await answers.get()) is not None:
                if answer is not _END_STREAM:
                    yield await answer
                    continue
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                # What was read after the batchers closed is answered UNAVAILABLE.
                while not answers.empty() and (answer := answers.get_nowait()) is not None:
                    if answer is not _END_STREAM:
                        yield await answer
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
        finally:
            self._streams.discard(answers)
            reader.cancel()

    @_refuse_malformed
    async def GetStats(self, request, context):  # noqa: N802
        policies = [await self._get(request.policy, context)] if request.policy else list(self.registry)
        return service_pb.GetStatsResponse(policies=[stats_proto(h) for h in policies])

    async def PushVariables(self, request_iterator, context):  # noqa: N802
        """Checks a whole push, then swaps it in between two batches."""
        try:
            hosted, version, assembler = None, 0, None
            async for request in request_iterator:
                if isinstance(request, Malformed):
                    raise errors.invalid_argument(request.message)
                if assembler is None:
                    hosted = self.registry.get(request.policy)
                    version = request.version
                    specs = hosted.backend.variable_specs()
                    if not specs:
                        raise errors.ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                                  f"the {hosted.backend.kind} policy {hosted.name!r} has no "
                                                  "variables that can be pushed")
                    assembler = PushAssembler(specs, request.num_variables)
                for piece in request.slices:
                    assembler.add(piece)
            if assembler is None:
                raise errors.invalid_argument("empty push: no PushVariablesRequest received")
            values = assembler.values()
            if version < hosted.backend.version:
                raise errors.ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                          f"version {version} is older than the served version "
                                          f"{hosted.backend.version}")
            await hosted.batcher.run_exclusive(lambda: hosted.backend.set_variables(values, version))
            logger.info("policy %r now at version %d (%d variables, %d bytes pushed)",
                        hosted.name, version, len(values), assembler.num_bytes)
            return service_pb.PushVariablesResponse(version=version, num_variables=len(values),
                                                    num_bytes=assembler.num_bytes)
        except errors.ServingError as e:
            await context.abort(e.code, e.message)

    @_refuse_malformed
    async def GetVariables(self, request, context):  # noqa: N802
        hosted = await self._get(request.policy, context)
        specs = hosted.backend.variable_specs()
        values = await hosted.batcher.run_exclusive(hosted.backend.variable_values) \
            if request.include_values else [None] * len(specs)
        response = service_pb.GetVariablesResponse(version=hosted.backend.version)
        for index, (spec, value) in enumerate(zip(specs, values)):
            info = response.variables.add(index=index, name=spec.name, dtype=codec.dtype_to_proto(spec.dtype)[0],
                                          shape=spec.shape)
            if value is not None:
                info.value.CopyFrom(codec.array_to_proto(value))
        return response

    async def _get(self, name: str, context: grpc.aio.ServicerContext) -> HostedPolicy:
        try:
            return self.registry.get(name)
        except errors.ServingError as e:
            await context.abort(e.code, e.message)
            raise  # unreachable: abort raises

    async def _answer(self, request: service_pb.ActionRequest) -> service_pb.ActionResponse:
        hosted = self.registry.get(request.policy)
        try:
            prepared = prepare_request(hosted, request)
        except errors.ServingError:
            hosted.stats.record_error()
            raise
        response, version = await hosted.batcher.submit(prepared)
        response.version = version
        response.request_id = request.request_id
        return response

    async def _answer_in_stream(self, request: service_pb.ActionRequest) -> service_pb.ActionResponse:
        try:
            return await self._answer(request)
        except errors.ServingError as e:
            return service_pb.ActionResponse(request_id=request.request_id, error=service_pb.Status(
                code=e.code.value[0], message=e.message))
        except Exception as e:  # pylint: disable=broad-except
            logger.exception("unexpected error answering request %d", request.request_id)
            return service_pb.ActionResponse(request_id=request.request_id, error=service_pb.Status(
                code=grpc.StatusCode.INTERNAL.value[0], message=f"{type(e).__name__}: {e}"))


_END_STREAM = object()  # queued by end_streams: the stream ends after the answers before it


def _done(value: Any) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


def stats_proto(hosted: HostedPolicy) -> service_pb.PolicyStats:
    """The PolicyStats message of one hosted policy."""
    snap = hosted.stats.snapshot()
    return service_pb.PolicyStats(
        policy=hosted.name, version=hosted.backend.version, requests=snap.requests, rows=snap.rows,
        batches=snap.batches, mean_batch_size=snap.mean_batch_size, errors=snap.errors,
        queue_wait_ms_p50=snap.queue_wait_ms_p50, queue_wait_ms_p99=snap.queue_wait_ms_p99,
        inference_ms_p50=snap.inference_ms_p50, inference_ms_p99=snap.inference_ms_p99,
        queue_depth=hosted.batcher.queue_depth)
