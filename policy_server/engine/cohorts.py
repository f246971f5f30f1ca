"""Batches as full as the actors: after a batch, wait for the actors it answered, when that serves more.

With natural batching the next batch takes what queued while the last one
ran. When a policy's batches take long against the time its actors need to
come back with their next step, the actors split into cohorts: batch A runs
while cohort B queues; B runs while A's actors step and come back; each batch
holds about half of them. Waiting after a batch for the actors it answered
merges the cohorts: one batch of all, for the price of that wait. Whether that
pays depends on the policy (its cost per batch against its cost per row) and
on the machine (actors and server may share its cores), so it is measured,
not assumed: while batches hold clearly fewer rows than the active actors,
the scheduler serves one window of batches (half a second at least) each
way, keeps the way that answered more rows per second, and tries the other
again every few windows. A wait lasts at most one batch time (twice the
actors' usual return, if less), so a small, fast policy that gains nothing
from it pays microseconds in its trial windows only, and closes its batches
at once otherwise, as before.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import statistics
import time
from typing import Any, Callable, Hashable

logger = logging.getLogger(__name__)

WINDOW_BATCHES = 24   # batches per measured window, at least
WINDOW_SECONDS = 0.5   # seconds per measured window, at least (rows per second of fewer are noise)
KEEP_WINDOWS = 8      # windows served the chosen way before the other way is tried again
MARGIN = 1.10         # gathering is kept when it answers at least 10% more rows per second (less is noise here)
ACTIVE_CYCLES = 4     # an actor counts as active while its last request is at most this many batch cycles old
ACTIVE_FOR = 1.0      # ... and at most this many seconds old
_MAX_TRACKED = 4096   # sources remembered at most (a server with more actors forgets the oldest)


class CohortGather:
    """Decides whether the scheduler waits, after a batch, for the actors that batch answered.

    Args:
      clock: time.monotonic, or a test's clock.
      name: the policy's name, for the log line that says when the way changes.

    Attributes:
      gathering: whether batches now wait for the actors just answered.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, name: str = ""):
        self.clock, self.name = clock, name
        self.gathering = False
        self._trial = False  # the current window tries the way not chosen
        self._answered_at: dict[Hashable, float] = {}  # source -> when its last answer went out
        self._returns: collections.deque[float] = collections.deque(maxlen=64)  # answer -> next request (s)
        self._active: dict[Hashable, tuple[float, int]] = {}  # source -> (last arrival, its rows)
        self._window: list[float] = []  # [start, rows, batches, batch rows]
        self._rates: dict[bool, float] = {}  # rows/s of the latest window served each way
        self._kept = 0
        self._cycle: float | None = None  # moving average of the time between two batches' ends
        self._last_batch: float | None = None

    # ------------------------------------------------------------ what the scheduler reports

    def arrived(self, source: Hashable | None, rows: int) -> None:
        """A request of `source` (of `rows` rows; 0: unbatched) was queued."""
        if source is None:
            return
        now = self.clock()
        answered = self._answered_at.pop(source, None)
        if answered is not None:
            self._returns.append(now - answered)
        self._active.pop(source, None)  # re-inserted last: the dict stays ordered by last arrival
        self._active[source] = (now, max(rows, 1))
        if len(self._active) > _MAX_TRACKED:
            self._active.pop(next(iter(self._active)))

    def answered(self, source: Hashable | None) -> None:
        """The answer to a request of `source` went out."""
        if source is not None:
            self._answered_at[source] = self.clock()
            if len(self._answered_at) > _MAX_TRACKED:
                self._answered_at.pop(next(iter(self._answered_at)))

    def batch_done(self, rows: int, seconds: float) -> None:
        """A batch of `rows` rows ran in `seconds`; every WINDOW_BATCHES batches, decides the way."""
        now = self.clock()
        if self._last_batch is not None:
            cycle = now - self._last_batch
            self._cycle = cycle if self._cycle is None else 0.9 * self._cycle + 0.1 * cycle
        self._last_batch = now
        if not self._window:
            self._window = [now - seconds, 0, 0, 0]
        self._window[1] += rows
        self._window[2] += 1
        if self._window[2] < WINDOW_BATCHES or now - self._window[0] < WINDOW_SECONDS:
            return
        start, answered, batches = self._window[0], self._window[1], self._window[2]
        self._window = []
        self._rates[self.gathering] = answered / max(now - start, 1e-9)
        self._forget(now)
        if not self._cohorts_possible(answered / batches):
            self.gathering, self._trial, self._kept = False, False, 0
            return
        if self._trial:  # both ways measured: keep the better
            chosen_before = not self.gathering
            self._trial, self._kept = False, 0
            self.gathering = self._rates.get(True, 0.0) >= MARGIN * self._rates.get(False, 0.0)
            if self.gathering != chosen_before:
                logger.info("policy %r: batches %s the actors just answered (%.0f rows/s waiting for them, "
                            "%.0f without)", self.name, "now wait for" if self.gathering else "no longer wait for",
                            self._rates.get(True, 0.0), self._rates.get(False, 0.0))
            return
        self._kept += 1
        if self._kept >= KEEP_WINDOWS or (not self.gathering and True not in self._rates):
            self.gathering, self._trial = not self.gathering, True

    # ------------------------------------------------------------ what it decides

    def expected_rows(self) -> int:
        """The rows of the actors active lately (a request in the last ACTIVE_CYCLES batch cycles): how
        full a batch that waited for all of them is. Actors that left stop counting within a few batches."""
        now = self.clock()
        horizon = ACTIVE_FOR if self._cycle is None else min(ACTIVE_FOR, ACTIVE_CYCLES * self._cycle)
        return sum(rows for t, rows in self._active.values() if now - t <= horizon)

    def patience(self, batch_time: float) -> float:
        """How long a batch waits for the answered actors: twice their usual return, at most one batch time."""
        if not self._returns:
            return 0.0
        return min(2 * statistics.median(self._returns), batch_time)

    async def gather(self, queued_rows: Callable[[], int], wakeup: asyncio.Event, batch_time: float,
                     stop: Callable[[], bool]) -> None:
        """Waits until the queue holds the active actors' rows, patience() passes, or `stop()`."""
        want, deadline = self.expected_rows(), self.clock() + self.patience(batch_time)
        while queued_rows() < want and not stop():
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            wakeup.clear()
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    # ------------------------------------------------------------ internals

    def _forget(self, now: float) -> None:
        for source in [s for s, (t, _) in self._active.items() if now - t > ACTIVE_FOR]:
            del self._active[source]
            self._answered_at.pop(source, None)

    def _cohorts_possible(self, mean_rows: float) -> bool:
        """Whether the actors are split: batches hold clearly fewer rows than the active actors have.

        (Gathering, batches hold them all: whether they would split again is
        what the trial of the other way measures.)
        """
        return bool(self._returns) and (self.gathering or self.expected_rows() > 1.25 * mean_rows)

    def describe(self) -> dict[str, Any]:
        """The state, for logs and tests."""
        return {"gathering": self.gathering, "trial": self._trial, "rates": dict(self._rates),
                "active_rows": self.expected_rows(),
                "return_s": statistics.median(self._returns) if self._returns else None}
