"""Benchmark report: the targets (met / not met), markdown tables, the plot, docs/benchmarks.md and the README headline."""

from __future__ import annotations

import pathlib
import re
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
LABELS = {"local": "local PyTFEagerPolicy per actor", "remote": "RemotePolicy", "client": "PolicyClient (no TF)",
          "echo": "raw gRPC echo (ceiling)", "torchrl": "TorchRL peer",
          "remote_shm": "RemotePolicy, shared memory", "client_shm": "PolicyClient (no TF), shared memory"}
COLUMNS = (("actions/s", "actions_per_s", 0), ("p50 ms", "p50_ms", 2), ("p99 ms", "p99_ms", 2),
           ("mean batch", "mean_batch_size", 1), ("server CPU µs/action", "server_cpu_us_per_action", 0),
           ("client CPU µs/action", "client_cpu_us_per_action", 0), ("actor RSS MB", "actor_rss_mb", 0),
           ("server RSS MB", "server_rss_mb", 0), ("other CPU %", "foreign_cpu_share", -1))


def point(r: dict[str, Any], workload: str, kind: str, actors: int) -> dict[str, Any] | None:
    """The measured point of `kind` actors (None if it was not measured or is not available)."""
    rows = r["workloads"].get(workload, {}).get("rows", {}).get(kind, [])
    found = next((p for p in rows if p.get("actors") == actors), None)
    return None if found is None or "unavailable" in found else found


