"""The figures table of a full run and its targets (met / not met), as Markdown and JSON."""

from __future__ import annotations

import math
from typing import Any, Callable

# (target, how it is read from the results, bound kind, bound). A missing scenario reads as None.
Target = tuple[str, Callable[[dict], Any], str, float]


def _get(results: dict, *path: str) -> Any:
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _restart_failures(results: dict, mode: str) -> Any:
    run = results.get(mode)
    if not run or "failed" not in run:
        return None
    return run["failed"] if run.get("within_deadline") else f"{run['failed']} (restart not within the deadline)"


def _wrong(results: dict) -> Any:
    runs = [results.get(m) for m in ("kill", "term")]
    if not all(r and "lost" in r for r in runs):
        return None
    return sum(r["lost"] + r["duplicated"] + r["crossed"] for r in runs)


def _small_non_reader_ratio(results: dict) -> Any:
    burst, before = _get(results, "idle", "small_burst_p50_ms"), _get(results, "idle", "before_p50_ms")
    return None if not burst or not before else burst / before


def _acking_non_reader_ratio(results: dict) -> Any:
    capped, before = _get(results, "idle", "acking_capped_p50_ms"), _get(results, "idle", "before_p50_ms")
    return None if not capped or not before else capped / before


TARGETS: list[Target] = [
    ("fuzz: messages sent (every RPC)", lambda r: _get(r, "fuzz", "messages"), ">=", 100_000),
    ("fuzz: server crashes", lambda r: _get(r, "fuzz", "crashes"), "==", 0),
    ("fuzz: hangs", lambda r: _get(r, "fuzz", "hangs"), "==", 0),
    ("fuzz: UNKNOWN/INTERNAL statuses of the server", lambda r: _get(r, "fuzz", "non_clear"), "==", 0),
    ("fuzz: server RSS growth (after / before - 1)", lambda r: _get(r, "fuzz", "rss_growth"), "<=", 0.10),
    ("fuzz: server RSS growth over the second half (a leak grows in both halves alike)",
     lambda r: _get(r, "fuzz", "rss_growth_second_half"), "<=", 0.02),
    ("SIGKILL + restart x{kill_restarts}, {kill_actors} actors: failed actor calls",
     lambda r: _restart_failures(r, "kill"), "==", 0),
    ("SIGTERM + restart x{term_restarts}, {term_actors} actors: failed actor calls",
     lambda r: _restart_failures(r, "term"), "==", 0),
    ("restarts: lost + duplicated + crossed answers", _wrong, "==", 0),
    ("overload: wrong answers among the accepted", lambda r: _get(r, "overload", "wrong_answers"), "==", 0),
    ("overload 10x: RESOURCE_EXHAUSTED p99, server time (ms)",
     lambda r: _get(r, "overload", "server_rejection_p99_ms"), "<=", 10.0),
    ("{idle_streams} idle streams + a non-reader: others' p50 during / before",
     lambda r: _get(r, "idle", "p50_ratio"), "<=", 1.5),
    ("a 1-row non-reader while it is served: others' p50 / p50 before", _small_non_reader_ratio, "<=", 1.2),
    ("a 1-row non-reader that acknowledges: requests computed for it",
     lambda r: _get(r, "idle", "acking_non_reader", "requests_computed"), "<=", 16),
    ("the same: others' p50 while it is capped / p50 before", _acking_non_reader_ratio, "<=", 1.2),
    ("a 1-row non-reader without acknowledgements, --stream-acks=required: requests computed",
     lambda r: _get(r, "idle", "non_reader_acks_required", "requests_computed"), "==", 0),
    ("{big_rows:,}-row request: other actors' p99 meanwhile (ms)",
     lambda r: _get(r, "large", "target", "others_p99_ms"), "<=", 50.0),
]


def _names(results: dict) -> dict[str, Any]:
    """What the target names say about the run (restarts, actors, streams, rows)."""
    return {"kill_restarts": _get(results, "kill", "restarts") or 5,
            "kill_actors": _get(results, "kill", "actors") or 8,
            "term_restarts": _get(results, "term", "restarts") or 5,
            "term_actors": _get(results, "term", "actors") or 8,
            "idle_streams": _get(results, "idle", "idle_streams") or 200,
            "big_rows": _get(results, "large", "target_rows") or 1_000_000}


