"""Tunes the batch delay to a latency target: longer waits while answers are fast, shorter when not.

A multiplicative-decrease, additive-increase controller over the p99 of the
latest answers' server-side latency (queue wait + inference). It only moves
the delay within [0, target / 2]: a batch never waits longer than half the
latency it is allowed. And a batch that already holds as many rows as the
largest recent batch stops waiting: with a fixed set of actors, each waiting
for its answer, nobody else is coming.
"""

from __future__ import annotations

import collections

import numpy as np

_WINDOW = 256      # answers per decision
_STEP = 0.05       # additive increase, as a fraction of the target
_BATCHES = 32      # recent batch sizes that set the expected fill


class LatencyTarget:
    """The batch delay that keeps the p99 server-side latency under `target` seconds.

    Args:
      target: the p99 latency to stay under, in seconds.
      initial_delay: where the delay starts.
    """

    def __init__(self, target: float, initial_delay: float = 0.0):
        if target <= 0:
            raise ValueError(f"the latency target must be > 0, got {target}")
        self.target = target
        self.delay = min(max(initial_delay, 0.0), target / 2)
        self._latencies: collections.deque[float] = collections.deque(maxlen=_WINDOW)
        self._since_decision = 0
        self._batch_rows: collections.deque[int] = collections.deque(maxlen=_BATCHES)

    def full(self, rows: int) -> bool:
        """Whether a batch of `rows` holds as many rows as the largest recent batch."""
        return bool(self._batch_rows) and rows >= max(self._batch_rows)

    def observe(self, latencies: list[float], rows: int) -> None:
        """Records one batch (its rows and its answers' latencies); every _WINDOW answers, moves the delay."""
        self._batch_rows.append(rows)
        self._latencies.extend(latencies)
        self._since_decision += len(latencies)
        if self._since_decision < _WINDOW:
            return
        self._since_decision = 0
        p99 = float(np.percentile(self._latencies, 99))
        if p99 > self.target:
            self.delay /= 2
        elif p99 < 0.8 * self.target:
            self.delay = min(self.delay + _STEP * self.target, self.target / 2)