def _get(p: dict[str, Any] | None, key: str) -> float | None:
    value = None if p is None else p.get(key)
    return None if value is None else float(value)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 19: the measured value, the bound, met (None: not measured)."""
    cp = {k: point(r, "cartpole", k, 16) for k in ("local", "remote", "client", "echo")}
    at = {k: point(r, "atari", k, 16) for k in ("local", "remote", "echo")}
    rows: list[tuple[str, float | None, str, float | None]] = [
        ("CartPole, 16 actors: RemotePolicy actions/s / 16 local-policy actors",
         _ratio(_get(cp["remote"], "actions_per_s"), _get(cp["local"], "actions_per_s")), ">=", 1.5),
        ("CartPole, 16 actors: RemotePolicy actions/s / raw gRPC echo calls/s",
         _ratio(_get(cp["remote"], "actions_per_s"), _get(cp["echo"], "actions_per_s")), ">=", 0.6),
        ("Atari, 16 actors: RemotePolicy actions/s / 16 local-policy actors",
         _ratio(_get(at["remote"], "actions_per_s"), _get(at["local"], "actions_per_s")), ">=", 2.0),
        ("CartPole, 16 actors: RemotePolicy client CPU / echo client CPU (per action)",
         _ratio(_get(cp["remote"], "client_cpu_us_per_action"), _get(cp["echo"], "client_cpu_us_per_action")),
         "<=", 1.3)]
    for name, pts in (("CartPole", cp), ("Atari", at)):
        remote, echo = pts["remote"], pts["echo"]
        bound = None
        if remote and echo and remote.get("mean_batch_size") and echo.get("server_cpu_us_per_action") is not None:
            share = remote["inference_ms_p50"] * 1e3 / remote["mean_batch_size"]  # this action's share of a batch
            bound = echo["server_cpu_us_per_action"] + 100 + share
        rows.append((f"{name}, 16 actors: server CPU µs/action <= echo server's + 100 + inference p50 / mean batch",
                     _get(remote, "server_cpu_us_per_action"), "<=", bound))
    one_remote, one_local = point(r, "cartpole", "remote", 1), point(r, "cartpole", "local", 1)
    floor = r.get("rss_floor_mb")
    rows += [
        ("CartPole, one actor: RemotePolicy p50 / local PyTFEagerPolicy p50",
         _ratio(_get(one_remote, "p50_ms"), _get(one_local, "p50_ms")), "<=", 1.2),
        ("RSS: PolicyClient actor / local-policy actor (CartPole, 16 actors)",
         _ratio(_get(cp["client"], "actor_rss_mb"), _get(cp["local"], "actor_rss_mb")), "<=", 0.15),
        (f"RSS: RemotePolicy actor / TF-Agents import floor ({floor:.0f} MB)" if floor else
         "RSS: RemotePolicy actor / TF-Agents import floor",
         _ratio(_get(cp["remote"], "actor_rss_mb"), floor), "<=", 1.1),
        ("PolicyClient actors import TensorFlow (1 = yes)",
         None if cp["client"] is None else float(cp["client"]["tensorflow_imported"]), "<=", 0.0)]
    rows += shm_targets(r, cp, at, one_local)
    rows += many_actor_targets(r)
    rows += issue_33_targets(r)
    vec = r["workloads"].get("cartpole", {}).get("vectorized_64_rows")
    atari_codec = r["codec"]["atari_84x84x4_uint8"]
    rows += [
        ("vectorized actor (64 rows/call) / one unbatched RemotePolicy actor, actions/s",
         _ratio(_get(vec, "actions_per_s"), _get(one_remote, "actions_per_s")), ">=", 20.0),
        ("codec: Atari time step round trip (µs, best of 5)", atari_codec["round_trip_us"], "<=", 50.0),
        ("codec: decoded observation is a view (1 = yes)", float(atari_codec["decoded_observation_is_a_view"]),
         ">=", 1.0)]
    out = []
    for name, value, op, bound in rows:
        met = None if value is None or bound is None else (value <= bound if op == "<=" else value >= bound)
        out.append({"target": name, "value": value, "op": op, "bound": bound, "met": met})
    return out


def shm_targets(r: dict[str, Any], cp: dict[str, Any], at: dict[str, Any],
                one_local: dict[str, Any] | None) -> list[tuple[str, float | None, str, float | None]]:
    """The targets of issue 21 (the same-host shared-memory data plane)."""
    shm_cp, shm_at = point(r, "cartpole", "remote_shm", 16), point(r, "atari", "remote_shm", 16)
    one_shm = point(r, "cartpole", "remote_shm", 1)
    light = point(r, "cartpole", "client_shm", 16) or shm_cp
    return [
        ("shm: CartPole, 16 actors: RemotePolicy actions/s / 16 local-policy actors",
         _ratio(_get(shm_cp, "actions_per_s"), _get(cp["local"], "actions_per_s")), ">=", 3.0),
        ("shm: CartPole, 16 actors: RemotePolicy actions/s / raw gRPC echo calls/s",
         _ratio(_get(shm_cp, "actions_per_s"), _get(cp["echo"], "actions_per_s")), ">=", 1.0),
        ("shm: Atari, 16 actors: RemotePolicy actions/s / 16 local-policy actors",
         _ratio(_get(shm_at, "actions_per_s"), _get(at["local"], "actions_per_s")), ">=", 2.0),
        ("shm: CartPole, one actor: RemotePolicy p50 / local PyTFEagerPolicy p50",
         _ratio(_get(one_shm, "p50_ms"), _get(one_local, "p50_ms")), "<=", 1.0),
        ("shm: CartPole, 16 actors: PolicyClient client CPU / echo client CPU (per action)",
         _ratio(_get(light, "client_cpu_us_per_action"), _get(cp["echo"], "client_cpu_us_per_action")), "<=", 0.5)]


def best_local(r: dict[str, Any], workload: str) -> dict[str, Any] | None:
    """The local-policy point with the most actions/s among 1, 4 and 16 actors: what a user without a server runs."""
    points = [p for n in (1, 4, 16) if (p := point(r, workload, "local", n))]
    return max(points, key=lambda p: p["actions_per_s"], default=None)


def issue_33_targets(r: dict[str, Any]) -> list[tuple[str, float | None, str, float | None]]:
    """Issue 33's ratios at 16 actors: the TF-free PolicyClient over shared memory and over gRPC, against the
    TorchRL peer and against the best local setup."""
    rows = []
    for workload, name, peer_bound, shm_bound, grpc_bound in (("cartpole", "CartPole", 3.0, None, 2.0),
                                                              ("atari", "conv net", 1.5, 3.0, 1.0)):
        shm, grpc_ = point(r, workload, "client_shm", 16), point(r, workload, "client", 16)
        peer, local = point(r, workload, "torchrl", 16), best_local(r, workload)
        best = "the best of 1, 4 and 16 local actors"
        rows.append((f"{name}, 16 actors: shared memory (PolicyClient) / TorchRL peer, actions/s",
                     _ratio(_get(shm, "actions_per_s"), _get(peer, "actions_per_s")), ">=", peer_bound))
        if shm_bound is not None:
            rows.append((f"{name}, 16 actors: shared memory (PolicyClient) / {best}, actions/s",
                         _ratio(_get(shm, "actions_per_s"), _get(local, "actions_per_s")), ">=", shm_bound))
        rows.append((f"{name}, 16 actors: gRPC (PolicyClient) / {best}, actions/s",
                     _ratio(_get(grpc_, "actions_per_s"), _get(local, "actions_per_s")), ">=", grpc_bound))
    return rows


def many(r: dict[str, Any], layout: str, actors: int) -> dict[str, Any] | None:
    """The many-actors point of `layout` with `actors` actors in all (None if not measured)."""
    return next((p for p in r.get("many_actors", []) if p["layout"] == layout and p["actors_total"] == actors), None)


def many_actor_targets(r: dict[str, Any]) -> list[tuple[str, float | None, str, float | None]]:
    """Issue 33: the server's throughput does not fall from 16 actors to 256 on one box (CartPole)."""
    sixteen = {"gRPC": point(r, "cartpole", "client", 16), "shared memory": point(r, "cartpole", "client_shm", 16)}
    rows = []
    for layout in ("threads, gRPC", "vectorized, gRPC", "vectorized, shared memory"):
        base = sixteen["shared memory" if "shared" in layout else "gRPC"]
        rows.append((f"CartPole, 256 actors ({layout}) / 16 PolicyClient actors, actions/s",
                     _ratio(_get(many(r, layout, 256), "actions_per_s"), _get(base, "actions_per_s")), ">=", 0.9))
    return rows


