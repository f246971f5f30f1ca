"""make test's pytest passes, two at a time: each pass's output printed whole as it ends; any failure fails.

    python scripts/test_passes.py [--jobs 2] [--pytest-args "..."] --equivalence PATH... --split PATH...

The passes, longest first:
1. the `--split` paths (the suite's slowest directories: its Ray cluster, its
   light-client venvs, its server tests);
2. the suite except the equivalence suites and the `--split` paths;
3. and 4. the equivalence suites with every client forced onto gRPC, then onto
   shared memory (TFA_POLICY_DATA_PLANE; tests/conftest.py checks the plane
   the calls took).

Passes 1 and 2 cover the suite exactly once between them: 1 takes the
`--split` paths, 2 the rest (`--ignore` of each). Every pass starts its own
servers on ports picked at run time and runs with pytest's cache off, so
passes do not share state. On this 2-core host they wait on their servers and
subprocesses more than they compute: the two halves of the suite took 299 and
225 s side by side, with 1.24 cores busy on average, where one after the other
took about ten minutes.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor


Pass = tuple[str, dict[str, str], list[str]]  # name, environment, pytest paths and options


def passes(args: argparse.Namespace) -> tuple[list[Pass], list[str]]:
    """The passes, longest first, and the pytest arguments every pass gets."""
    extra = shlex.split(args.pytest_args)
    ignore = [f"--ignore={p}" for p in args.equivalence + args.split]
    return [
        (f"the split paths ({' '.join(args.split)})", {}, list(args.split)),
        ("the suite without the equivalence suites and the split paths", {}, ["tests", *ignore]),
        *[(f"the equivalence suites with TFA_POLICY_DATA_PLANE={plane}", {"TFA_POLICY_DATA_PLANE": plane},
           list(args.equivalence)) for plane in ("grpc", "shm")],
    ], extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=2, help="passes at once (default: %(default)s)")
    parser.add_argument("--pytest-args", default="", help="more pytest arguments for every pass")
    parser.add_argument("--equivalence", nargs="+", required=True, help="the equivalence suites' paths")
    parser.add_argument("--split", nargs="+", required=True, help="paths run as a pass of their own")
    args = parser.parse_args(argv)
    plan, extra = passes(args)
    started = time.monotonic()

    def run(item: Pass) -> int:
        name, env, paths = item
        with tempfile.TemporaryFile("w+") as log:
            t0 = time.monotonic()
            code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, *paths],
                                   stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
            log.seek(0)
            output = log.read()
        # One write per pass: the outputs of passes ending together do not interleave.
        sys.stdout.write(f"==== {name}: {'passed' if code == 0 else f'FAILED (exit {code})'} in "
                         f"{time.monotonic() - t0:.0f} s\n{output}\n")
        sys.stdout.flush()
        return code

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        codes = list(pool.map(run, plan))
    print(f"==== {len(plan)} passes in {time.monotonic() - started:.0f} s: "
          f"{'all passed' if not any(codes) else f'{sum(1 for c in codes if c)} failed'}")
    return 1 if any(codes) else 0


if __name__ == "__main__":
    sys.exit(main())
