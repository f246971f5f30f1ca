"""`make bench-fleet`: replicas placed by Ray against the same servers started by hand, and the fleet's start-up.

On a simulated 3-node Ray cluster on 127.0.0.1 (policy_fleet.LocalCluster):

- **Start-up of the whole fleet**: the cluster, 2 CartPole replicas serving
  (`ReplicaSet.start`), and 4 fleet actors (`ActorFleet`, TF-free bodies)
  that have each acted once.
- **The action path**: 16 actor processes (TF-free PolicyClient,
  data_plane="grpc", one unbatched call at a time, closed loop; the same
  processes for every row, forked from a preloading forkserver, outside Ray)
  against 1 and 2 replicas, once started by Ray (`ReplicaSet`) and once by
  hand (`policy-server` subprocesses), in interleaved repetitions (no Ray, Ray,
  no Ray, Ray, ...). Ray only placed the servers: an action takes the same
  path, so actions/s and server CPU per action should match (ratio 1.0 within
  the noise). On 2 cores no speed-up from 2 replicas is expected: the actors
  and the servers already share both cores.

Writes bench/results/fleet.json and fleet.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import platform
import statistics
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import harness, scaleout, workloads  # noqa: E402

RESULTS = harness.ROOT / "bench" / "results"
WORKLOAD = scaleout.WORKLOAD


class _RayServer:
    """A Ray-placed replica as the harness sees a server: its address, its process, its stats."""

    def __init__(self, info: Any):
        self.address, self.pid = info.address, info.pid

    def stats(self) -> dict[str, Any]:
        from policy_client import PolicyClient  # pylint: disable=import-outside-toplevel

        with PolicyClient(self.address, WORKLOAD, timeout=30) as client:
            return client.stats()[0]


class Counter:
    """A TF-free fleet body for the start-up figure: unbatched CartPole calls, counted."""

    def __init__(self, index: int, target: Any):
        import numpy as np  # pylint: disable=import-outside-toplevel

        from policy_client import PolicyClient  # pylint: disable=import-outside-toplevel
        from policy_client.wire.standins import TimeStep  # pylint: disable=import-outside-toplevel

        self.client = PolicyClient(target, WORKLOAD, timeout=60)
        self.step = TimeStep(np.array(0, np.int32), np.array(0, np.float32), np.array(1, np.float32),
                             np.full(4, index, np.float32))
        self.calls = 0

    def run(self) -> None:
        for _ in range(10):
            self.client.action(self.step)
            self.calls += 1

    def report(self) -> dict[str, Any]:
        return {"calls": self.calls, "target": self.client.address}

    def close(self) -> None:
        self.client.close()


def startup(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds from nothing to a cluster, to replicas serving, to every fleet actor having acted."""
    from policy_fleet import ActorFleet, LocalCluster, ReplicaSet  # pylint: disable=import-outside-toplevel

    t0 = time.monotonic()
    with LocalCluster(nodes=3, num_cpus=4) as _:
        cluster = time.monotonic() - t0
        replicas = ReplicaSet.start(["--factory", workloads.factory_arg(WORKLOAD), "--stats-interval", "0",
                                     "--log-level", "WARNING"], replicas=2, num_cpus=1)
        serving = time.monotonic() - t0
        fleet = ActorFleet(replicas, Counter, 4, num_cpus=0.5)
        while True:
            reports = fleet.reports()
            if len(reports) == 4 and all(r.runs >= 1 for r in reports):
                break
            time.sleep(0.05)
        acting = time.monotonic() - t0
        fleet.stop()
        replicas.stop()
    return {"cluster_s": cluster, "replicas_serving_s": serving, "actors_acting_s": acting,
            "nodes_with_actors": len({r.node_id for r in reports})}


