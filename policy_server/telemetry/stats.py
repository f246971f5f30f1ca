"""Per-policy serving statistics: counters and recent latency percentiles, and the stats log line."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import threading
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

_WINDOW = 4096  # latency samples kept for percentiles
# The stats lines are the server's own (operators filter on its logger).
_server_logger = logging.getLogger("policy_server.server")


@dataclasses.dataclass(frozen=True)
class StatsSnapshot:
    """Counters since start and percentiles over the last samples (milliseconds)."""

    requests: int
    rows: int
    batches: int
    errors: int
    mean_batch_size: float
    queue_wait_ms_p50: float
    queue_wait_ms_p99: float
    inference_ms_p50: float
    inference_ms_p99: float

    def summary(self) -> str:
        return (f"requests={self.requests} rows={self.rows} batches={self.batches} "
                f"mean_batch={self.mean_batch_size:.1f} errors={self.errors} "
                f"wait_ms p50={self.queue_wait_ms_p50:.2f} p99={self.queue_wait_ms_p99:.2f} "
                f"infer_ms p50={self.inference_ms_p50:.2f} p99={self.inference_ms_p99:.2f}")


class BatchObserver(Protocol):
    """Also told of every batch (e.g. the server's Prometheus histograms, see metrics.PolicyMetrics)."""

    def batch(self, rows: int, waits_s: Sequence[float], inference_s: float) -> None:
        """One backend call of `rows` rows, the queue wait of each request in it, and its duration."""


class PolicyStats:
    """Thread-safe counters of one policy's traffic.

    Attributes:
      observer: told of every batch too, when set (outside the lock).
    """

    def __init__(self) -> None:
        self.observer: BatchObserver | None = None
        self._lock = threading.Lock()
        self._requests = self._rows = self._batches = self._errors = 0
        self._batch_rows = 0
        self._waits: collections.deque[float] = collections.deque(maxlen=_WINDOW)
        self._inference: collections.deque[float] = collections.deque(maxlen=_WINDOW)

    def record_batch(self, requests: int, rows: int, waits_s: list[float], inference_s: float,
                     batch_rows: int | None = None) -> None:
        """Records one inference call that answered `requests` requests holding `rows` rows.

        `batch_rows` is the number of rows the call ran (failed requests
        included, padding excluded); it defaults to `rows`.
        """
        batch_rows = rows if batch_rows is None else batch_rows
        with self._lock:
            self._requests += requests
            self._rows += rows
            self._batches += 1
            self._batch_rows += batch_rows
            self._waits.extend(waits_s)
            self._inference.append(inference_s)
        if self.observer is not None:
            self.observer.batch(batch_rows, waits_s, inference_s)

    def record_requests(self, count: int) -> None:
        """Counts requests answered across several batches (split requests)."""
        with self._lock:
            self._requests += count

    def record_error(self, count: int = 1) -> None:
        with self._lock:
            self._errors += count

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            waits = np.array(self._waits) * 1e3 if self._waits else np.zeros(1)
            infer = np.array(self._inference) * 1e3 if self._inference else np.zeros(1)
            return StatsSnapshot(
                requests=self._requests, rows=self._rows, batches=self._batches, errors=self._errors,
                mean_batch_size=self._batch_rows / self._batches if self._batches else 0.0,
                queue_wait_ms_p50=float(np.percentile(waits, 50)),
                queue_wait_ms_p99=float(np.percentile(waits, 99)),
                inference_ms_p50=float(np.percentile(infer, 50)),
                inference_ms_p99=float(np.percentile(infer, 99)))


class StatsLog:
    """Logs a stats line per policy that had traffic since its last line (`--stats-interval`).

    Args:
      hosted: returns the hosted policies (each with `name`, `backend`, `stats`, `scheduler`).
    """

    def __init__(self, hosted: Callable[[], Iterable[Any]]):
        self._hosted = hosted
        self._logged: dict[str, tuple[int, int]] = {}

    async def run(self, interval: float) -> None:
        """Writes the lines every `interval` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.write()

    def write(self, final: bool = False) -> None:
        """The lines of the policies with traffic since their last line (`final`: since the start)."""
        for hosted in self._hosted():
            snap = hosted.stats.snapshot()
            seen = (snap.requests, snap.errors)
            if seen == (self._logged.get(hosted.name, (0, 0)) if not final else (0, 0)):
                continue
            self._logged[hosted.name] = seen
            _server_logger.info("policy %r v%d: %s queue=%d", hosted.name, hosted.backend.version, snap.summary(),
                                hosted.scheduler.queue_depth, extra={"event": "stats", "policy": hosted.name})
