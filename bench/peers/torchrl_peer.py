#!/usr/bin/env python3
"""Peer benchmark: TorchRL's InferenceServer serving N actor processes on this host.

Run with the peer venv (bench/peers/setup_torchrl.sh creates it):

    .venv-torchrl/bin/python bench/peers/torchrl_peer.py \
        --workload cartpole --actors 16 --seconds 5 --warmup 2 --json out.json

The server is ``torchrl.modules.inference_server.InferenceServer`` (its
auto-batching loop runs in a thread of this, the parent, process) behind
``ProcessSlotTransport``: TorchRL's fixed-slot shared-memory transport, where
each actor owns one request/response slot in CPU shared memory and only a
semaphore / event cross processes on the hot path. It is the transport TorchRL's
own ``benchmarks/bench_inference_server.py`` and ``AsyncBatchedCollector`` use
for process workers. ``--transport shared_memory`` selects the older
``SharedMemoryTransport`` (slot banks, slot indices through mp queues).

N actor processes (``--start-method``, default spawn) each make one unbatched
call at a time with a fresh random observation, closed loop, with
``torch.set_num_threads(1)``. After ``--warmup`` seconds every actor counts the
calls that start and end inside the next ``--seconds`` seconds. Random weights,
nothing downloaded, no network (not even loopback).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import platform
import queue
import sys
import threading
import time
from typing import Any

import numpy as np
import torch
from torch import nn

CALL_TIMEOUT_S = 10.0  # one call longer than this aborts the actor (server gone)
STARTUP_TIMEOUT_S = 180.0  # all actors imported torch and made a first call


# ----------------------------------------------------------------------------- workloads


class CartPoleQ(nn.Module):
    """MLP 4 -> 64 -> 64 -> 2 (ReLU), greedy action = argmax."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.net(observation).argmax(dim=-1)


class NatureDQN(nn.Module):
    """Nature DQN on uint8 (4, 84, 84) scaled by 1/255, 6 actions, greedy argmax."""

    def __init__(self, num_actions: int = 6) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(),
            nn.Linear(512, num_actions))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.net(observation.float() * (1.0 / 255.0)).argmax(dim=-1)


WORKLOADS: dict[str, dict[str, Any]] = {
    "cartpole": {"shape": (4,), "dtype": torch.float32, "module": CartPoleQ},
    "atari": {"shape": (4, 84, 84), "dtype": torch.uint8, "module": NatureDQN},
}


@dataclasses.dataclass
class PolicyFactory:
    """Picklable policy constructor (used as is, or inside a server process)."""

    workload: str
    seed: int = 0

    def __call__(self):
        from tensordict.nn import TensorDictModule  # pylint: disable=import-outside-toplevel

        torch.manual_seed(self.seed)  # random weights, fixed for repeatability
        module = WORKLOADS[self.workload]["module"]().eval().requires_grad_(False)
        return TensorDictModule(module, in_keys=["observation"], out_keys=["action"])


def specs(workload: str):
    from tensordict import TensorDict  # pylint: disable=import-outside-toplevel

    w = WORKLOADS[workload]
    request = TensorDict({"observation": torch.zeros(w["shape"], dtype=w["dtype"])})
    response = TensorDict({"action": torch.zeros((), dtype=torch.long),
                           "policy_version": torch.zeros((), dtype=torch.long)})
    return request, response


# ----------------------------------------------------------------------------- helpers


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM (peak resident set, shared pages included) of a process, in MB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all threads), from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:9]]
    hz = os.sysconf("SC_CLK_TCK")
    total = sum(ticks)
    return (total - ticks[3] - ticks[4]) / hz, total / hz


def _fill(observation: torch.Tensor) -> None:
    if observation.dtype == torch.uint8:
        observation.random_(0, 256)
    else:
        observation.normal_()


# ----------------------------------------------------------------------------- actor