def action_path(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Interleaved repetitions of (no Ray, Ray) x (1, 2 replicas) with the same actor processes."""
    from policy_fleet import LocalCluster, ReplicaSet  # pylint: disable=import-outside-toplevel

    ctx = multiprocessing.get_context(args.start_method)
    if args.start_method == "forkserver":
        ctx.set_forkserver_preload(["grpc", "numpy", "bench.processes"])
    rows: list[dict[str, Any]] = []
    by_hand: list[harness.Server] = []
    pool = None
    with LocalCluster(nodes=3, num_cpus=4):
        try:
            by_hand = [harness.Server(WORKLOAD) for _ in range(2)]
            placed = ReplicaSet.start(["--factory", workloads.factory_arg(WORKLOAD), "--stats-interval", "0",
                                       "--log-level", "WARNING"], replicas=2, num_cpus=1)
            ray_servers = [_RayServer(i) for i in placed.infos()]
            for server in by_hand:
                server.ready()
            pool = harness.Pool(ctx, args.actors, "fleet")
            for repetition in range(args.repetitions):
                for count in (1, 2):
                    for label, servers in (("by hand", by_hand[:count]), ("Ray", ray_servers[:count])):
                        target = servers[0].address if count == 1 else "ipv4:" + ",".join(s.address for s in servers)
                        row = scaleout.point(pool, f"{count} replica(s), {label}", target, servers, args, "requests")
                        rows.append({**row, "placed_by": label, "replicas": count, "repetition": repetition})
            placed.stop()
        finally:
            if pool is not None:
                pool.close()
            for server in by_hand:
                server.stop()
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per (replicas, placed_by), and Ray / by hand per replica count, with the spread of the ratios."""
    out = []
    for count in (1, 2):
        med = {}
        for label in ("by hand", "Ray"):
            picked = [r for r in rows if r["replicas"] == count and r["placed_by"] == label]
            med[label] = {k: statistics.median(r[k] for r in picked)
                          for k in ("actions_per_s", "server_cpu_us_per_action", "p50_ms", "p99_ms")}
        pairs = [(a, b) for a in rows for b in rows if a["replicas"] == b["replicas"] == count
                 and a["placed_by"] == "by hand" and b["placed_by"] == "Ray" and a["repetition"] == b["repetition"]]
        ratios = [b["actions_per_s"] / a["actions_per_s"] for a, b in pairs]
        cpu = [b["server_cpu_us_per_action"] / a["server_cpu_us_per_action"] for a, b in pairs]
        out.append({"replicas": count, "by_hand": med["by hand"], "ray": med["Ray"],
                    "actions_ratio": statistics.median(ratios), "actions_ratio_range": [min(ratios), max(ratios)],
                    "server_cpu_ratio": statistics.median(cpu), "server_cpu_ratio_range": [min(cpu), max(cpu)]})
    return out


def markdown(r: dict[str, Any]) -> str:
    s = r["startup"]
    lines = [f"Machine: {r['machine']}; one run on {r['date']} ({r['duration_s']:.0f} s); a simulated 3-node Ray "
             f"cluster on 127.0.0.1; {r['actors']} CartPole actor processes (TF-free PolicyClient, gRPC, one unbatched "
             f"call at a time), the same for every row; {r['warmup_s']:g} s warm-up + {r['seconds_per_point']:g} s "
             f"measured per row; medians of {r['repetitions']} interleaved repetitions.", "",
             f"Start-up of the whole fleet: cluster {s['cluster_s']:.1f} s, 2 replicas serving "
             f"{s['replicas_serving_s']:.1f} s, 4 fleet actors acting {s['actors_acting_s']:.1f} s (on "
             f"{s['nodes_with_actors']} nodes).", "",
             "| replicas | placed by | actions/s | server CPU µs/action | p50 ms | p99 ms |", "|---:|---|---:|---:|---:|---:|"]
    for row in r["summary"]:
        for label, key in (("by hand", "by_hand"), ("Ray", "ray")):
            m = row[key]
            lines.append(f"| {row['replicas']} | {label} | {m['actions_per_s']:,.0f} | "
                         f"{m['server_cpu_us_per_action']:,.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
    lines += ["", "| replicas | actions/s, Ray / by hand | server CPU per action, Ray / by hand |", "|---:|---:|---:|"]
    for row in r["summary"]:
        a, c = row["actions_ratio_range"], row["server_cpu_ratio_range"]
        lines.append(f"| {row['replicas']} | {row['actions_ratio']:.2f} ({a[0]:.2f}–{a[1]:.2f}) | "
                     f"{row['server_cpu_ratio']:.2f} ({c[0]:.2f}–{c[1]:.2f}) |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=16, help="actor processes (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per row (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per row (default: %(default)s)")
    parser.add_argument("--repetitions", type=int, default=3, help="interleaved repetitions (default: %(default)s)")
    parser.add_argument("--start-method", default="forkserver", choices=multiprocessing.get_all_start_methods())
    parser.add_argument("--out", default=str(RESULTS), help="results directory (default: bench/results)")
    args = parser.parse_args()
    started = time.time()
    results: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                               "date": time.strftime("%Y-%m-%d"), "actors": args.actors, "warmup_s": args.warmup,
                               "seconds_per_point": args.seconds, "repetitions": args.repetitions}
    results["startup"] = startup(args)
    results["rows"] = action_path(args)
    results["summary"] = summary(results["rows"])
    results["duration_s"] = time.time() - started
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (out / "fleet.md").write_text(table)
    print(table, flush=True)
    print(f"wrote {out / 'fleet.json'} and {out / 'fleet.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
