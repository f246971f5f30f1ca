"""The PolicyService RPC handlers: actors' actions (stream and unary) through the admission seam,
specs and initial states, stats, and the learner's weight calls."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator

from policy_client.wire import DEFAULT_MAX_MESSAGE_BYTES, STREAM_CAP, STREAM_CAP_KEY, errors, nests, status, steps, tensors
from policy_client.wire.generated import policy_service_pb2 as service_pb
from policy_client.wire.generated import policy_service_pb2_grpc as service_grpc
from policy_server import services
from policy_server.admission import Admission, refused
from policy_server.engine.function_calls import FunctionCalls
from policy_server.native import acks
from policy_server.native.messages import ActionCall, check_initial_state_rows
from policy_server.registry import HostedPolicy, Registry
from policy_server.weights import checkpoints
from policy_server.weights.push import PushAssembler
from policy_server.weights.swapper import WeightUpdate

logger = logging.getLogger(__name__)

_END_STREAM = object()  # queued by end_streams: the stream ends after the answers before it
# Answers one ActionStream may run ahead of its client (acks.StreamCredit; TorchRL's max_inflight_per_env).
MAX_INFLIGHT_PER_STREAM = STREAM_CAP


class PolicyServicer(service_grpc.PolicyServiceServicer):
    """Answers PolicyService RPCs from a Registry.

    Args:
      registry: the hosted policies.
      admission: where action requests are admitted (the server's one seam).
      max_inflight_per_stream: see ActionStream.
      max_message_bytes: the server's message size limit (ServerConfig's):
        GetInitialState builds no state that could not be sent.
      stream_acks_required: ActionStream requests without answers_read are
        answered FAILED_PRECONDITION, uncomputed (ServerConfig.stream_acks).
    """

    def __init__(self, registry: Registry, admission: Admission,
                 max_inflight_per_stream: int = MAX_INFLIGHT_PER_STREAM,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, stream_acks_required: bool = False):
        self.registry = registry
        self.admission = admission
        self.max_inflight_per_stream = max_inflight_per_stream
        self.max_message_bytes = max_message_bytes
        self.stream_acks_required = stream_acks_required
        # The answer queue of every open ActionStream (see end_streams).
        self._streams: set[asyncio.Queue] = set()
        self._streams_ended = False
        self._function_calls: dict[str, FunctionCalls] = {}  # policy -> its function calls (CallFunction)

    def end_streams(self) -> None:
        """Ends every open ActionStream once the answers it owes are sent.

        Called by the server's `stop` after the schedulers answered every
        accepted request: each stream stops reading, sends the answers of what
        it has read, then ends with UNAVAILABLE, so clients reconnect (to
        another server) instead of holding the shutdown for its grace period.
        """
        self._streams_ended = True
        for answers in self._streams:
            answers.put_nowait(_END_STREAM)

    @services.unary
    async def ListPolicies(self, request, context):  # noqa: N802 (gRPC method names)
        return service_pb.ListPoliciesResponse(policies=[
            service_pb.PolicyInfo(name=h.name, version=h.backend.version, backend=h.backend.kind,
                                  stateful=h.stateful) for h in self.registry])

    @services.unary
    async def GetSpecs(self, request, context):  # noqa: N802
        hosted = await self.registry.wait(request.policy, context.time_remaining())
        return service_pb.GetSpecsResponse(specs=steps.policy_specs_to_proto(hosted.backend.specs),
                                           version=hosted.backend.version, policy=hosted.name,
                                           backend=hosted.backend.kind)

    @services.unary
    async def GetInitialState(self, request, context):  # noqa: N802
        hosted = await self.registry.wait(request.policy, context.time_remaining())
        check_initial_state_rows(hosted, request.batch_size, self.max_message_bytes)
        batch_size = request.batch_size or None
        initial = hosted.backend.local_initial_state if request.input_mode == service_pb.INPUT_MODE_AS_LOCAL \
            else hosted.backend.initial_state
        state = await hosted.scheduler.run_exclusive(lambda: initial(batch_size))
        try:
            encoded = nests.nest_to_proto(state)
        except errors.CodecError as e:  # the policy's own output, not the request: INTERNAL, named, no traceback
            raise errors.InternalError(f"the policy's initial state cannot be sent: {e}",
                                       reason="UnsendableOutput") from None
        return service_pb.GetInitialStateResponse(state=encoded, version=hosted.backend.version)

    @services.unary
    async def Action(self, request, context):  # noqa: N802
        left = context.time_remaining()
        # Give up waiting for a loading policy or a min_version early enough for the refusal to arrive in time.
        patience = None if left is None else left - min(0.25, left / 4)
        call = ActionCall(request, context.peer(), patience)
        return call.response(*await self.admission.submit(call))

    async def ActionStream(self, request_iterator, context) -> AsyncIterator[Any]:  # noqa: N802
        """Answers each request of the stream once, in request order.

        A stream runs at most max_inflight_per_stream answers ahead of its
        client (acks.StreamCredit): of a client that acknowledges
        (answers_read), answers it has not read; of one that does not, answers
        not yet taken by gRPC, so HTTP/2 flow control holds back a client that
        does not read. Either way it cannot take more than its share of the
        server or grow its memory.
        """
        answers: asyncio.Queue = asyncio.Queue()
        credit = acks.StreamCredit(self.max_inflight_per_stream)
        source = object()  # the scheduler shares batches fairly between streams

        def start_what_may() -> None:
            for request in credit.take_startable():
                answers.put_nowait(self._start(request, source))

        async def read() -> None:
            requests = services.client_stream(request_iterator, context)
            try:
                while True:
                    await credit.wait_to_read()
                    request = await requests.__anext__()
                    if not isinstance(request, services.Malformed):
                        if request.HasField("answers_read"):
                            credit.acknowledge(request.answers_read)
                            if acks.ack_only(request):
                                start_what_may()
                                continue
                        if self.stream_acks_required and not request.HasField("answers_read"):
                            request = acks.Unacknowledged(request.request_id)
                    credit.pending.append(request)
                    start_what_may()
            except StopAsyncIteration:
                pass
            finally:
                answers.put_nowait(None)

        if self._streams_ended:
            await status.abort(context, errors.UnavailableError("the server is shutting down"))
        await context.send_initial_metadata(((STREAM_CAP_KEY, str(credit.cap)),))
        reader = asyncio.ensure_future(read())
        self._streams.add(answers)
        try:
            while (item := await answers.get()) is not None:
                if item is not _END_STREAM:
                    yield await _stream_answer(*item)
                    credit.wrote()
                    start_what_may()
                    continue
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
                # What was read after the schedulers closed is answered UNAVAILABLE, and what waited to start too.
                owed = [item for item in _drain(answers) if item is not _END_STREAM]
                owed += [self._start(request, source) for request in credit.take_all()]
                for item in owed:
                    yield await _stream_answer(*item)
                await status.abort(context, errors.UnavailableError("the server is shutting down"))
        finally:
            self._streams.discard(answers)
            reader.cancel()
            # The client went away: answers it will never read are dropped, their
            # errors too (else asyncio reports each one as never retrieved).
            for item in _drain(answers):
                if isinstance(item, tuple):
                    item[1].add_done_callback(_drop_outcome)

    @services.unary
    async def GetStats(self, request, context):  # noqa: N802
        policies = [await self.registry.wait(request.policy, context.time_remaining())] if request.policy \
            else list(self.registry)
        return service_pb.GetStatsResponse(policies=[stats_proto(h) for h in policies])

    async def PushVariables(self, request_iterator, context):  # noqa: N802
        """Checks a whole push, then hands it to the policy's weight swapper."""
        try:
            hosted, version, assembler = None, 0, None
            async for request in services.client_stream(request_iterator, context):
                if isinstance(request, services.Malformed):
                    raise request.error()
                if assembler is None:
                    hosted = await self.registry.wait(request.policy, context.time_remaining())
                    version = request.version
                    hosted.weights.check_version(version)
                    assembler = PushAssembler(hosted.weights.variable_specs(), request.num_variables)
                for piece in request.slices:
                    assembler.add(piece)
            if assembler is None:
                raise errors.InvalidArgumentError("empty push: no PushVariablesRequest received")
            values = assembler.values()
            update = WeightUpdate(version=version, source="push", values=values, num_bytes=assembler.num_bytes)
            served = await hosted.weights.apply(update)
            return service_pb.PushVariablesResponse(version=served, num_variables=len(values),
                                                    num_bytes=assembler.num_bytes)
        except errors.RemoteError as e:
            status.end(context, e)
            return None

    @services.unary
    async def GetVariables(self, request, context):  # noqa: N802
        hosted = await self.registry.wait(request.policy, context.time_remaining())
        specs = hosted.backend.variable_specs()
        values = await hosted.scheduler.run_exclusive(hosted.backend.variable_values) \
            if request.include_values else [None] * len(specs)
        response = service_pb.GetVariablesResponse(version=hosted.backend.version)
        for index, (spec, value) in enumerate(zip(specs, values)):
            info = response.variables.add(index=index, name=spec.name, dtype=tensors.dtype_to_proto(spec.dtype)[0],
                                          shape=spec.shape)
            if value is not None:
                tensors.write_array(info.value, value)
        return response

    @services.unary
    async def LoadCheckpoint(self, request, context):  # noqa: N802
        """Loads a PolicySaver checkpoint from the server's filesystem, as a weight update."""
        hosted = await self.registry.wait(request.policy, context.time_remaining())
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, checkpoints.is_checkpoint, request.path):
            raise await loop.run_in_executor(None, checkpoints.not_a_checkpoint, request.path)
        version = request.version or await loop.run_in_executor(None, checkpoints.checkpoint_train_step, request.path)
        version = version if version is not None else checkpoints.checkpoint_step(request.path)
        if version is None:
            raise errors.InvalidArgumentError.at("version", "0 takes the checkpoint's train step, but it holds none "
                                                            "and its name (policy_checkpoint_<step>) gives none either")
        update = WeightUpdate(version=version, source=f"checkpoint {request.path}", checkpoint=request.path)
        return service_pb.LoadCheckpointResponse(version=await hosted.weights.apply(update))

    @services.unary
    async def ListFunctions(self, request, context):  # noqa: N802
        hosted = await self.registry.wait(request.policy, context.time_remaining())
        response = service_pb.ListFunctionsResponse(version=hosted.backend.version)
        for name, signature in sorted(hosted.backend.functions().items()):
            info = response.functions.add(name=name)
            for tensor in signature:
                info.inputs.add(path=tensor.path, dtype=tensors.dtype_to_proto(tensor.dtype)[0],
                                shape=[-1 if d is None else d for d in tensor.shape], name=tensor.name)
        return response

    @services.unary
    async def CallFunction(self, request, context):  # noqa: N802
        """Calls a function of the policy (see ListFunctions) between two batches, batched with concurrent
        calls where its signature takes rows (engine.function_calls)."""
        hosted = await self.registry.wait(request.policy, context.time_remaining())
        if request.function not in hosted.backend.functions():
            known = ", ".join(sorted(hosted.backend.functions())) or "none"
            raise errors.PolicyNotFoundError.at(
                "function", f"the {hosted.backend.kind} policy {hosted.name!r} has no function "
                            f"{request.function!r} (it has: {known})")
        args = nests.nest_from_proto(request.args, path="args") if request.HasField("args") else ()
        if not isinstance(args, tuple):
            raise errors.InvalidArgumentError.at("args", f"must be a tuple nest of the positional arguments, "
                                                         f"got a {type(args).__name__}")
        calls = self._function_calls.get(hosted.name)
        if calls is None or calls.backend is not hosted.backend:
            calls = self._function_calls[hosted.name] = FunctionCalls(hosted.backend, hosted.scheduler)
        result = await calls.call(request.function, args)
        try:
            encoded = nests.nest_to_proto(result)
        except errors.CodecError as e:
            raise errors.InternalError(f"the result of {request.function!r} cannot be sent: {e}",
                                       reason="UnsendableOutput") from None
        return service_pb.CallFunctionResponse(result=encoded, version=hosted.backend.version)

    def _start(self, request: Any, source: Any) -> tuple[ActionCall | services.Malformed, asyncio.Future]:
        """Admits one request read from a stream: (its call, the future of (answer, version))."""
        if isinstance(request, services.Malformed):  # answered alone, with its request_id where it was read
            return request, refused(request.error())
        call = ActionCall(request, source)
        return call, self.admission.submit(call)


