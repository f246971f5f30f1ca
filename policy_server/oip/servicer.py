"""The Open Inference Protocol servicer (`inference.GRPCInferenceService`): health, metadata and inference.

It answers from the same registry as the native PolicyService: model name =
policy name (empty: the default policy), model version = the served policy
version. ModelInfer and Triton's ModelStreamInfer go through the admission
seam into the policy's batcher (see `infer`), with the native calls. Errors are the native ones, with the same
status codes and `google.rpc.Status` details; on the stream, where Triton
answers an error in `error_message`, the message starts with the code's name
("INVALID_ARGUMENT: tensor 'observation': ...").
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from typing import Any, AsyncIterator, Callable, Hashable

from policy_client.wire import errors, status
from policy_client.wire.generated import grpc_predict_v2_pb2 as oip_pb
from policy_client.wire.generated import triton_streaming_pb2 as stream_pb
from policy_server import services
from policy_server.admission import Admission
from policy_server.oip.infer import Inference, InferCall
from policy_server.registry import Registry

logger = logging.getLogger(__name__)

SERVICE_NAME = oip_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_NAME = "tfa-policy-grpc"
# What ServerMetadata lists (Triton's names): sequences, and its streaming method.
EXTENSIONS = ("sequence", "model_stream_infer")
# Requests of one ModelStreamInfer stream read and not yet answered.
MAX_INFLIGHT_PER_STREAM = 16


def _server_version() -> str:
    try:
        return importlib.metadata.version(SERVER_NAME)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source tree that is not installed
        return "0"


class OipServicer:
    """Answers `inference.GRPCInferenceService` from a Registry.

    Args:
      registry: the server's policies.
      admission: where inference requests are admitted (the server's one seam).
      ready: whether the server serves (every policy loaded, not stopping).
      live: whether the server takes requests at all (not stopped).
    """

    def __init__(self, registry: Registry, admission: Admission, ready: Callable[[], bool],
                 live: Callable[[], bool] = lambda: True):
        self.registry = registry
        self.admission = admission
        self._ready = ready
        self._live = live
        self.inference = Inference()
        self._version = _server_version()

    @services.unary
    async def ServerLive(self, request, context):  # noqa: N802 (gRPC method names)
        return oip_pb.ServerLiveResponse(live=self._live())

    @services.unary
    async def ServerReady(self, request, context):  # noqa: N802
        return oip_pb.ServerReadyResponse(ready=self._ready())

    @services.unary
    async def ModelReady(self, request, context):  # noqa: N802
        """Ready: the policy serves (loaded, server not stopping) the version asked for, if any."""
        try:
            hosted = self.registry.get(request.name)
        except (errors.UnavailableError, errors.FailedPreconditionError):  # loading, failed or stopping
            return oip_pb.ModelReadyResponse(ready=False)
        ready = self._ready() and (not request.version or request.version == str(hosted.backend.version))
        return oip_pb.ModelReadyResponse(ready=ready)

    @services.unary
    async def ServerMetadata(self, request, context):  # noqa: N802
        return oip_pb.ServerMetadataResponse(name=SERVER_NAME, version=self._version, extensions=EXTENSIONS)

    @services.unary
    async def ModelMetadata(self, request, context):  # noqa: N802
        """The policy's tensors (batch first, -1), its version, and its bounds in properties."""
        hosted = await self.registry.wait(request.name, context.time_remaining())
        version = str(hosted.backend.version)
        if request.version and request.version != version:
            raise errors.PolicyNotFoundError.at("version", "not served", details=f"version: {hosted.name!r} serves "
                                                f"version {version}, not {request.version!r}")
        response = oip_pb.ModelMetadataResponse(name=hosted.name, versions=[version],
                                                platform=f"tf_agents_{hosted.backend.kind}")
        named = self.inference.tensors(hosted)
        named.metadata(response)
        response.properties["stateful"] = "true" if named.stateful else "false"
        response.properties["sessions"] = "sequence_id, sequence_start, sequence_end"
        return response

    @services.unary
    async def ModelInfer(self, request, context):  # noqa: N802
        return await self._start(request, context.time_remaining(), context.peer())

    async def ModelStreamInfer(self, request_iterator, context) -> AsyncIterator[Any]:  # noqa: N802
        """Triton's streaming inference: one answer per request, in request order.

        At most MAX_INFLIGHT_PER_STREAM requests are read and not yet
        answered (a client that does not read its answers stops being read).
        A failed request is answered with `error_message`; the stream goes on.
        When the server stops, the stream stops reading, answers what it
        read, then ends with UNAVAILABLE (clients resend elsewhere).
        """
        answers: asyncio.Queue = asyncio.Queue()
        slots = asyncio.Semaphore(MAX_INFLIGHT_PER_STREAM)

        async def read() -> None:
            try:
                async for request in services.client_stream(request_iterator, context):
                    await slots.acquire()
                    answers.put_nowait((request, _guarded(self._start(request, None, answers))))  # the stream: one source
            finally:
                answers.put_nowait(None)

        reader = asyncio.ensure_future(read())
        closing = asyncio.ensure_future(self.registry.wait_closed())
        try:
            while (item := await _next(answers, closing)) is not None:
                yield await _stream_answer(*item)
                slots.release()
            if closing.done():
                reader.cancel()
                while not answers.empty():  # what was read before the server stopped is answered
                    if (item := answers.get_nowait()) is not None:
                        yield await _stream_answer(*item)
                await status.abort(context, errors.UnavailableError("the server is shutting down"))
            await reader  # a failed read (e.g. the client's stream broke) ends the call with its error
        finally:
            closing.cancel()
            reader.cancel()
            while not answers.empty():
                item = answers.get_nowait()
                if item is not None:
                    item[1].cancel()

    async def _start(self, request: Any, patience: float | None, source: Hashable | None = None) -> Any:
        """Admits one ModelInferRequest; returns its response (raises its error).

        `source` (a stream, or a unary caller's peer) shares batches fairly with the others.
        """
        if isinstance(request, services.Malformed):
            raise request.error()
        call = InferCall(self.inference, request, source, patience)
        return call.response(*await self.admission.submit(call))


async def _next(answers: asyncio.Queue, closing: asyncio.Future) -> Any:
    """The next queued answer, or None once the stream's requests end or the server stops."""
    if answers.empty() and closing.done():
        return None
    getter = asyncio.ensure_future(answers.get())
    await asyncio.wait({getter, closing}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    return None


def _guarded(awaitable: Any) -> asyncio.Future:
    """The awaitable as a future (its exception retrieved if nobody awaits it)."""
    future = asyncio.ensure_future(awaitable)
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


async def _stream_answer(request: Any, future: asyncio.Future) -> stream_pb.ModelStreamInferResponse:
    """The stream's answer to one request: its response, or its error with the code's name in front."""
    try:
        return stream_pb.ModelStreamInferResponse(infer_response=await future)
    except Exception as e:  # pylint: disable=broad-except
        if not isinstance(e, errors.RemoteError):
            logger.exception("unexpected error answering a ModelStreamInfer request")
        error = status.as_remote_error(e)
        code = error.code.name if error.code is not None else "UNKNOWN"
        request_id = getattr(request, "id", "")
        return stream_pb.ModelStreamInferResponse(
            error_message=status.truncate(f"{code}: {error.details}", status.MAX_STREAM_MESSAGE_CHARS),
            infer_response=oip_pb.ModelInferResponse(model_name=getattr(request, "model_name", ""), id=request_id))