def actor_main(index: int, client: Any, workload: str, window: Any, go: Any,
               ready: Any, results: Any) -> None:
    """Actor process: closed loop of unbatched calls; reports its own measurements."""
    torch.set_num_threads(1)
    from tensordict import TensorDict  # pylint: disable=import-outside-toplevel

    w = WORKLOADS[workload]
    observation = torch.empty(w["shape"], dtype=w["dtype"])
    request = TensorDict({"observation": observation})
    try:
        for _ in range(3):  # first calls: lazy init on both sides
            _fill(observation)
            int(client(request, timeout=CALL_TIMEOUT_S)["action"])
        ready.put(index)
        if not go.wait(timeout=STARTUP_TIMEOUT_S + 30):
            return
        t0, t1 = window[0], window[1]
        monotonic, latencies = time.monotonic, []
        while True:
            _fill(observation)  # a fresh random observation for every call
            start = monotonic()
            if start >= t1:
                break
            action = int(client(request, timeout=CALL_TIMEOUT_S)["action"])
            end = monotonic()
            if start >= t0 and end <= t1:
                latencies.append(end - start)
        assert 0 <= action < 64
        results.put({"index": index, "latencies": latencies, "peak_rss_mb": peak_rss_mb(), "torch_threads": torch.get_num_threads()})
    except BaseException as exc:  # pylint: disable=broad-except
        results.put({"index": index, "error": f"{type(exc).__name__}: {exc}"})


# ----------------------------------------------------------------------------- server side


