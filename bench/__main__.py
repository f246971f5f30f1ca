"""`make bench`: the backend against the local policy and against raw gRPC, in one run.

Writes bench/results/results.json, results.md, actions_per_s.png and the table
in README.md (between the bench markers). Every ratio compares numbers
measured in this same run on this machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pathlib
import platform
import re
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench import workers  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CONCURRENCY = (1, 4, 16, 64)


def _pct(latencies: np.ndarray, q: float) -> float:
    return float(np.percentile(latencies, q) * 1e3) if len(latencies) else float("nan")


def _summary(latencies: np.ndarray, seconds: float, rows: int = 1) -> dict[str, float]:
    return {"calls_per_s": len(latencies) / seconds, "actions_per_s": len(latencies) * rows / seconds,
            "p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99)}


def local_baselines(seconds: float) -> dict[str, Any]:
    """Unbatched action() of the CartPole QPolicy: PyTFEagerPolicy(tf.function) and graph PyTFPolicy."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tf_agents.networks import q_network  # pylint: disable=import-outside-toplevel
    from tf_agents.policies import greedy_policy, py_tf_eager_policy, py_tf_policy, q_policy  # pylint: disable=import-outside-toplevel
    from tf_agents.trajectories import time_step as ts  # pylint: disable=import-outside-toplevel

    from examples import cartpole as demo_policy  # pylint: disable=import-outside-toplevel

    time_step = ts.restart(workers.cartpole_time_step().observation)
    eager = py_tf_eager_policy.PyTFEagerPolicy(demo_policy.cartpole_q_policy(), use_tf_function=True)
    results = {"eager": _summary(workers.timed_loop(lambda: eager.action(time_step), seconds, 0.5), seconds)}
    graph = tf.Graph()
    with graph.as_default():
        network = q_network.QNetwork(demo_policy.OBSERVATION_SPEC, demo_policy.ACTION_SPEC, fc_layer_params=(64, 64))
        policy = py_tf_policy.PyTFPolicy(greedy_policy.GreedyPolicy(
            q_policy.QPolicy(demo_policy.cartpole_time_step_spec(), demo_policy.ACTION_SPEC, q_network=network)))
        policy.session = tf.compat.v1.Session(graph=graph)
        policy.initialize(None)
    results["graph"] = _summary(workers.timed_loop(lambda: policy.action(time_step), seconds, 0.5), seconds)
    return results


def codec_bench() -> dict[str, Any]:
    """Encode + serialize + parse + decode of an Atari-sized and a CartPole time step."""
    from policy_client import wire  # pylint: disable=import-outside-toplevel
    from policy_client.wire.generated import types_pb2  # pylint: disable=import-outside-toplevel
    from policy_client.wire.standins import TimeStep  # pylint: disable=import-outside-toplevel

    atari = TimeStep(np.int32(1), np.float32(0), np.float32(1),
                     np.random.default_rng(0).integers(0, 255, (84, 84, 4), dtype=np.uint8))
    results = {}
    for name, step in (("atari_84x84x4_uint8", atari), ("cartpole", workers.cartpole_time_step())):
        def round_trip(step=step):
            data = wire.time_step_to_proto(step).SerializeToString()
            return wire.time_step_from_proto(types_pb2.TimeStep.FromString(data)), len(data)

        decoded, size = round_trip()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < 1.0:
            round_trip()
            n += 1
        micros = (time.perf_counter() - start) / n * 1e6
        observation = decoded.observation
        results[name] = {"round_trip_us": micros, "bytes": size, "gb_per_s": size / micros / 1e3,
                         "decoded_observation_is_a_view": observation.base is not None
                         and not observation.flags.owndata}
    return results


class Pool:
    """Persistent light worker processes (numpy + gRPC, no TensorFlow)."""

    def __init__(self, size: int):
        ctx = multiprocessing.get_context("spawn")
        self.results = ctx.Queue()
        self.commands = [ctx.Queue() for _ in range(size)]
        self.procs = [ctx.Process(target=workers.worker, args=(q, self.results), daemon=True)
                      for q in self.commands]
        for proc in self.procs:
            proc.start()

    def run(self, n: int, kind: str, address: str, mode: str, arg: Any, seconds: float,
            warmup: float = 1.0) -> list[np.ndarray]:
        start_at = time.time() + 2.0 + 0.02 * n  # time for every worker to connect
        for q in self.commands[:n]:
            q.put((kind, address, mode, arg, seconds, warmup, start_at))
        return [self.results.get(timeout=seconds + warmup + 120) for _ in range(n)]

    def close(self) -> None:
        for q in self.commands:
            q.put(None)
        for proc in self.procs:
            proc.join(timeout=10)


