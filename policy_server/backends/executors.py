"""Which TensorFlow executor runs a policy's traced function: measured on its first calls, kept by the faster.

TensorFlow runs a function's graph on its default executor, which hands every
op to the inter-op thread pool: for a small policy (a CartPole MLP) the
hand-offs cost more than the ops. The single-threaded executor runs the ops in
order on the calling thread: on this 2-core host it cut a 64x64 QNetwork's call
at batch 16 from 333 to 272 us of CPU, and made an Atari-sized conv net's
slower (2.43 ms against 2.27), whose independent ops gain from running side by
side. Neither is right for every policy, so each FlatCall measures both on
its first real calls (alternating, so that both see the same batches and the
same machine) and keeps the faster; it logs the choice at INFO.

The executor changes how ops are scheduled, not what they compute: every
kernel is the same, so the answers are. A graph the single-threaded executor
cannot run (it refuses some ops when the function is instantiated, before any
op runs: v1 control flow, reference-typed edges) is run on the default
executor from then on.

`TFA_POLICY_TF_EXECUTOR` overrides the choice: `default` or
`single_threaded` (or `auto`, the measured choice).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

import tensorflow as tf

logger = logging.getLogger(__name__)

DEFAULT = ""  # FunctionCallOptions.executor_type of TensorFlow's default executor
SINGLE_THREADED = "SINGLE_THREADED_EXECUTOR"
ENV = "TFA_POLICY_TF_EXECUTOR"
_CHOICES = {"default": DEFAULT, "single_threaded": SINGLE_THREADED}
# How TensorFlow 2.15's single-threaded executor starts each of its refusals (reference-typed edges, v1
# control flow, switch ops), all raised when a graph is instantiated, before any op of it runs.
_REFUSAL = "Single-threaded executor does not support"

try:
    from tensorflow.python.eager import context as _context  # pylint: disable=g-direct-tensorflow-import
except ImportError:  # pragma: no cover - other TensorFlow versions
    _context = None


class ExecutorTrial:
    """Alternates the two executors over a function's first calls, then keeps the one with less time per row.

    Args:
      name: what the log line calls the function.
      calls: measured calls per executor (after `skip` warm-up calls each).
      margin: the single-threaded executor is kept only if it takes at most
        this share of the default's time per row.
      clock: the clock the calls are timed with.
    """

    def __init__(self, name: str = "policy", calls: int = 150, skip: int = 5, margin: float = 0.95,
                 clock: Callable[[], float] = time.perf_counter):
        self.name, self._calls, self._skip, self._margin, self._clock = name, calls, skip, margin, clock
        forced = os.environ.get(ENV, "auto").strip().lower()
        if forced not in ("auto", *_CHOICES):
            raise ValueError(f"{ENV} must be auto, default or single_threaded, got {forced!r}")
        self.chosen: str | None = _CHOICES.get(forced) if _context is not None else DEFAULT
        self._seen = {DEFAULT: 0, SINGLE_THREADED: 0}
        self._seconds = {DEFAULT: 0.0, SINGLE_THREADED: 0.0}
        self._rows = {DEFAULT: 0, SINGLE_THREADED: 0}
        self._turn = 0

    def call(self, fn: Callable[[], Any], rows: int) -> Any:
        """fn() under the chosen executor, or under the next one to measure."""
        if self.chosen == DEFAULT:
            return fn()
        executor = self.chosen
        if executor is None:
            self._turn += 1
            executor = SINGLE_THREADED if self._turn % 2 else DEFAULT
        start = self._clock()
        try:
            result = _under(executor, fn)
        except tf.errors.OpError as e:
            if executor != SINGLE_THREADED or _REFUSAL not in str(e):
                raise
            # Refused when the graph was instantiated, before any of its ops ran: run it as TensorFlow would.
            logger.info("%s: the single-threaded executor cannot run it (%s); the default executor runs it",
                        self.name, next(line for line in str(e).splitlines() if _REFUSAL in line)[:200].strip())
            self.chosen = DEFAULT
            return fn()
        if self.chosen is None:
            self._observe(executor, self._clock() - start, max(rows, 1))
        return result

    def _observe(self, executor: str, seconds: float, rows: int) -> None:
        self._seen[executor] += 1
        if self._seen[executor] <= self._skip:
            return
        self._seconds[executor] += seconds
        self._rows[executor] += rows
        if min(self._seen.values()) < self._skip + self._calls:
            return
        per_row = {e: self._seconds[e] / self._rows[e] for e in self._seconds}
        self.chosen = SINGLE_THREADED if per_row[SINGLE_THREADED] <= self._margin * per_row[DEFAULT] else DEFAULT
        logger.info("%s runs on TensorFlow's %s executor (%.1f us per row on the single-threaded one, %.1f on "
                    "the default, over %d calls each)", self.name,
                    "single-threaded" if self.chosen else "default", per_row[SINGLE_THREADED] * 1e6,
                    per_row[DEFAULT] * 1e6, self._calls)


def _under(executor: str, fn: Callable[[], Any]) -> Any:
    """fn() with this thread's eager function calls on `executor` (then the thread's own setting again)."""
    options = _context.context().function_call_options
    previous = options.executor_type
    options.executor_type = executor
    try:
        return fn()
    finally:
        options.executor_type = previous