def many_actors_table(r: dict[str, Any]) -> list[str]:
    """The 64- and 256-actor points, beside the 16 single-actor processes they grow from."""
    if not r.get("many_actors"):
        return []
    lines = ["**Hundreds of actors on one box** (CartPole, 16 processes): each process holds ROWS actors, as the "
             "rows of one batched call (a vectorized environment) or as threads with a PolicyClient each, stepped "
             "together (one call = one action of each). p50/p99: per call of a process.", "",
             "| layout | actors | actions/s | p50 ms | p99 ms | mean batch | queue wait p50 ms "
             "| server CPU µs/action | other CPU % |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = [("16 single-actor processes, gRPC", point(r, "cartpole", "client", 16)),
            ("16 single-actor processes, shared memory", point(r, "cartpole", "client_shm", 16))]
    rows = [(label, 16, p) for label, p in base if p] + [(p["layout"], p["actors_total"], p) for p in r["many_actors"]]
    for label, actors, p in rows:
        lines.append(f"| {label} | {actors} | {_fmt(p['actions_per_s'], 0)} | {_fmt(p['p50_ms'])} | "
                     f"{_fmt(p['p99_ms'])} | {_fmt(p.get('mean_batch_size'), 1)} | "
                     f"{_fmt(p.get('queue_wait_ms_p50'))} | "
                     f"{_fmt(p.get('server_cpu_us_per_action'), 0)} | {_fmt(p.get('foreign_cpu_share'), -1)} |")
    return lines + [""]