def _batch_delta(address: str, before: dict | None = None) -> dict:
    from policy_client import PolicyClient  # pylint: disable=import-outside-toplevel

    with PolicyClient(address, "cartpole") as client:
        now = client.stats()[0]
    if before is None:
        return now
    batches = now["batches"] - before["batches"]
    return {"mean_batch_size": (now["rows"] - before["rows"]) / batches if batches else 0.0}


def _client_summary(outcomes: list, seconds: float, rows: int = 1) -> dict[str, Any]:
    latencies = np.concatenate([o[0] for o in outcomes])
    cpu_us = sum(o[1] for o in outcomes) / max(len(latencies), 1) * 1e6
    return {**_summary(latencies, seconds, rows), "client_cpu_us_per_call": cpu_us, "actors": len(outcomes)}


def remote_run(pool: Pool, address: str, n: int, mode: str, rows: int, seconds: float) -> dict[str, Any]:
    before = _batch_delta(address)
    result = _client_summary(pool.run(n, "policy", address, mode, rows, seconds), seconds, max(rows, 1))
    result.update(_batch_delta(address, before))
    return result


def echo_run(pool: Pool, address: str, n: int, mode: str, payload: bytes, seconds: float) -> dict[str, Any]:
    return _client_summary(pool.run(n, "echo", address, mode, payload, seconds), seconds)


