"""Benchmark processes: actors (local policy, RemotePolicy, PolicyClient, echo), the echo server, the RSS floor."""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import sys
import time
import traceback
from typing import Any, Callable

import grpc
import numpy as np

from bench import workloads

ECHO_SERVICE = "bench.Echo"
KINDS = ("local", "remote", "client", "echo", "remote_shm", "client_shm", "client_threads")
TICKS = os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat and /proc/stat count in these


def cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - values[3] - values[4], total


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM (peak resident set) of a process in MiB, from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------ callers


def _local_caller(workload: str, address: str, rows: int, seed: int) -> tuple[Callable, Callable]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tf_agents.policies import py_tf_eager_policy  # pylint: disable=import-outside-toplevel
    from tf_agents.trajectories import time_step as ts  # pylint: disable=import-outside-toplevel

    policy = py_tf_eager_policy.PyTFEagerPolicy(workloads.policy_for(workload), use_tf_function=True)
    observations = workloads.Observations(workload, seed)
    return (lambda: policy.action(ts.TimeStep(**workloads.step_fields(observations(rows), rows)))), (lambda: None)


def _remote_caller(workload: str, address: str, rows: int, seed: int,
                   data_plane: str = "grpc") -> tuple[Callable, Callable]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tf_agents.trajectories import time_step as ts  # pylint: disable=import-outside-toplevel

    from policy_client import RemotePolicy  # pylint: disable=import-outside-toplevel

    policy = RemotePolicy(address, workload, data_plane=data_plane)
    observations = workloads.Observations(workload, seed)
    return (lambda: policy.action(ts.TimeStep(**workloads.step_fields(observations(rows), rows)))), policy.close


def _client_caller(workload: str, address: str, rows: int, seed: int,
                   data_plane: str = "grpc") -> tuple[Callable, Callable]:
    from policy_client import PolicyClient  # pylint: disable=import-outside-toplevel
    from policy_client.wire.standins import TimeStep  # pylint: disable=import-outside-toplevel

    client = PolicyClient(address, workload, data_plane=data_plane)
    observations = workloads.Observations(workload, seed)
    return (lambda: client.action(TimeStep(**workloads.step_fields(observations(rows), rows)),
                                  batch_size=rows)), client.close


def _client_threads_caller(workload: str, address: str, threads: int, seed: int) -> tuple[Callable, Callable]:
    """`threads` actors in one process, each a thread with its own PolicyClient (its own channel and stream).

    They step together, as a simulator process stepping its environments does:
    one call is one unbatched action of each (so `rows` counts threads here).
    """
    from concurrent.futures import ThreadPoolExecutor  # pylint: disable=import-outside-toplevel

    from policy_client import PolicyClient  # pylint: disable=import-outside-toplevel
    from policy_client.wire.standins import TimeStep  # pylint: disable=import-outside-toplevel

    clients = [PolicyClient(address, workload, data_plane="grpc") for _ in range(threads)]
    observations = [workloads.Observations(workload, seed * 1000 + i) for i in range(threads)]
    pool = ThreadPoolExecutor(threads, thread_name_prefix="actor")

    def one(i: int) -> Any:
        return clients[i].action(TimeStep(**workloads.step_fields(observations[i]())))

    def close() -> None:
        pool.shutdown()
        for client in clients:
            client.close()

    return (lambda: list(pool.map(one, range(threads)))), close


def raw_stream(address: str, method: str) -> tuple[Callable[[bytes], bytes], Callable[[], None]]:
    """A bidi stream of raw bytes: (send one message and return the next answer's bytes, close)."""
    channel = grpc.insecure_channel(address)
    requests: queue.SimpleQueue = queue.SimpleQueue()
    responses = channel.stream_stream(method)(iter(requests.get, None))

    def call(request: bytes) -> bytes:
        requests.put(request)
        return next(responses)

    def close() -> None:
        requests.put(None)
        channel.close()

    return call, close


