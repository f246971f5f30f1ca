"""`python -m tests.reliability`: the full fault suite, then its figures table (`make reliability`).

    python -m tests.reliability [--out bench/results/reliability.json] [--quick] [--only fuzz,kill,...]

Runs, one after the other, each against its own subprocess server on a
free 127.0.0.1 port: fuzz, overload, kill (SIGKILL + restart), term
(SIGTERM + restart), large (large messages) and idle (idle streams and a
non-reading client). Prints a progress line per step, then the figures and
targets as Markdown; with --out, writes the results as JSON there and the
Markdown beside it (same name, .md). Exit status: 0 every target met, 1 a
target not met, 2 a scenario could not run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.reliability import figures, scenarios  # noqa: E402

STEPS = ("fuzz", "overload", "kill", "term", "large", "idle")


def _run_step(name: str, plan: scenarios.Plan, seed: int, budget: float) -> dict:
    if name == "fuzz":
        return scenarios.fuzz_run(plan, rng_seed=seed, budget=budget)
    if name == "overload":
        return scenarios.overload(plan)
    if name in ("kill", "term"):
        return scenarios.restarts(name, plan)
    if name == "large":
        return scenarios.large_messages(plan)
    return scenarios.idle_streams(plan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", help="write the results as JSON here (and the table beside it, .md)")
    parser.add_argument("--quick", action="store_true", help="small counts (a few minutes less; not the targets)")
    parser.add_argument("--only", default=",".join(STEPS), help=f"comma-separated steps of {', '.join(STEPS)}")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fuzz run (default: %(default)s)")
    parser.add_argument("--fuzz-budget", type=float, default=900.0,
                        help="seconds after which the fuzz run stops early (default: %(default)s)")
    args = parser.parse_args(argv)
    steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}")
    plan = scenarios.Plan.quick() if args.quick else scenarios.Plan()
    started = time.monotonic()
    results: dict = {}
    for name in steps:
        print(f"[{time.monotonic() - started:6.0f}s] {name} ...", flush=True)
        step_started = time.monotonic()
        try:
            results[name] = _run_step(name, plan, args.seed, args.fuzz_budget)
        except Exception as e:  # pylint: disable=broad-except  # the other steps still run
            traceback.print_exc()
            results[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
        results[name]["step_seconds"] = round(time.monotonic() - step_started, 1)
        print(f"[{time.monotonic() - started:6.0f}s] {name} done in {results[name]['step_seconds']:.0f}s", flush=True)
    command = "make reliability" if os.environ.get("MAKELEVEL") else \
        "python -m tests.reliability " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    meta = {"command": command.strip(), "date": datetime.date.today().isoformat(),
            "seconds": time.monotonic() - started, "quick": args.quick,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    judged = figures.judge(results)
    table = figures.markdown(results, meta)
    print()
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": meta, "targets": judged, "results": results}, indent=1, default=str))
        out.with_suffix(".md").write_text(table)
        print(f"wrote {out} and {out.with_suffix('.md')}")
    if any("error" in r for r in results.values()):
        return 2
    return 0 if all(t["met"] is not False for t in judged) else 1


if __name__ == "__main__":
    sys.exit(main())