def judge(results: dict) -> list[dict[str, Any]]:
    """Every target with its measured value and whether it is met (None: not measured)."""
    judged = []
    names = _names(results)
    for template, read, kind, bound in TARGETS:
        name = template.format(**names)
        try:
            value = read(results)
        except (KeyError, TypeError):
            value = None
        met = None
        if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            met = {"==": value == bound, "<=": value <= bound, ">=": value >= bound}[kind]
        elif value is not None:
            met = False
        judged.append({"target": name, "measured": value, "bound": f"{kind} {bound:g}", "met": met})
    return judged


def _num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def rows(results: dict) -> list[tuple[str, str, str]]:
    """(scenario, figure, value) rows of the figures table."""
    out: list[tuple[str, str, str]] = []

    def add(scenario: str, figure: str, value: Any, digits: int = 2) -> None:
        out.append((scenario, figure, _num(value, digits)))

    f = results.get("fuzz") or {}
    if "messages" in f:
        add("fuzz", "messages (mutation engine / hypothesis)",
            f"{f['messages']:,} ({f['by_source'].get('mutation', 0):,} / {f['by_source'].get('hypothesis', 0):,})")
        add("fuzz", "RPCs covered", ", ".join(sorted(f["by_rpc"])))
        add("fuzz", "crashes / hangs", f"{f['crashes']} / {f['hangs']}")
        add("fuzz", "UNKNOWN/INTERNAL of the server", f["non_clear"])
        for signature, n in list(f["non_clear_signatures"].items())[:4]:
            add("fuzz", f"  of which: {signature[:70]}", n)
        add("fuzz", "INTERNAL raised by the hosted policy's own code (AS_LOCAL, documented)",
            f["policy_raised_internal"])
        add("fuzz", "server RSS before / after / peak (MB)",
            f"{f['rss_before_mb']:.0f} / {f['rss_after_mb']:.0f} / {f['rss_peak_mb']:.0f} "
            f"({f['rss_growth'] * 100:+.1f}%)")
        if "rss_first_half_mb" in f:
            add("fuzz", "server RSS after the first half / the second (MB)",
                f"{f['rss_first_half_mb']:.0f} / {f['rss_after_mb']:.0f} "
                f"({f['rss_growth_second_half'] * 100:+.1f}% in the second half)")
        add("fuzz", "seconds (policies hosted)", f"{f['seconds']:.0f} ({f['policies']})")
    o = results.get("overload") or {}
    if "capacity_per_s" in o:
        add("overload", "capacity / offered (requests/s), queue",
            f"{o['capacity_per_s']:.0f} / {o['offered_per_s']:.0f} ({o['factor']:.0f}x), {o['queue']}")
        add("overload", "answers: OK / RESOURCE_EXHAUSTED / other",
            f"{o['codes'].get('OK', 0):,} / {o['codes'].get('RESOURCE_EXHAUSTED', 0):,} / "
            f"{sum(v for k, v in o['codes'].items() if k not in ('OK', 'RESOURCE_EXHAUSTED')):,}")
        add("overload", "time to the first RESOURCE_EXHAUSTED since the load began (ms)",
            o["time_to_first_rejection_ms"], 1)
        add("overload", "RESOURCE_EXHAUSTED p50 / p99, client-measured (ms); server time p50 / p99 (ms)",
            f"{_num(o['rejection_p50_ms'], 1)} / {_num(o['rejection_p99_ms'], 1)}; "
            f"{_num(o.get('server_rejection_p50_ms'), 2)} / {_num(o.get('server_rejection_p99_ms'), 2)}")
        add("overload", "accepted p50 / p99 (ms); unloaded p50",
            f"{_num(o['accepted_p50_ms'], 1)} / {_num(o['accepted_p99_ms'], 1)}; {_num(o['baseline_p50_ms'], 1)}")
        add("overload", "wrong answers / hangs", f"{o['wrong_answers']} / {o['hangs']}")
        add("overload", "recovery: first normal answer after the load (s)", o["recovery_s"], 3)
        add("overload", "server RSS before / ceiling / after (MB)",
            f"{o['rss_before_mb']:.0f} / {o['rss_ceiling_mb']:.0f} / {o['rss_after_mb']:.0f}")
    for mode, label in (("kill", "SIGKILL + restart"), ("term", "SIGTERM + restart")):
        k = results.get(mode) or {}
        if "calls" not in k:
            continue
        add(label, "restarts x actors (gRPC stream, unary, shared memory), call deadline", f"{k['restarts']} x {k['actors']}, "
                                                                           f"{k['call_timeout_s']:.0f} s")
        add(label, "actor calls / failed", f"{k['calls']:,} / {k['failed']}")
        if k["errors"]:
            add(label, "  failures", ", ".join(f"{n} {e}" for e, n in k["errors"].items()) +
                (f" ({k['samples'][0][:80]})" if k["samples"] else ""))
        add(label, "lost / duplicated / crossed answers", f"{k['lost']} / {k['duplicated']} / {k['crossed']}")
        add(label, "longest outage (stop + serving again) / longest pause of an actor (s)",
            f"{k['longest_outage_s']:.1f} / {k['longest_pause_s']:.1f}")
        add(label, "client stream threads left behind", k["leaked_stream_threads"])
    g = results.get("large") or {}
    if "biggest_served_rows" in g:
        for rows_, r in g["results"].items():
            add("large messages", f"{int(rows_):,} rows ({r['request_mb']:.0f} MB): outcome, seconds",
                f"{r['outcome']}, {r['seconds']:.2f}" + (f" ({r['detail'][:60]})" if r["detail"] else ""))
            add("large messages", "  others meanwhile: p50 / p99 / max (ms), failed",
                f"{_num(r['others_p50_ms'])} / {_num(r['others_p99_ms'])} / {_num(r['others_max_ms'], 0)}, "
                f"{r['others_failed']}")
        add("large messages", "biggest batch served (rows)", g["biggest_served_rows"])
        add("large messages", "others before: p50 / p99 (ms)",
            f"{_num(g['others_baseline_p50_ms'])} / {_num(g['others_baseline_p99_ms'])}")
        add("large messages", "server RSS before / peak / after (MB)",
            f"{g['rss_before_mb']:.0f} / {g['rss_peak_mb']:.0f} / {g['rss_after_mb']:.0f}")
    i = results.get("idle") or {}
    if "before_p50_ms" in i:
        add("idle streams", f"{i['idle_streams']} idle streams + 1 non-reader: others p50 before / during / after (ms)",
            f"{_num(i['before_p50_ms'])} / {_num(i['during_p50_ms'])} / {_num(i['after_p50_ms'])}")
        add("idle streams", "others p99 before / during / after (ms)",
            f"{_num(i['before_p99_ms'])} / {_num(i['during_p99_ms'])} / {_num(i['after_p99_ms'])}")
        add("idle streams", "requests of the non-reader the server read", i["non_reader_requests_read"])
        small = i.get("small_non_reader") or {}
        if small:
            add("idle streams", "1-row non-reader: requests computed until its HTTP/2 window filled; after (s)",
                f"{small['requests_computed']:,}; {small['computing_stopped_after_s']:.1f}")
            add("idle streams", "1-row non-reader: requests computed in the next window",
                small["requests_computed_after_that"])
            add("idle streams", "others p50 / p99 while it was computed, then once capped (ms)",
                f"{_num(i.get('small_burst_p50_ms'))} / {_num(i.get('small_burst_p99_ms'))}, "
                f"{_num(i.get('small_capped_p50_ms'))} / {_num(i.get('small_capped_p99_ms'))}")
        acking = i.get("acking_non_reader") or {}
        if acking:
            add("idle streams", "1-row non-reader that acknowledges (answers_read = 0): requests computed; after",
                f"{acking['requests_computed']:,}; {acking['requests_computed_after_that']}")
            add("idle streams", "others p50 / p99 while it is capped (ms)",
                f"{_num(i.get('acking_capped_p50_ms'))} / {_num(i.get('acking_capped_p99_ms'))}")
        required = i.get("non_reader_acks_required") or {}
        if required:
            add("idle streams", "1-row non-reader without acknowledgements, --stream-acks=required: requests computed",
                required["requests_computed"])
        add("idle streams", "server RSS before / during (peak) / after (MB)",
            f"{i['rss_before_mb']:.0f} / {i['rss_during_peak_mb']:.0f} / {i['rss_after_mb']:.0f}")
    return out


def markdown(results: dict, meta: dict) -> str:
    lines = [f"Measured with `{meta['command']}` ({meta['date']}, {meta['seconds']:.0f} s, "
             f"{meta['machine']}):", "", "| scenario | figure | value |", "|---|---|---:|"]
    lines += [f"| {s} | {f} | {v} |" for s, f, v in rows(results)]
    lines += ["", "| target | measured | bound | met |", "|---|---:|---:|---|"]
    for t in judge(results):
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {_num(t['measured'], 3)} | {t['bound']} | {met} |")
    errors = {k: v["error"] for k, v in results.items() if isinstance(v, dict) and "error" in v}
    if errors:
        lines += ["", "Scenarios that did not complete:", ""]
        lines += [f"- {k}: {v}" for k, v in errors.items()]
    return "\n".join(lines) + "\n"
