"""`make bench`: local-policy actors vs RemotePolicy / PolicyClient actors vs raw gRPC, in one run (issue 19)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import multiprocessing
import os
import platform
import signal
import tempfile
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench import forkservers, harness, repeats, report, workloads  # noqa: E402

RESULTS = harness.ROOT / "bench" / "results"
ACTORS = (1, 4, 16)
# The kinds whose actor RSS comes from a fresh process of its own (harness.probe_rss).
RSS_KINDS = ("local", "remote", "remote_shm", "client", "client_shm")
# Hundreds of actors on one box (issue 33): 16 processes, each with ROWS actors as batched rows of one call
# (a vectorized environment), as threads with a PolicyClient each (over gRPC), or batched over shared memory.
MANY = (("vectorized, gRPC", "client", 4), ("vectorized, gRPC", "client", 16),
        ("threads, gRPC", "client_threads", 4), ("threads, gRPC", "client_threads", 16),
        ("vectorized, shared memory", "client_shm", 4), ("vectorized, shared memory", "client_shm", 16))
CONTENDED = 0.10  # a point taken while other processes held more of the CPU is measured again (and marked)
REPEATS_IF_CONTENDED = 2
KNOBS = (("--max-batch-delay-ms 1", ("--max-batch-delay-ms",)),
         ("--min-batch-size 8 --min-batch-timeout-ms 2", ("--min-batch-size", "--min-batch-timeout-ms")),
         ("--target-latency-ms 10", ("--target-latency-ms",)))


def codec_bench() -> dict[str, Any]:
    """Encode + serialize + parse + decode of an Atari-sized and a CartPole time step (here; best of 5)."""
    from policy_client import wire  # pylint: disable=import-outside-toplevel
    from policy_client.wire.generated import types_pb2  # pylint: disable=import-outside-toplevel
    from policy_client.wire.standins import TimeStep  # pylint: disable=import-outside-toplevel

    results = {}
    for name, workload in (("atari_84x84x4_uint8", "atari"), ("cartpole", "cartpole")):
        step = TimeStep(**workloads.step_fields(workloads.Observations(workload)()))

        def round_trip(step=step):
            data = wire.time_step_to_proto(step).SerializeToString()
            return wire.time_step_from_proto(types_pb2.TimeStep.FromString(data)), len(data)

        decoded, size = round_trip()
        means = []
        for _ in range(5):  # best of 5 (as timeit): the machine is shared
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < 0.2:
                round_trip()
                n += 1
            means.append((time.perf_counter() - start) / n)
        micros = min(means) * 1e6
        observation = decoded.observation
        results[name] = {"round_trip_us": micros, "bytes": size, "gb_per_s": size / micros / 1e3,
                         "decoded_observation_is_a_view": bool(observation.base is not None
                                                               and not observation.flags.owndata)}
    return results


def plan(quick: bool, workload: str, kind: str) -> tuple[int, ...]:
    """Actor counts measured for (workload, kind): all of ACTORS, or only the target points with --quick."""
    if not quick or kind == "local":  # the best local setup is the best of 1, 4 and 16 actors
        return ACTORS
    if workload == "cartpole" and kind in ("remote", "remote_shm"):
        return (1, 16)
    return (16,)


class Bench:
    """One benchmark run, in phases that each hold one heavy pool: local actors, RemotePolicy actors, then the
    light (TF-free) PolicyClient and echo actors. Every server starts up front; `close` stops everything."""

    def __init__(self, args: argparse.Namespace):
        self.args, self.quick = args, args.quick
        self.ctx = multiprocessing.get_context(args.start_method)
        if args.start_method == "forkserver":
            # The actors fork from one process that has imported gRPC and numpy (not TensorFlow: the
            # TF-free actors must stay free of it), so they share its memory layout. Spawned actors
            # each get their own layout, which makes every context switch dearer with more
            # processes than cores (see docs/benchmarks.md).
            self.ctx.set_forkserver_preload(["grpc", "numpy", "bench.processes"])
        # The actors that import TensorFlow (local policies, RemotePolicy) fork from a second
        # forkserver that imported it, for the same reason (bench/forkservers.py).
        self.tf_ctx = forkservers.context() if args.start_method == "forkserver" else self.ctx
        self.stack = contextlib.ExitStack()
        self.tmp = self.stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
        self.sockets = itertools.count()
        self.rss: dict[tuple[str, str], float] = {}

    def close(self) -> None:
        self.stack.close()

    def log(self, text: str) -> None:
        print(f"[{time.time() - self.args.started:5.0f}s] {text}", flush=True)

    def pool(self, kind: str, size: int = max(ACTORS)) -> harness.Pool:
        pool = harness.Pool(self.tf_ctx if kind in ("local", "remote") else self.ctx, size, kind)
        self.stack.callback(pool.close)
        return pool

    def server(self, workload: str, extra: tuple[str, ...] = (), unix: bool = False) -> harness.Server:
        path = os.path.join(self.tmp, f"{workload}-{next(self.sockets)}.sock") if unix else None
        server = harness.Server(workload, extra, unix_path=path)
        self.stack.callback(server.stop)
        return server

    def echo(self, response: bytes, unix: bool = False) -> harness.EchoServer:
        path = os.path.join(self.tmp, f"echo-{next(self.sockets)}.sock") if unix else None
        echo = harness.EchoServer(self.ctx, response, unix_path=path)
        self.stack.callback(echo.stop)
        return echo

    def point(self, pool: harness.Pool, kind: str, workload: str, address: str, counts: tuple[int, ...],
              server: Any = None, rows: int = 0) -> list[dict[str, Any]]:
        """Measures `kind` actors at each count (one caller per actor, built once; released unless local)."""
        if not counts:
            return []
        key = (kind, workload, address, rows)
        pool.prepare(key, max(counts), kind, workload, address, rows)
        points = []
        for n in sorted(counts, reverse=True):  # 16 first: GetStats' inference p50 then covers only its batches
            per = "threads each" if kind == "client_threads" else "rows per call"
            self.log(f"{workload}: {n:2d} x {kind}{' over unix:' if address.startswith('unix:') else ''}"
                     f"{f', {rows} {per}' if rows else ''}")
            point = harness.measure(pool, key, n, self.args.warmup, self.args.seconds, server, rows)
            for _ in range(REPEATS_IF_CONTENDED):  # other processes took the CPU: measure again, keep the quietest
                if (point.get("foreign_cpu_share") or 0.0) <= CONTENDED:
                    break
                self.log(f"  other processes held {point['foreign_cpu_share']:.0%} of the CPU: measuring again")
                again = harness.measure(pool, key, n, self.args.warmup, self.args.seconds, server, rows)
                point = min(point, again, key=lambda p: p.get("foreign_cpu_share") or 0.0)
            point["contended"] = (point.get("foreign_cpu_share") or 0.0) > CONTENDED
            if (kind, workload) in self.rss:  # the fresh process's RSS (see harness.probe_rss)
                point["actor_rss_mb_forked"], point["actor_rss_mb"] = point["actor_rss_mb"], self.rss[kind, workload]
            points.append(point)
        if kind != "local":
            pool.release(key, max(counts))
        return sorted(points, key=lambda p: p["actors"])

    def many_actors(self, pool: harness.Pool, server: harness.Server) -> list[dict[str, Any]]:
        """CartPole with 64 and 256 actors in 16 processes (MANY; only the 256 points with --quick)."""
        points = []
        for layout, kind, rows in MANY:
            if self.quick and rows != 16:
                continue
            point = self.point(pool, kind, "cartpole", server.address, (16,), server, rows=rows)[0]
            points.append({"layout": layout, "actors_total": 16 * rows, **point})
        return points

    def knob_servers(self) -> list[tuple[str, Any]]:
        """(flags, started server or why not) for each batching knob of the CartPole knob table."""
        out: list[tuple[str, Any]] = []
        for flags, needed in KNOBS:
            missing = [f for f in needed if not harness.has_flag(f)]
            out.append((flags, f"not available (policy-server has no {' '.join(missing)})" if missing
                        else self.server("cartpole", tuple(flags.split()))))
        return out

    def run(self) -> dict[str, Any]:
        args, quick, names = self.args, self.quick, workloads.WORKLOADS
        r: dict[str, Any] = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "start_method": args.start_method, "seconds_per_point": args.seconds, "warmup_s": args.warmup,
            "quick": quick, "date": time.strftime("%Y-%m-%d"), "workloads": {w: {"rows": {}} for w in names}}
        self.log("codec round trips")
        r["codec"] = codec_bench()
        self.log("starting the policy servers, the RSS floor process and the local-policy actors")
        floor = harness.RssFloor(self.ctx)
        self.stack.callback(floor.stop)
        servers = {w: self.server(w) for w in names}
        unix_ok = not quick and harness.has_flag("--address")
        unix_servers = {w: self.server(w, unix=True) for w in names} if unix_ok else {}
        local = self.pool("local")
        light = {kind: self.pool(kind) for kind in ("client", "echo")}
        for server in [*servers.values(), *unix_servers.values()]:
            server.ready()
        r["rss_floor_mb"] = floor.result()
        self.log("actor RSS, each kind in a fresh process")
        self.rss = harness.probe_rss(self.ctx, [(kind, w, "" if kind == "local" else servers[w].address)
                                                for w in names for kind in RSS_KINDS])
        responses = {w: servers[w].response_bytes() for w in names}
        echos = {w: self.echo(responses[w]) for w in names}
        echos_unix = {w: self.echo(responses[w], unix=True) for w in names} if unix_ok else {}
        for w in names:
            r["workloads"][w]["response_bytes"] = len(responses[w])
            r["workloads"][w]["unix"] = {} if unix_ok else {"unavailable": "not measured (--quick)" if quick else
                                                            "not available (policy-server has no --address)"}
        for w in names:  # phase 1: one local policy per actor process
            r["workloads"][w]["rows"]["local"] = self.point(local, "local", w, "", plan(quick, w, "local"))
        local.close()
        self.log("starting the RemotePolicy actors" + ("" if quick else " and the batching-knob servers"))
        knobs = [] if quick else self.knob_servers()
        remote = self.pool("remote")
        for _, server in knobs:
            if isinstance(server, harness.Server):
                server.ready()
        for w in names:  # phase 2: RemotePolicy
            out = r["workloads"][w]
            out["rows"]["remote"] = self.point(remote, "remote", w, servers[w].address, plan(quick, w, "remote"),
                                               servers[w])
            out["rows"]["remote_shm"] = self.point(remote, "remote_shm", w, servers[w].address,
                                                   plan(quick, w, "remote_shm"), servers[w])
            if w == "cartpole":
                out["vectorized_64_rows"] = self.point(remote, "remote", w, servers[w].address, (1,), servers[w],
                                                       rows=64)[0]
            if w in unix_servers:
                out["unix"]["remote"] = self.point(remote, "remote", w, unix_servers[w].address, (16,),
                                                   unix_servers[w])[0]
        default = next((p for p in r["workloads"]["cartpole"]["rows"]["remote"] if p["actors"] == 16), None)
        r["knobs"] = [{"flags": "default", **(default or {"unavailable": "not measured"})}]
        for flags, server in knobs:
            r["knobs"].append({"flags": flags, "unavailable": server} if isinstance(server, str) else
                              {"flags": flags, **self.point(remote, "remote", "cartpole", server.address, (16,),
                                                            server)[0]})
            if not isinstance(server, str):
                server.stop()
        if quick:
            r["knobs"].append({"flags": "other knobs", "unavailable": "not measured (--quick)"})
        remote.close()
        for w in names:  # phase 3: the TF-free PolicyClient, and the raw echo
            out = r["workloads"][w]
            out["rows"]["client"] = self.point(light["client"], "client", w, servers[w].address,
                                               plan(quick, w, "client"), servers[w])
            out["rows"]["client_shm"] = self.point(light["client"], "client_shm", w, servers[w].address,
                                                   plan(quick, w, "client_shm"), servers[w])
            out["rows"]["echo"] = self.point(light["echo"], "echo", w, echos[w].address, plan(quick, w, "echo"),
                                             echos[w])
            if w in unix_servers:
                out["unix"]["client"] = self.point(light["client"], "client", w, unix_servers[w].address, (16,),
                                                   unix_servers[w])[0]
                out["unix"]["echo"] = self.point(light["echo"], "echo", w, echos_unix[w].address, (16,),
                                                 echos_unix[w])[0]
            out["server_rss_mb"] = harness.processes.peak_rss_mb(servers[w].pid)
        r["many_actors"] = self.many_actors(light["client"], servers["cartpole"])
        self.close()  # every server and actor stopped before the peer starts its own
        for w in names:
            counts = ((16,) if args.peer_in_quick else ()) if quick else ACTORS
            peer = []
            for n in counts:
                self.log(f"{w}: {n:2d} actors, TorchRL peer")
                peer.append(harness.run_peer(w, n, args.seconds, args.warmup, args.start_method))
            r["workloads"][w]["rows"]["torchrl"] = peer or [{"actors": 16, "unavailable": "not measured (--quick)"}]
        r["targets"] = report.targets(r)
        r["torchrl_ratios"] = report.torchrl_ratios(r)
        return r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="target points only (at most ~3 minutes)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per point (5; 2 with --quick)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per point (2; 1 with --quick)")
    parser.add_argument("--start-method", default="forkserver", choices=multiprocessing.get_all_start_methods(),
                        help="multiprocessing start method of every actor process (default: forkserver)")
    parser.add_argument("--readme", action=argparse.BooleanOptionalAction, default=None,
                        help="rewrite docs/benchmarks.md's report and README.md's headline ratios (default: on "
                             "for full runs, off with --quick)")
    parser.add_argument("--peer-in-quick", action="store_true", help="with --quick, also run the TorchRL peer at 16")
    parser.add_argument("--repeat", type=int, default=None,
                        help="run the whole benchmark this many times in a row and report medians (3; 1 with --quick)")
    parser.add_argument("--out", default=str(RESULTS), help="results directory (default: bench/results)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="abort (stopping every process) after this many seconds (900 per run; 360 with --quick)")
    parser.add_argument("--from-json", metavar="RESULTS_JSON",
                        help="measure nothing: re-render results.md, the plot (and the docs with --readme) from a run")
    args = parser.parse_args()
    if args.from_json:
        return render(json.loads(harness.pathlib.Path(args.from_json).read_text()), args.out, bool(args.readme))
    args.seconds = args.seconds if args.seconds is not None else (2.0 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.readme = (not args.quick) if args.readme is None else args.readme
    args.repeat = max(1, args.repeat if args.repeat is not None else (1 if args.quick else 3))
    args.started = time.time()
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(int(args.time_limit or (360 if args.quick else 900) * args.repeat))  # the finally below stops everything
    runs = []
    try:
        for i in range(args.repeat):
            started = time.time()
            if args.repeat > 1:
                print(f"[{started - args.started:5.0f}s] run {i + 1} of {args.repeat}", flush=True)
            bench = Bench(args)
            try:
                runs.append(bench.run())
            finally:
                bench.close()
            runs[-1]["duration_s"] = time.time() - started
    finally:
        signal.alarm(0)
    results = repeats.combine(runs)
    results["duration_s"] = time.time() - args.started
    return render(results, args.out, args.readme)


def render(results: dict[str, Any], out_dir: str, readme: bool) -> int:
    """Writes results.json, results.md and actions_per_s.png to `out_dir` (and, if `readme`, the report into
    docs/benchmarks.md with its plot, and the headline ratios into README.md)."""
    out = harness.pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_json_default))
    table = report.markdown(results)
    (out / "results.md").write_text(table)
    report.plot(results, out / "actions_per_s.png")
    if readme:
        assets = harness.pathlib.Path(report.ROOT) / "docs" / "assets"
        assets.mkdir(parents=True, exist_ok=True)
        report.plot(results, assets / "actions_per_s.png")
        report.update_docs(results, table, "python -m bench --quick" if results["quick"] else "make bench")
    print(table)
    print(f"bench took {results.get('duration_s', 0):.0f}s; wrote {out}/"
          f"{' and docs/benchmarks.md, README.md' if readme else ''}", flush=True)
    return 0


def _out_of_time(signum: int, frame: Any) -> None:
    raise TimeoutError("bench: --time-limit reached; stopping every server and actor")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value)}")


if __name__ == "__main__":
    raise SystemExit(main())