def _echo_caller(workload: str, address: str, rows: int, seed: int) -> tuple[Callable, Callable]:
    """Raw bidi stream: a real encoded ActionRequest out per call, the echo server's fixed bytes back."""
    from policy_client import PolicyClient  # pylint: disable=import-outside-toplevel
    from policy_client.wire.standins import TimeStep  # pylint: disable=import-outside-toplevel

    encoder = PolicyClient("127.0.0.1:1", workload)  # encode_request only; never connects
    observations = workloads.Observations(workload, seed)
    send, close_stream = raw_stream(address, f"/{ECHO_SERVICE}/Stream")

    def call() -> bytes:
        step = TimeStep(**workloads.step_fields(observations(rows), rows))
        return send(encoder.encode_request(step, batch_size=rows).SerializeToString())

    def close() -> None:
        close_stream()
        encoder.close()

    return call, close


# "remote" and "client" keep to gRPC (issue 19's rows); the *_shm kinds take the same-host shared-memory
# data plane (issue 21's), which the same constructors negotiate by default.
CALLERS = {"local": _local_caller, "remote": _remote_caller, "client": _client_caller, "echo": _echo_caller,
           "remote_shm": functools.partial(_remote_caller, data_plane="shm"),
           "client_shm": functools.partial(_client_caller, data_plane="shm"), "client_threads": _client_threads_caller}


# ------------------------------------------------------------------ actor process


def _measure(call: Callable, start_at: float, warmup: float, seconds: float) -> tuple[np.ndarray, float]:
    """Closed loop from `start_at` (time.time()): `warmup` s discarded, then `seconds` s measured."""
    time.sleep(max(0.0, start_at - time.time()))
    end_warmup = time.perf_counter() + warmup
    while time.perf_counter() < end_warmup:
        call()
    latencies = []
    cpu0 = cpu_seconds()
    end = time.perf_counter() + seconds
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        call()
        latencies.append(time.perf_counter() - t0)
    return np.array(latencies, np.float32), cpu_seconds() - cpu0


def actor(index: int, commands: Any, results: Any) -> None:
    """Process: answers ("prepare", key, kind, workload, address, rows), ("run", key, start_at, warmup,
    seconds) and ("close", key) commands; None ends it. Replies go to `results` as (tag, index, payload)."""
    callers: dict[Any, tuple[Callable, Callable]] = {}
    while True:
        command = commands.get()
        if command is None:
            break
        try:
            op, key = command[0], command[1]
            if op == "prepare":
                kind, workload, address, rows = command[2:]
                if key not in callers:
                    callers[key] = CALLERS[kind](workload, address, rows, seed=1000 * index + rows)
                for _ in range(3):  # trace / connect before any clock starts
                    callers[key][0]()
                results.put(("ready", index, {"rss_mb": peak_rss_mb()}))
            elif op == "run":
                latencies, cpu = _measure(callers[key][0], *command[2:])
                results.put(("done", index, {"latencies": latencies, "cpu_s": cpu, "rss_mb": peak_rss_mb(),
                                             "tensorflow_imported": "tensorflow" in sys.modules}))
            elif op == "close":
                callers.pop(key, (None, lambda: None))[1]()
                results.put(("closed", index, {}))
        except Exception:  # pylint: disable=broad-except
            results.put(("error", index, {"traceback": traceback.format_exc()}))
    for _, close in callers.values():
        try:
            close()
        except Exception:  # pylint: disable=broad-except
            pass
    results.close()
    results.join_thread()  # every reply is in the pipe: skip TensorFlow's slow interpreter teardown
    os._exit(0)  # pylint: disable=protected-access


def rss_floor(results: Any) -> None:
    """Process: imports only tensorflow and tf_agents (what a PyPolicy user imports); reports VmHWM."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import tf_agents  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    from tf_agents.policies import py_policy  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    from tf_agents.trajectories import time_step  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import

    results.put(("floor", -1, {"rss_mb": peak_rss_mb()}))
    results.close()
    results.join_thread()
    os._exit(0)  # pylint: disable=protected-access


# ------------------------------------------------------------------ echo server process


def serve_echo(address: str, response: bytes, port_queue: Any, stop: Any) -> None:
    """Process: a grpc.aio bidi-stream server answering every message with the fixed `response` bytes."""

    async def stream(request_iterator: Any, context: Any) -> Any:
        async for _ in request_iterator:
            yield response

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
        handler = grpc.method_handlers_generic_handler(ECHO_SERVICE, {
            "Stream": grpc.stream_stream_rpc_method_handler(stream)})
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port(address)
        await server.start()
        port_queue.put(address if address.startswith("unix:") else f"127.0.0.1:{port}")
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await server.stop(0.5)

    asyncio.run(main())
