"""Benchmark worker processes: light actors (numpy + gRPC only) and the raw echo server."""

from __future__ import annotations

import asyncio
import queue
import resource
import time
from typing import Any

import grpc
import numpy as np

ECHO_SERVICE = "bench.Echo"


def cartpole_time_step(rows: int = 0) -> Any:
    """A CartPole time step: unbatched (rows=0) or with `rows` rows."""
    from policy_client.wire.standins import TimeStep  # pylint: disable=import-outside-toplevel

    outer = (rows,) if rows else ()
    rng = np.random.default_rng(rows)
    return TimeStep(step_type=np.ones(outer, np.int32), reward=np.ones(outer, np.float32),
                    discount=np.ones(outer, np.float32),
                    observation=rng.uniform(-0.1, 0.1, size=outer + (4,)).astype(np.float32))


def request_bytes(rows: int = 0) -> bytes:
    """The serialized ActionRequest of a CartPole time step (for the echo payload)."""
    from policy_client import PolicyClient  # pylint: disable=import-outside-toplevel

    client = PolicyClient("127.0.0.1:1", "cartpole")
    data = client.encode_request(cartpole_time_step(rows), batch_size=rows).SerializeToString()
    client.close()
    return data


def serve_echo(port_queue: Any, stop: Any) -> None:
    """Process: a grpc.aio server echoing bytes on unary and bidi-stream methods."""

    async def unary(request: bytes, context: Any) -> bytes:
        return request

    async def stream(request_iterator: Any, context: Any) -> Any:
        async for request in request_iterator:
            yield request

    async def main() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(ECHO_SERVICE, {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.stream_stream_rpc_method_handler(stream)})
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        port_queue.put(port)
        while not stop.is_set():
            await asyncio.sleep(0.2)
        await server.stop(1)

    asyncio.run(main())


def _echo_caller(address: str, mode: str, payload: bytes) -> tuple[Any, Any]:
    channel = grpc.insecure_channel(address)
    if mode == "unary":
        method = channel.unary_unary(f"/{ECHO_SERVICE}/Unary")
        return (lambda: method(payload)), channel
    requests: queue.SimpleQueue = queue.SimpleQueue()
    responses = channel.stream_stream(f"/{ECHO_SERVICE}/Stream")(iter(requests.get, None))

    def call() -> bytes:
        requests.put(payload)
        return next(responses)

    call.close = lambda: requests.put(None)  # type: ignore[attr-defined]
    return call, channel


def _policy_caller(address: str, mode: str, rows: int) -> tuple[Any, Any]:
    from policy_client import PolicyClient  # pylint: disable=import-outside-toplevel

    client = PolicyClient(address, "cartpole", transport=mode)
    time_step = cartpole_time_step(rows)
    return (lambda: client.action(time_step, batch_size=rows)), client


def timed_loop(call: Any, seconds: float, warmup: float) -> np.ndarray:
    """Calls `call` back to back; returns the latencies (s) after the warm-up."""
    end_warmup = time.perf_counter() + warmup
    while time.perf_counter() < end_warmup:
        call()
    latencies = []
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        call()
        latencies.append(time.perf_counter() - t0)
    return np.array(latencies)


def worker(commands: Any, results: Any) -> None:
    """Process: runs ('echo'|'policy', address, mode, arg, seconds, warmup, start_at) commands."""
    while True:
        command = commands.get()
        if command is None:
            return
        kind, address, mode, arg, seconds, warmup, start_at = command
        call, closer = (_echo_caller if kind == "echo" else _policy_caller)(address, mode, arg)
        call()  # connect before the synchronized start
        time.sleep(max(0.0, start_at - time.time()))
        timed_loop(call, warmup, 0.0)  # warm-up, discarded
        before = resource.getrusage(resource.RUSAGE_SELF)
        latencies = timed_loop(call, seconds, 0.0)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        results.put((latencies, cpu))
        if hasattr(call, "close"):
            call.close()
        closer.close()
