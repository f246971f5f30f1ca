"""`python -m bench.client_costs`: a gRPC client's CPU per call at one actor, and what it depends on.

Three callers, in interleaved rounds, each making 3,000 unbatched CartPole
calls from this process:

- `PolicyClient` against the CartPole policy server;
- a raw bidi stream (a real encoded ActionRequest out per call, `next()` on
  the answers) against the same server;
- the same raw stream against the echo server, which replays a fixed
  ActionResponse at once (`make bench`'s ceiling).

For each: CPU per call of this process, wall time per call, and the CPU of
each of its threads (the caller, gRPC's request-consumer thread, its channel
thread), from /proc. The raw stream's two rows differ only in how long the
answer takes, that is, in what the host runs in between.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time
from typing import Callable

from bench import harness, workloads
from bench.processes import ECHO_SERVICE, raw_stream
from policy_client import PolicyClient
from policy_client.wire.standins import TimeStep


def _threads() -> dict[str, int]:
    """Clock ticks of CPU of each thread of this process."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[tid] = int(fields[11]) + int(fields[12])
    return out


def measure(call: Callable[[], object], calls: int, warmup: int = 300) -> dict[str, object]:
    for _ in range(warmup):
        call()
    usage, ticks, start = resource.getrusage(resource.RUSAGE_SELF), _threads(), time.perf_counter()
    for _ in range(calls):
        call()
    wall, after, end = time.perf_counter() - start, _threads(), resource.getrusage(resource.RUSAGE_SELF)
    cpu = end.ru_utime + end.ru_stime - usage.ru_utime - usage.ru_stime
    per_thread = sorted(((after[t] - ticks.get(t, 0)) / os.sysconf("SC_CLK_TCK") / calls * 1e6 for t in after),
                        reverse=True)
    return {"cpu_us": cpu / calls * 1e6, "wall_us": wall / calls * 1e6,
            "threads_us": [round(x) for x in per_thread if x >= 1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    server = harness.Server("cartpole").ready()
    echo = harness.EchoServer(multiprocessing.get_context("spawn"), server.response_bytes())
    observations = workloads.Observations("cartpole", 0)
    encoder = PolicyClient("127.0.0.1:1", "cartpole")  # encode_request only; never connects
    client = PolicyClient(server.address, "cartpole", data_plane="grpc", timeout=30)
    try:
        def step() -> TimeStep:
            return TimeStep(**workloads.step_fields(observations()))

        def encoded() -> bytes:
            return encoder.encode_request(step()).SerializeToString()

        to_server, close_server = raw_stream(server.address, "/tfa_policy_grpc.v1.PolicyService/ActionStream")
        to_echo, close_echo = raw_stream(echo.address, f"/{ECHO_SERVICE}/Stream")
        callers = {"PolicyClient -> CartPole server": lambda: client.action(step()),
                   "raw stream   -> CartPole server": lambda: to_server(encoded()),
                   "raw stream   -> echo server": lambda: to_echo(encoded())}
        for round_ in range(args.rounds):
            for name, call in callers.items():
                m = measure(call, args.calls)
                print(f"round {round_ + 1}  {name}: {m['cpu_us']:4.0f} us CPU/call, {m['wall_us']:5.0f} us wall/call;"
                      f" threads {m['threads_us']} us", flush=True)
        close_server(), close_echo()
    finally:
        client.close(), encoder.close()
        server.stop(), echo.stop()


if __name__ == "__main__":
    main()
