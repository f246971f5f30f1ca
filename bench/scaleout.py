"""`make bench-scaleout`: 16 CartPole actors against 1 vs 3 replicas and against --workers 1 vs 2 (issue 14).

Each actor is a process with a TF-free PolicyClient (data_plane="grpc", TCP,
one unbatched call at a time, closed loop). Rows:

- 1 server process (`--workers 1`, one address): the baseline;
- 3 replicas (three server processes, each on its own port) behind one
  `ipv4:a,b,c` target, balanced round robin by the client;
- `--workers 2`: two server processes on one port (SO_REUSEPORT), balanced
  by the kernel per connection.

The share column says how the load split across the server processes:
requests answered per replica (GetStats), CPU seconds per worker (/proc; a
worker's GetStats is only the one a connection reaches). Writes
bench/results/scaleout.json and scaleout.md. The machine's core count and the
CPU others used meanwhile are in the output: on a machine with fewer cores
than server + actor processes, more server processes cannot add throughput.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import platform
import time
from typing import Any, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench import harness, processes  # noqa: E402

RESULTS = harness.ROOT / "bench" / "results"
WORKLOAD = "cartpole"


def _processes(server: harness.Server) -> list[int]:
    """The server's process and its children (the workers of --workers N)."""
    path = pathlib.Path(f"/proc/{server.pid}/task/{server.pid}/children")
    try:
        return [server.pid, *(int(p) for p in path.read_text().split())]
    except FileNotFoundError:
        return [server.pid]


def _cpu(pids: Sequence[int]) -> list[float]:
    out = []
    for pid in pids:
        try:
            out.append(processes.cpu_seconds(pid))
        except (FileNotFoundError, ProcessLookupError):
            out.append(0.0)
    return out


def _requests(servers: Sequence[harness.Server]) -> list[int]:
    return [s.stats()["requests"] for s in servers]


def point(pool: harness.Pool, label: str, address: str, servers: Sequence[harness.Server], args: argparse.Namespace,
          share_by: str) -> dict[str, Any]:
    """One measured row: `args.actors` PolicyClient actors on `address` (as harness.measure, over every server
    process)."""
    n, key = args.actors, ("client", WORKLOAD, address, 0)
    pool.prepare(key, n, "client", WORKLOAD, address, 0)
    pids = [pid for s in servers for pid in _processes(s)]
    start_at = time.time() + 0.3
    pool.start_run(key, n, start_at, args.warmup, args.seconds)
    time.sleep(max(0.0, start_at + args.warmup - time.time()))
    cpu0, machine0, requests0 = _cpu(pids), processes.machine_ticks(), _requests(servers)
    time.sleep(max(0.0, start_at + args.warmup + args.seconds - time.time()))
    cpu1, machine1, requests1 = _cpu(pids), processes.machine_ticks(), _requests(servers)
    outcomes = pool.finish_run(n, timeout=args.warmup + args.seconds + 120)
    pool.release(key, n)
    latencies = np.concatenate([o["latencies"] for o in outcomes]).astype(np.float64)
    actions = len(latencies)
    cpu = [b - a for a, b in zip(cpu0, cpu1)]
    busy, total = ((b - a) / processes.TICKS for a, b in zip(machine0, machine1))
    ours = sum(o["cpu_s"] for o in outcomes) + sum(cpu)
    if share_by == "requests":
        done = [b - a for a, b in zip(requests0, requests1)]
        share = [d / max(sum(done), 1) for d in done]
    else:  # the workers' CPU (the supervisor, pids[0], only watches)
        share = [c / max(sum(cpu[1:]), 1e-9) for c in cpu[1:]]
    return {"row": label, "actors": n, "server_processes": len(pids) - (share_by == "cpu"),
            "actions_per_s": actions / args.seconds,
            "p50_ms": float(np.percentile(latencies, 50) * 1e3) if actions else None,
            "p99_ms": float(np.percentile(latencies, 99) * 1e3) if actions else None,
            "server_cpu_us_per_action": sum(cpu) / max(actions, 1) * 1e6,
            "client_cpu_us_per_action": sum(o["cpu_s"] for o in outcomes) / max(actions, 1) * 1e6,
            "share": [round(s, 3) for s in share], "share_by": share_by,
            "foreign_cpu_share": max(0.0, busy - ours) / total if total > 0 else None}


def markdown(r: dict[str, Any]) -> str:
    lines = [f"Machine: {r['machine']} (shared with other users: see 'other CPU %'); start method "
             f"`{r['start_method']}`; {r['warmup_s']:g} s warm-up + {r['seconds_per_point']:g} s measured per row; "
             f"{r['actors']} CartPole actor processes, each a TF-free PolicyClient (data_plane=\"grpc\", TCP, one "
             f"unbatched call at a time, closed loop); one run on {r['date']} ({r['duration_s']:.0f} s). Server CPU: "
             "utime+stime of every server process over the window. Split: requests per replica (GetStats), CPU "
             "per worker (/proc).", "",
             "| row | server processes | actions/s | p50 ms | p99 ms | server CPU µs/action | client CPU µs/action "
             "| split | other CPU % |", "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for p in r["rows"]:
        split = " / ".join(f"{s:.0%}" for s in p["share"]) + f" ({p['share_by']})"
        lines.append(f"| {p['row']} | {p['server_processes']} | {p['actions_per_s']:,.0f} | {p['p50_ms']:.2f} | "
                     f"{p['p99_ms']:.2f} | {p['server_cpu_us_per_action']:,.0f} | "
                     f"{p['client_cpu_us_per_action']:,.0f} | {split} | {100 * (p['foreign_cpu_share'] or 0):.0f} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> dict[str, Any]:
    ctx = multiprocessing.get_context(args.start_method)
    if args.start_method == "forkserver":
        ctx.set_forkserver_preload(["grpc", "numpy", "bench.processes"])
    started, servers = time.time(), []
    pool = None
    try:
        one = harness.Server(WORKLOAD, ("--workers", "1"))
        replicas = [harness.Server(WORKLOAD) for _ in range(3)]
        two = harness.Server(WORKLOAD, ("--workers", "2"))
        servers = [one, *replicas, two]
        pool = harness.Pool(ctx, args.actors, "scaleout")
        for server in servers:
            server.ready()
        target = "ipv4:" + ",".join(s.address for s in replicas)
        rows = [point(pool, "1 server process (--workers 1)", one.address, [one], args, "requests"),
                point(pool, "3 replicas, ipv4: list, round_robin", target, replicas, args, "requests"),
                point(pool, "--workers 2, one port (SO_REUSEPORT)", two.address, [two], args, "cpu")]
    finally:
        if pool is not None:
            pool.close()
        for server in servers:
            server.stop()
    return {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "start_method": args.start_method, "seconds_per_point": args.seconds, "warmup_s": args.warmup,
            "actors": args.actors, "date": time.strftime("%Y-%m-%d"), "rows": rows,
            "duration_s": time.time() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=16, help="actor processes (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per row (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per row (default: %(default)s)")
    parser.add_argument("--start-method", default="forkserver", choices=multiprocessing.get_all_start_methods())
    parser.add_argument("--out", default=str(RESULTS), help="results directory (default: bench/results)")
    args = parser.parse_args()
    results = run(args)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaleout.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (out / "scaleout.md").write_text(table)
    print(table, flush=True)
    print(f"wrote {out / 'scaleout.json'} and {out / 'scaleout.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