def torchrl_ratios(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Reference (not a target): ours / TorchRL's peer at 16 actors."""
    out = []
    for workload in r["workloads"]:
        peer = point(r, workload, "torchrl", 16)
        for kind in ("remote", "remote_shm"):
            ours = point(r, workload, kind, 16)
            for key in ("actions_per_s", "p50_ms", "client_cpu_us_per_action", "server_cpu_us_per_action"):
                out.append({"workload": workload, "path": "gRPC" if kind == "remote" else "shared memory",
                            "metric": key, "ours": _get(ours, key), "torchrl": _get(peer, key),
                            "ratio": _ratio(_get(ours, key), _get(peer, key))})
    return out


def _fmt(value: Any, digits: int = 2) -> str:
    """A table cell: digits < 0 formats a share as a percentage."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if digits < 0:
        return f"{100 * float(value):.0f}"
    return f"{float(value):,.{digits}f}" if digits else f"{float(value):,.0f}"


def _row(label: str, p: dict[str, Any]) -> str:
    if "unavailable" in p:
        return f"| {label} | {p.get('actors', '')} | {p['unavailable']} |" + " |" * (len(COLUMNS) - 1)
    cells = [_fmt(p.get(k), d) for _, k, d in COLUMNS]
    if p.get("contended"):
        cells[-1] += ", contended"
    return f"| {label} | {p['actors']} | " + " | ".join(cells) + " |"


def workload_table(r: dict[str, Any], workload: str) -> list[str]:
    w = r["workloads"][workload]
    title = {"cartpole": "CartPole MLP (4 floats in, 64x64 QNetwork, greedy)",
             "atari": "Atari-sized Q-network (84x84x4 uint8 in, Nature-DQN convs, fc 512, 6 actions, greedy)"}
    lines = [f"**{title[workload]}** — one unbatched call at a time per actor process, closed loop, a fresh "
             f"observation per call; response {w.get('response_bytes', 0)} bytes.", "",
             "| row | actors | " + " | ".join(c for c, _, _ in COLUMNS) + " |",
             "|---|---:|" + "---:|" * len(COLUMNS)]
    for kind in ("local", "remote", "client", "echo", "remote_shm", "client_shm", "torchrl"):
        for p in w["rows"].get(kind, []):
            lines.append(_row(LABELS[kind] + (", TCP" if kind in ("remote", "client", "echo") else ""), p))
    unix = w.get("unix", {})
    if "unavailable" in unix:
        lines.append(_row("RemotePolicy / PolicyClient / echo, unix:", {"actors": 16, **unix}))
    for kind in ("remote", "client", "echo"):
        if kind in unix:
            lines.append(_row(f"{LABELS[kind]}, unix:", unix[kind]))
    return lines


def markdown(r: dict[str, Any]) -> str:
    """The results as markdown tables (results.md, and docs/benchmarks.md)."""
    preload = (" (actors that import TensorFlow fork from a forkserver that preloaded it, the TF-free ones from "
               "one that preloaded gRPC and numpy only: bench/forkservers.py; actor RSS is that of a fresh process "
               "of each kind from the latter, so that every library it maps counts)" if r["start_method"] == "forkserver"
               else "")
    lines = [f"Machine: {r['machine']}; start method `{r['start_method']}` for every actor process{preload}; "
             f"{r['warmup_s']:g} s warm-up + {r['seconds_per_point']:g} s measured per point; "
             f"{'`--quick` (target points only); ' if r['quick'] else ''}"
             + (f"the whole benchmark run {r['repeats']} times in a row, every figure the median of its runs and "
                "every target the median of its per-run ratios (spread: min-max) "
                if r.get("repeats", 1) > 1 else "all numbers from one run ")
             + f"({r.get('duration_s', 0):.0f} s). Mean batch: GetStats delta over the window. CPU: utime+stime "
             "from /proc over the window, summed over the actor processes, per action. RSS: VmHWM. "
             "The echo client encodes a real ActionRequest per call; the echo server replays a fixed "
             "ActionResponse of the real size.", ""]
    for workload in r["workloads"]:
        lines += workload_table(r, workload) + [""]
    lines += many_actors_table(r)
    lines.append(f"RSS floor: a process that only imports tensorflow + tf_agents peaks at "
                 f"{_fmt(r.get('rss_floor_mb'), 0)} MB.")
    vec = r["workloads"].get("cartpole", {}).get("vectorized_64_rows")
    if vec:
        lines += ["", f"Vectorized RemotePolicy actor, 64 rows per call (CartPole): {_fmt(vec['actions_per_s'], 0)} "
                      f"actions/s ({_fmt(vec['calls_per_s'], 0)} calls/s, p50 {_fmt(vec['p50_ms'])} ms)."]
    lines += ["", "| batching knobs (CartPole, 16 RemotePolicy actors) | actions/s | p50 ms | p99 ms | mean batch "
                  "| server CPU µs/action |", "|---|---:|---:|---:|---:|---:|"]
    for k in r.get("knobs", []):
        if "unavailable" in k:
            lines.append(f"| `{k['flags']}` | {k['unavailable']} | | | | |")
        else:
            lines.append(f"| `{k['flags']}` | {_fmt(k['actions_per_s'], 0)} | {_fmt(k['p50_ms'])} | "
                         f"{_fmt(k['p99_ms'])} | {_fmt(k.get('mean_batch_size'), 1)} | "
                         f"{_fmt(k.get('server_cpu_us_per_action'), 0)} |")
    lines += ["", "| codec round trip (encode, serialize, parse, decode) | µs | bytes | GB/s | view |",
              "|---|---:|---:|---:|---|"]
    for name, x in r["codec"].items():
        lines.append(f"| {name} | {x['round_trip_us']:.1f} | {x['bytes']} | {x['gb_per_s']:.2f} | "
                     f"{x['decoded_observation_is_a_view']} |")
    runs = r.get("repeats", 1)
    measured = f"measured (median of {runs} runs, min-max)" if runs > 1 else "measured"
    lines += ["", f"| target | {measured} | bound | met |", "|---|---:|---:|---|"]
    for t in r["targets"]:
        met = "not measured" if t["met"] is None else "yes" if t["met"] else "**no**"
        digits = 3 if t["value"] is not None and abs(t["value"]) < 10 else 1  # 1.496 is not 1.50
        spread = (f" ({_fmt(t['spread'][0], digits)}-{_fmt(t['spread'][1], digits)})"
                  if t.get("spread") and runs > 1 else "")
        lines.append(f"| {t['target']} | {_fmt(t['value'], digits)}{spread} | {t['op']} {_fmt(t['bound'], 2)} | "
                     f"{met} |")
    ratios = [x for x in r.get("torchrl_ratios", []) if x["ratio"] is not None]
    lines += ["", "Reference, not a target: RemotePolicy vs the TorchRL peer (`bench/peers/torchrl_peer.py`), "
                  "16 actors, same start method" + (":" if ratios else ": the peer was not available in this run.")]
    if ratios:
        lines += ["", "| workload | path | metric | ours | TorchRL | ours / TorchRL |", "|---|---|---|---:|---:|---:|"]
        lines += [f"| {x['workload']} | {x.get('path', 'gRPC')} | {x['metric']} | {_fmt(x['ours'], 1)} | "
                  f"{_fmt(x['torchrl'], 1)} | {x['ratio']:.2f}"
                  + (f" ({x['spread'][0]:.2f}-{x['spread'][1]:.2f})" if x.get("spread") and runs > 1 else "")
                  + " |" for x in ratios]
    lines += ["", "\"other CPU %\": share of the machine's CPU that processes other than the row's actors and "
                  "server (other users of this shared machine) used in the window; where the row alone would fill "
                  "both cores, that share was taken from it. A point where it exceeded 10% is measured up to twice "
                  "more and the quietest measurement kept; one still above 10% (in any of its runs) is marked "
                  "\"contended\". 16-actor "
                  "points run first, so GetStats' inference "
                  "p50 (in the server-CPU bound) covers their batches."]
    return "\n".join(lines) + "\n"


def plot(r: dict[str, Any], path: pathlib.Path) -> None:
    """actions/s against actors, one line per row, one panel per workload."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    names = list(r["workloads"])
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5), squeeze=False)
    for ax, workload in zip(axes[0], names):
        for kind, label in LABELS.items():
            pts = [p for p in r["workloads"][workload]["rows"].get(kind, []) if "unavailable" not in p]
            if pts:
                ax.plot([p["actors"] for p in pts], [p["actions_per_s"] for p in pts], marker="o", label=label)
        unix = r["workloads"][workload].get("unix", {})
        for kind, marker in (("remote", "s"), ("client", "D"), ("echo", "^")):
            if isinstance(unix.get(kind), dict):
                ax.scatter([16], [unix[kind]["actions_per_s"]], marker=marker, color="black", zorder=3,
                           label=f"{LABELS[kind]}, unix:")
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 4, 16], ["1", "4", "16"])
        ax.set_xlabel("actor processes")
        ax.set_ylabel("actions/s (echo: calls/s)")
        ax.set_title(workload)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"one run, start method {r['start_method']}, {r['machine']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def headline(r: dict[str, Any]) -> str:
    """The README's headline ratios (16 actors) from one run: the shared-memory and gRPC paths against
    16 local-policy actors and against the TorchRL peer, and the TF-free actor's memory."""
    targets = {t["target"]: t["value"] for t in r["targets"]}
    peer = {(x["workload"], x.get("path", "gRPC")): x["ratio"] for x in r.get("torchrl_ratios", [])
            if x["metric"] == "actions_per_s"}

    def cell(value: float | None) -> str:
        return f"{value:.2f}x" if value is not None else "–"

    local = "16 actors: RemotePolicy actions/s / 16 local-policy actors"
    rows = [("shared memory vs a local policy in each of 16 actors",
             targets.get(f"shm: CartPole, {local}"), targets.get(f"shm: Atari, {local}")),
            ("gRPC vs a local policy in each of 16 actors", targets.get(f"CartPole, {local}"),
             targets.get(f"Atari, {local}")),
            ("shared memory vs TorchRL's InferenceServer", peer.get(("cartpole", "shared memory")),
             peer.get(("atari", "shared memory"))),
            ("gRPC vs TorchRL's InferenceServer", peer.get(("cartpole", "gRPC")), peer.get(("atari", "gRPC")))]
    lines = ["| actions/s, 16 actor processes, ratio | CartPole MLP | Atari-sized conv net |", "|---|---:|---:|"]
    lines += [f"| {name} | {cell(a)} | {cell(b)} |" for name, a, b in rows]
    rss = targets.get("RSS: PolicyClient actor / local-policy actor (CartPole, 16 actors)")
    if rss is not None:
        lines += ["", f"A TF-free `PolicyClient` actor holds {rss:.0%} of the memory of an actor with its own "
                      "local policy."]
    return "\n".join(lines)