def make_transport(kind: str, workload: str, actors: int, ctx: Any):
    from torchrl.modules.inference_server import (  # pylint: disable=import-outside-toplevel
        ProcessSlotTransport, SharedMemoryTransport)

    request, response = specs(workload)
    if kind == "process_slot":
        return ProcessSlotTransport(request, response, num_slots=actors, ctx=ctx)
    if kind == "shared_memory":
        return SharedMemoryTransport(request, response, num_slots=actors, ctx=ctx)
    raise ValueError(kind)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import tensordict  # pylint: disable=import-outside-toplevel
    import torchrl  # pylint: disable=import-outside-toplevel
    from torchrl.modules.inference_server import (  # pylint: disable=import-outside-toplevel
        InferenceServer, ProcessInferenceServer)

    ctx = mp.get_context(args.start_method)
    transport = make_transport(args.transport, args.workload, args.actors, ctx)
    request_spec, _ = specs(args.workload)
    server_kwargs = {"max_batch_size": args.actors, "stats_window_size": 10_000_000}
    if args.server_backend == "thread":
        server = InferenceServer(PolicyFactory(args.workload)(), transport, **server_kwargs)
    else:
        server = ProcessInferenceServer(policy_factory=PolicyFactory(args.workload), transport=transport,
                                        request_spec=request_spec, mp_context=ctx, **server_kwargs)
    clients = server.clients(args.actors)  # before the actors start: they inherit the slots
    window = ctx.Array("d", 2, lock=False)
    go, ready, results = ctx.Event(), ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=actor_main, name=f"torchrl-actor-{i}", daemon=True,
                         args=(i, clients[i], args.workload, window, go, ready, results))
             for i in range(args.actors)]
    server.start()
    server_pid = os.getpid() if args.server_backend == "thread" else server._process.pid  # pylint: disable=protected-access
    try:
        for proc in procs:
            proc.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        n_ready = 0
        while n_ready < args.actors:
            try:
                ready.get(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
                n_ready += 1
            except queue.Empty:
                dead = [p.name for p in procs if p.exitcode is not None]
                if dead or time.monotonic() > deadline:
                    early = []
                    while True:
                        try:
                            early.append(results.get_nowait())
                        except queue.Empty:
                            break
                    raise RuntimeError(f"actors not ready ({n_ready}/{args.actors}); exited: {dead}; {early}")
        t0 = time.monotonic() + args.warmup
        t1 = t0 + args.seconds
        window[0], window[1] = t0, t1
        go.set()
        time.sleep(max(0.0, t0 - time.monotonic()))
        server.stats(reset=True)
        machine0 = machine_cpu_s()
        cpu0 = proc_cpu_s(server_pid)
        actor_cpu0 = [proc_cpu_s(p.pid) for p in procs]
        time.sleep(max(0.0, t1 - time.monotonic()))
        cpu1 = proc_cpu_s(server_pid)
        actor_cpu1 = [proc_cpu_s(p.pid) for p in procs]
        machine1 = machine_cpu_s()
        stats = server.stats()
        server_rss = peak_rss_mb(server_pid)
        reports = []
        collect_deadline = time.monotonic() + CALL_TIMEOUT_S + 20
        while len(reports) < args.actors:
            reports.append(results.get(timeout=max(0.1, collect_deadline - time.monotonic())))
    finally:
        go.set()
        for proc in procs:
            proc.join(timeout=5)
        for proc in procs:  # stragglers
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=2)
        server.shutdown(timeout=5)

    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise RuntimeError(f"actor errors: {errors}")
    latencies = np.concatenate([np.asarray(r["latencies"], dtype=np.float64) for r in reports])
    actions = int(latencies.size)
    if actions == 0:
        raise RuntimeError("no call completed in the measurement window")
    client_cpu = sum(b - a for a, b in zip(actor_cpu0, actor_cpu1))
    server_cpu = cpu1 - cpu0
    busy, total = machine1[0] - machine0[0], machine1[1] - machine0[1]
    foreign = max(0.0, busy - server_cpu - client_cpu)
    foreign_share = foreign / total if total > 0 else float("nan")
    if foreign_share > 0.05:
        print(f"torchrl_peer: WARNING other processes used {100 * foreign_share:.0f}% of the machine's CPU "
              "during the window; the numbers are not clean", file=sys.stderr, flush=True)
    actor_rss = [r["peak_rss_mb"] for r in reports]
    return {
        "peer": "torchrl.InferenceServer",
        "workload": args.workload,
        "actors": args.actors,
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "actions": actions,
        "actions_per_s": actions / args.seconds,
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
        "mean_batch_size": float(stats["avg_batch_size"]),
        "mean_batch_size_source": "InferenceServer.stats()['avg_batch_size'] over the window",
        "server_batches": int(stats["batches"]),
        "server_requests": int(stats["requests"]),
        "server_p50_forward_ms": float(stats["p50_forward_ms"]),
        "server_p50_queue_ms": float(stats["p50_queue_ms"]),
        "server_cpu_us_per_action": server_cpu / actions * 1e6,
        "client_cpu_us_per_action": client_cpu / actions * 1e6,
        "client_cpu_note": "sum over actors of process CPU time (/proc) in the window, "
                           "includes making the random observation",
        "foreign_cpu_share": foreign_share,
        "foreign_cpu_note": "share of all the machine's CPU used by other processes during the window "
                            "(/proc/stat busy minus server and actors); > 0.05 means a contended run",
        "loadavg_1m_at_end": os.getloadavg()[0],
        "peak_rss_mb_server": server_rss,
        "peak_rss_mb_per_actor": {"mean": float(np.mean(actor_rss)), "max": float(np.max(actor_rss))},
        "rss_note": "VmHWM from /proc, shared pages (torch libraries, shm slots) included",
        "server_backend": args.server_backend,
        "server_torch_num_threads": torch.get_num_threads(),
        "server_torch_interop_threads": torch.get_num_interop_threads(),
        "actor_torch_num_threads": reports[0]["torch_threads"],
        "transport": type(transport).__name__,
        "start_method": args.start_method,
        "torch_version": torch.__version__,
        "torchrl_version": torchrl.__version__,
        "tensordict_version": tensordict.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "max_batch_size": args.actors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--json", dest="json_out", default=None, help="write the result here (and print it)")
    parser.add_argument("--start-method", default="spawn", choices=mp.get_all_start_methods())
    parser.add_argument("--transport", default="process_slot", choices=("process_slot", "shared_memory"))
    parser.add_argument("--server-backend", default="thread", choices=("thread", "process"),
                        help="thread: InferenceServer loop in this process; process: ProcessInferenceServer")
    args = parser.parse_args(argv)
    if args.actors < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("need --actors >= 1, --seconds > 0, --warmup >= 0")

    # Hard bound on the whole run: kill every child and exit if anything hangs.
    budget = STARTUP_TIMEOUT_S + args.warmup + args.seconds + CALL_TIMEOUT_S + 60

    def _watchdog() -> None:
        print(f"torchrl_peer: run exceeded {budget:.0f} s, killing it", file=sys.stderr, flush=True)
        for child in mp.active_children():
            child.kill()
        os._exit(3)  # pylint: disable=protected-access

    timer = threading.Timer(budget, _watchdog)
    timer.daemon = True
    timer.start()
    try:
        result = run(args)
    finally:
        timer.cancel()
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.json_out:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_out)), exist_ok=True)
        with open(args.json_out, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