async def _stream_answer(call: ActionCall | services.Malformed, future: asyncio.Future) -> service_pb.ActionResponse:
    """The stream's answer to one request: its response, or its error (the stream goes on)."""
    request_id = call.request_id if isinstance(call, services.Malformed) else call.request.request_id
    try:
        answer, version = await future
        return call.response(answer, version)
    except Exception as e:  # pylint: disable=broad-except
        if not isinstance(e, errors.RemoteError):
            logger.exception("unexpected error answering request %d", request_id)
        return service_pb.ActionResponse(request_id=request_id,
                                         error=status.to_status(e, status.MAX_STREAM_MESSAGE_CHARS))


def _drain(answers: asyncio.Queue) -> list[Any]:
    """What the answer queue holds now, without its end marker (None)."""
    items = []
    while not answers.empty():
        if (item := answers.get_nowait()) is not None:
            items.append(item)
    return items


def _drop_outcome(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def stats_proto(hosted: HostedPolicy) -> service_pb.PolicyStats:
    """The PolicyStats message of one hosted policy."""
    snap = hosted.stats.snapshot()
    return service_pb.PolicyStats(
        policy=hosted.name, version=hosted.backend.version, requests=snap.requests, rows=snap.rows,
        batches=snap.batches, mean_batch_size=snap.mean_batch_size, errors=snap.errors,
        queue_wait_ms_p50=snap.queue_wait_ms_p50, queue_wait_ms_p99=snap.queue_wait_ms_p99,
        inference_ms_p50=snap.inference_ms_p50, inference_ms_p99=snap.inference_ms_p99,
        queue_depth=hosted.scheduler.queue_depth, open_sessions=hosted.sessions.open,
        shared_memory_slots=hosted.shared_memory_slots)