def update_docs(r: dict[str, Any], table: str, command: str = "make bench", root: pathlib.Path = ROOT) -> bool:
    """Rewrites the bench blocks: docs/benchmarks.md's whole report (and its plot, docs/assets) and the
    README's headline ratios. True if both pages had their markers."""
    runs = r.get("repeats", 1)
    stamp = (f"Measured with `{command}` ({time.strftime('%Y-%m-%d')}"
             + (f"; medians of {runs} runs, one after the other" if runs > 1 else "") + ")")
    page = (f"<!-- bench:start -->\n{stamp}:\n\n{table}\n"
            "![actions per second](assets/actions_per_s.png)\n<!-- bench:end -->")
    summary = (f"<!-- headline:start -->\n{headline(r)}\n\n{stamp}; the whole report is in "
               "[docs/benchmarks.md](docs/benchmarks.md).\n<!-- headline:end -->")
    done = True
    for path, start, end, block in ((root / "docs" / "benchmarks.md", "bench:start", "bench:end", page),
                                    (root / "README.md", "headline:start", "headline:end", summary)):
        text = path.read_text()
        if f"<!-- {start} -->" not in text:
            done = False
            continue
        path.write_text(re.sub(rf"<!-- {start} -->.*<!-- {end} -->", lambda _: block, text, flags=re.S))
    return done
