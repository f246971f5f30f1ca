"""Several runs of the benchmark as one result: every number the median of its runs, every ratio too.

`make bench` measures the whole benchmark N times in a row (`--repeat`, 3 by
default): the rows of run 1, then the rows of run 2, and so on, so that every
pair of rows a ratio compares is measured as A B A B A B over the session.
A target's value is the median of its per-run ratios (not the ratio of
medians), and its spread (min, max) is kept with it; the points in the tables
are the medians of each figure over the runs.
"""

from __future__ import annotations

import copy
import statistics
from typing import Any


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from `runs` (each a Bench.run() result, targets included)."""
    if len(runs) == 1:
        return runs[0]
    out = copy.deepcopy(runs[0])
    out["repeats"] = len(runs)
    for workload, w in out["workloads"].items():
        for kind, points in w["rows"].items():
            w["rows"][kind] = [_median_point([_same(r["workloads"][workload]["rows"].get(kind, []), p)
                                              for r in runs]) for p in points]
        for key in ("vectorized_64_rows",):
            if isinstance(w.get(key), dict):
                w[key] = _median_point([r["workloads"][workload].get(key) for r in runs])
        for kind, p in list(w.get("unix", {}).items()):
            if isinstance(p, dict):
                w["unix"][kind] = _median_point([r["workloads"][workload].get("unix", {}).get(kind) for r in runs])
    out["many_actors"] = [_median_point([next((q for q in r.get("many_actors", []) if q["layout"] == p["layout"]
                                               and q["actors_total"] == p["actors_total"]), None) for r in runs])
                          for p in out.get("many_actors", [])]
    out["knobs"] = [_median_point([next((k for k in r.get("knobs", []) if k["flags"] == knob["flags"]), None)
                                   for r in runs]) for knob in out.get("knobs", [])]
    out["targets"] = _median_targets([r["targets"] for r in runs])
    out["torchrl_ratios"] = _median_ratios([r.get("torchrl_ratios", []) for r in runs])
    out["duration_s"] = sum(r.get("duration_s", 0.0) for r in runs)
    return out


def _same(points: list[dict[str, Any]], like: dict[str, Any]) -> dict[str, Any] | None:
    return next((p for p in points if p.get("actors") == like.get("actors")), None)


def _median_point(points: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The first point, each number replaced by the median over the points that have it."""
    present = [p for p in points if p is not None and "unavailable" not in p]
    if not present:
        return next(p for p in points if p is not None)
    out = dict(present[0])
    for key, value in present[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values = [p[key] for p in present if isinstance(p.get(key), (int, float))]
            out[key] = statistics.median(values)
    out["contended"] = any(p.get("contended") for p in present)
    out["runs"] = len(present)
    return out


def _median_targets(per_run: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for i, first in enumerate(per_run[0]):
        values = [run[i]["value"] for run in per_run if i < len(run) and run[i]["value"] is not None]
        value = statistics.median(values) if values else None
        bound, op = first["bound"], first["op"]
        met = None if value is None or bound is None else (value <= bound if op == "<=" else value >= bound)
        out.append({**first, "value": value, "met": met, "values": values,
                    "spread": [min(values), max(values)] if values else None})
    return out


def _median_ratios(per_run: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for i, first in enumerate(per_run[0]):
        rows = [run[i] for run in per_run if i < len(run)]
        entry = dict(first)
        for key in ("ours", "torchrl", "ratio"):
            values = [row[key] for row in rows if row.get(key) is not None]
            entry[key] = statistics.median(values) if values else None
        ratios = [row["ratio"] for row in rows if row.get("ratio") is not None]
        entry["spread"] = [min(ratios), max(ratios)] if ratios else None
        out.append(entry)
    return out