def run(seconds: float) -> dict[str, Any]:
    from examples.serving_demo import start_server, stop_server  # pylint: disable=import-outside-toplevel

    results: dict[str, Any] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                               "seconds_per_point": seconds}
    print("local baselines ...", flush=True)
    results["local"] = local_baselines(seconds)
    print("codec ...", flush=True)
    results["codec"] = codec_bench()
    ctx = multiprocessing.get_context("spawn")
    stop, ports = ctx.Event(), ctx.Queue()
    echo = ctx.Process(target=workers.serve_echo, args=(ports, stop), daemon=True)
    echo.start()
    echo_address = f"127.0.0.1:{ports.get(timeout=60)}"
    batched, batched_address = start_server(["--demo", "--max-batch-size", "64"])
    unbatched, unbatched_address = start_server(["--demo", "--max-batch-size", "1"])
    pool = Pool(max(CONCURRENCY))
    payload = workers.request_bytes()
    try:
        print("one remote actor ...", flush=True)
        results["one_actor"] = {mode: remote_run(pool, batched_address, 1, mode, 0, seconds)
                                for mode in ("stream", "unary")}
        series = {"remote_batched": [], "remote_unbatched": [], "echo_stream": [], "echo_unary": []}
        for n in CONCURRENCY:
            print(f"{n} concurrent actors ...", flush=True)
            series["remote_batched"].append(remote_run(pool, batched_address, n, "stream", 0, seconds))
            series["remote_unbatched"].append(remote_run(pool, unbatched_address, n, "stream", 0, seconds))
            series["echo_stream"].append(echo_run(pool, echo_address, n, "stream", payload, seconds))
            series["echo_unary"].append(echo_run(pool, echo_address, n, "unary", payload, seconds))
        results["concurrent"] = series
        print("vectorized actor ...", flush=True)
        results["vectorized_64_rows"] = remote_run(pool, batched_address, 1, "stream", 64, seconds)
    finally:
        pool.close()
        stop.set()
        echo.join(timeout=10)
        stop_server(batched)
        stop_server(unbatched)
    results["targets"] = targets(results)
    return results


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the benchmark issue: the measured ratio, the bound, met or not."""
    at16 = {k: next(x for x in v if x["actors"] == 16) for k, v in r["concurrent"].items()}
    local_eager = r["local"]["eager"]
    one_stream = r["one_actor"]["stream"]
    atari = r["codec"]["atari_84x84x4_uint8"]
    rows = [
        ("one actor, stream: p50 latency / local PyTFEagerPolicy p50", one_stream["p50_ms"] / local_eager["p50_ms"],
         "<=", 1.5),
        ("16 actors: actions/s / local PyTFEagerPolicy calls/s",
         at16["remote_batched"]["actions_per_s"] / local_eager["calls_per_s"], ">=", 4.0),
        ("16 actors: batched / batching off (max_batch_size=1)",
         at16["remote_batched"]["actions_per_s"] / at16["remote_unbatched"]["actions_per_s"], ">=", 2.5),
        ("16 actors: mean batch size", at16["remote_batched"]["mean_batch_size"], ">=", 8.0),
        ("16 actors: remote actions/s / raw echo stream calls/s",
         at16["remote_batched"]["actions_per_s"] / at16["echo_stream"]["calls_per_s"], ">=", 0.5),
        ("vectorized actor (64 rows/call) / one unbatched remote actor, actions/s",
         r["vectorized_64_rows"]["actions_per_s"] / one_stream["actions_per_s"], ">=", 20.0),
        ("codec: Atari time step round trip (us)", atari["round_trip_us"], "<=", 50.0),
        ("codec: decoded observation is a view (no copy)", float(atari["decoded_observation_is_a_view"]),
         ">=", 1.0),
    ]
    return [{"target": name, "value": value, "op": op, "bound": bound,
             "met": value <= bound if op == "<=" else value >= bound} for name, value, op, bound in rows]


def markdown(r: dict[str, Any]) -> str:
    """The results as markdown tables."""
    lines = [f"Machine: {r['machine']}; {r['seconds_per_point']:.0f} s per point; all numbers from one run.", "",
             "| local baseline (unbatched `action()`) | calls/s | p50 ms | p99 ms |", "|---|---:|---:|---:|"]
    for name, label in (("eager", "PyTFEagerPolicy(use_tf_function=True)"), ("graph", "PyTFPolicy (graph)")):
        x = r["local"][name]
        lines.append(f"| {label} | {x['calls_per_s']:.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} |")
    lines += ["", "| one remote actor | actions/s | p50 ms | p99 ms | client CPU us/call |", "|---|---:|---:|---:|---:|"]
    for mode, x in r["one_actor"].items():
        lines.append(f"| {mode} | {x['actions_per_s']:.0f} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} | "
                     f"{x['client_cpu_us_per_call']:.0f} |")
    echo1 = r["concurrent"]["echo_stream"][0]
    lines.append(f"| raw gRPC echo, stream (same request bytes) | {echo1['calls_per_s']:.0f} | "
                 f"{echo1['p50_ms']:.2f} | {echo1['p99_ms']:.2f} | {echo1['client_cpu_us_per_call']:.0f} |")
    lines += ["", "| actors | remote actions/s | mean batch | p50 ms | p99 ms | batching off actions/s "
              "| echo stream calls/s | echo unary calls/s |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    c = r["concurrent"]
    for i, n in enumerate(CONCURRENCY):
        b, u, es, eu = c["remote_batched"][i], c["remote_unbatched"][i], c["echo_stream"][i], c["echo_unary"][i]
        lines.append(f"| {n} | {b['actions_per_s']:.0f} | {b['mean_batch_size']:.1f} | {b['p50_ms']:.2f} | "
                     f"{b['p99_ms']:.2f} | {u['actions_per_s']:.0f} | {es['calls_per_s']:.0f} | "
                     f"{eu['calls_per_s']:.0f} |")
    v = r["vectorized_64_rows"]
    lines += ["", f"Vectorized actor, 64 rows per call: {v['actions_per_s']:.0f} actions/s "
                  f"({v['calls_per_s']:.0f} calls/s, p50 {v['p50_ms']:.2f} ms).", "",
              "| codec round trip (encode, serialize, parse, decode) | us | bytes | GB/s | view |",
              "|---|---:|---:|---:|---|"]
    for name, x in r["codec"].items():
        lines.append(f"| {name} | {x['round_trip_us']:.1f} | {x['bytes']} | {x['gb_per_s']:.2f} | "
                     f"{x['decoded_observation_is_a_view']} |")
    lines += ["", "| target | measured | bound | met |", "|---|---:|---:|---|"]
    for t in r["targets"]:
        lines.append(f"| {t['target']} | {t['value']:.2f} | {t['op']} {t['bound']:g} | "
                     f"{'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def plot(r: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = {"remote_batched": "remote, batched (actions/s)", "remote_unbatched": "remote, batching off",
              "echo_stream": "raw gRPC echo, stream (calls/s)", "echo_unary": "raw gRPC echo, unary"}
    for key, label in labels.items():
        ax.plot(CONCURRENCY, [x["actions_per_s"] for x in r["concurrent"][key]], marker="o", label=label)
    ax.axhline(r["local"]["eager"]["calls_per_s"], color="gray", linestyle="--",
               label="local PyTFEagerPolicy, 1 caller")
    ax.set_xscale("log", base=2)
    ax.set_xticks(CONCURRENCY, [str(n) for n in CONCURRENCY])
    ax.set_xlabel("concurrent actor processes")
    ax.set_ylabel("per second")
    ax.set_title("CartPole QPolicy (64x64) through the policy server")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def update_readme(table: str, command: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = (f"<!-- bench:start -->\nMeasured with `{command}` "
             f"({time.strftime('%Y-%m-%d')}):\n\n{table}\n![actions per second](bench/results/actions_per_s.png)\n"
             "<!-- bench:end -->")
    if "<!-- bench:start -->" in text:
        text = re.sub(r"<!-- bench:start -->.*<!-- bench:end -->", lambda _: block, text, flags=re.S)
        readme.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per point")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README table")
    args = parser.parse_args()
    started = time.time()
    results = run(args.seconds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (RESULTS / "results.md").write_text(table)
    plot(results, RESULTS / "actions_per_s.png")
    if not args.no_readme:
        update_readme(table, "make bench")
    print(table)
    print(f"bench took {time.time() - started:.0f}s; wrote {RESULTS.relative_to(ROOT)}/", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
