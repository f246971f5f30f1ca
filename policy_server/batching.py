"""Dynamic batching: merges many actors' requests into one backend call."""

from __future__ import annotations

import asyncio
import bisect
import collections
import concurrent.futures
import dataclasses
import logging
import time
from typing import Any, Callable

import grpc
import numpy as np
import tree

from policy_server import errors
from policy_server.backend import Backend, UnsupportedSeedError
from policy_server.stats import PolicyStats

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BatchingConfig:
    """How requests are merged into batches.

    Attributes:
      max_batch_size: rows per backend call; a batch closes when it is full.
      max_batch_delay: seconds a batch waits after its first row for more rows.
        The default 0 batches whatever queued while the previous batch ran
        ("natural" batching): a lone actor never waits, and under load the
        batches fill by themselves. A small delay (e.g. 0.002) trades latency
        for larger batches when actors arrive spread out.
      max_queue_size: requests waiting per policy; beyond it requests are
        rejected with RESOURCE_EXHAUSTED.
      allowed_batch_sizes: when set, batches are padded up to the next of these
        sizes (for backends compiled for fixed shapes); the largest must be
        >= max_batch_size.
    """

    max_batch_size: int = 64
    max_batch_delay: float = 0.0
    max_queue_size: int = 4096
    allowed_batch_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_batch_delay < 0:
            raise ValueError(f"max_batch_delay must be >= 0, got {self.max_batch_delay}")
        if self.max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {self.max_queue_size}")
        sizes = tuple(sorted(self.allowed_batch_sizes))
        if sizes and (sizes[0] < 1 or sizes[-1] < self.max_batch_size):
            raise ValueError(f"allowed_batch_sizes {sizes} must be >= 1 and reach max_batch_size "
                             f"{self.max_batch_size}")
        object.__setattr__(self, "allowed_batch_sizes", sizes)


@dataclasses.dataclass
class Request:
    """One accepted request: validated numpy values and the future of its answer.

    `rows` is the number of outer rows (0 = unbatched: the values have exactly
    the spec shapes).
    """

    time_step: Any
    policy_state: Any
    rows: int
    seed: int | None = None
    arrival: float = dataclasses.field(default_factory=time.monotonic)
    future: asyncio.Future | None = None

    @property
    def size(self) -> int:
        return max(self.rows, 1)


class Batcher:
    """Per-policy queue and batch loop; inference runs on its own worker thread.

    Args:
      backend: the policy.
      config: batching settings.
      stats: where traffic is counted.
      postprocess: called on the worker thread with each request's PolicyStep
        (numpy), e.g. to encode the response off the event loop.
    """

    def __init__(self, backend: Backend, config: BatchingConfig, stats: PolicyStats,
                 postprocess: Callable[[Any], Any] = lambda step: step):
        self.backend = backend
        self.config = config
        self.stats = stats
        self._postprocess = postprocess
        self._pending: collections.deque[Request] = collections.deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="batcher")
        self._task: asyncio.Task | None = None

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def submit(self, request: Request) -> asyncio.Future:
        """Queues a request; the future resolves to (result, version).

        Raises:
          ServingError: UNAVAILABLE when shutting down, RESOURCE_EXHAUSTED when
            the queue is full.
        """
        if self._closing:
            raise errors.unavailable("the server is shutting down")
        if len(self._pending) >= self.config.max_queue_size:
            self.stats.record_error()
            raise errors.resource_exhausted(
                f"the policy's queue is full ({self.config.max_queue_size} requests waiting)")
        request.future = asyncio.get_running_loop().create_future()
        self._pending.append(request)
        self._wakeup.set()
        return request.future

    def stop_accepting(self) -> None:
        """From now on `submit` refuses requests with UNAVAILABLE (queued ones still run)."""
        self._closing = True
        self._wakeup.set()

    async def close(self) -> None:
        """Stops accepting requests, answers every queued one, then returns."""
        self.stop_accepting()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def run_exclusive(self, fn: Callable[[], Any]) -> Any:
        """Runs `fn` on the worker thread between two batches.

        Raises:
          ServingError: UNAVAILABLE once the batcher has shut down.
        """
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        except RuntimeError as e:
            if "shutdown" in str(e):
                raise errors.unavailable("the server is shutting down") from None
            raise

    async def _loop(self) -> None:
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._fill(self._pending[0])
            batch = self._take()
            try:
                await self._run(batch)
            except Exception as e:  # pylint: disable=broad-except
                # Never let the loop die: every accepted request gets an answer.
                logger.exception("batch of %d requests failed outside inference", len(batch))
                for request in batch:
                    if request.future is not None and not request.future.done():
                        request.future.set_exception(errors.ServingError(
                            grpc.StatusCode.INTERNAL, f"batch failed: {type(e).__name__}: {e}"))

    async def _fill(self, first: Request) -> None:
        """Waits until the batch is full or max_batch_delay after its first row."""
        if first.seed is not None or not self.backend.batchable:
            return  # it runs alone: waiting for company would only add latency
        deadline = first.arrival + self.config.max_batch_delay
        while not self._closing:
            if sum(r.size for r in self._pending) >= self.config.max_batch_size:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[Request]:
        """Pops whole requests up to max_batch_size rows; seeded requests go alone."""
        first = self._pending.popleft()
        batch, rows = [first], first.size
        if first.seed is not None or not self.backend.batchable:
            return batch
        while self._pending:
            nxt = self._pending[0]
            if nxt.seed is not None or rows + nxt.size > self.config.max_batch_size:
                break
            batch.append(self._pending.popleft())
            rows += nxt.size
        return batch

    async def _run(self, batch: list[Request]) -> None:
        start = time.monotonic()
        loop = asyncio.get_running_loop()
        outcomes = await loop.run_in_executor(self._executor, self._infer, batch)
        waits = [start - r.arrival for r in batch]
        failures = answered_rows = 0
        for request, outcome in zip(batch, outcomes):
            if isinstance(outcome, BaseException):
                failures += 1
            else:
                answered_rows += request.size
            if request.future.done():  # the caller went away
                continue
            if isinstance(outcome, BaseException):
                request.future.set_exception(outcome)
            else:
                request.future.set_result(outcome)
        self.stats.record_error(failures)
        self.stats.record_batch(len(batch) - failures, answered_rows, waits, time.monotonic() - start,
                                batch_rows=sum(r.size for r in batch))

    def _infer(self, batch: list[Request]) -> list[Any]:
        """Worker thread: one backend call for the batch; one outcome per request."""
        with self.backend.lock:
            version = self.backend.version
            if not self.backend.batchable:
                return [_guarded(lambda r=r: self._direct(r, version), self.backend) for r in batch]
            try:
                return self._batched(batch, version)
            except Exception as e:  # pylint: disable=broad-except
                if len(batch) == 1:
                    return [_as_serving_error(e, self.backend)]
                # Keep one bad request from failing its neighbours: retry one by one.
                logger.warning("batch of %d requests failed (%s); retrying them one by one", len(batch), e)
                return [_guarded(lambda r=r: self._batched([r], version)[0], self.backend) for r in batch]

    def _direct(self, request: Request, version: int) -> Any:
        step = self.backend.action(request.time_step, request.policy_state, request.seed)
        return self._postprocess(step), version

    def _batched(self, batch: list[Request], version: int) -> list[Any]:
        flat = [tree.flatten((r.time_step, r.policy_state)) for r in batch]
        rows = sum(r.size for r in batch)
        if len(batch) == 1 and batch[0].rows:
            leaves = flat[0]
        else:
            leaves = [np.concatenate([f[i] if r.rows else f[i][None] for f, r in zip(flat, batch)])
                      for i in range(len(flat[0]))]
        padded = self._padded_size(rows)
        if padded > rows:
            leaves = [np.concatenate([x, np.repeat(x[-1:], padded - rows, axis=0)]) for x in leaves]
        step = self.backend.action_flat(leaves, batch[0].seed)
        out = tree.flatten(step)
        results, start = [], 0
        for r in batch:
            rows_of = [x[start] if not r.rows else x[start:start + r.rows] for x in out]
            results.append((self._postprocess(tree.unflatten_as(step, rows_of)), version))
            start += r.size
        return results

    def _padded_size(self, rows: int) -> int:
        sizes = self.config.allowed_batch_sizes
        if not sizes:
            return rows
        i = bisect.bisect_left(sizes, rows)
        return sizes[i] if i < len(sizes) else rows


def _guarded(fn: Callable[[], Any], backend: Backend) -> Any:
    """Returns fn(), or the ServingError its exception is answered with."""
    try:
        return fn()
    except Exception as e:  # pylint: disable=broad-except
        return _as_serving_error(e, backend)


def _as_serving_error(error: Exception, backend: Backend) -> errors.ServingError:
    if isinstance(error, errors.ServingError):
        return error
    if isinstance(error, UnsupportedSeedError):
        return errors.invalid_argument(f"seed: {error}")
    logger.exception("inference failed on %s backend", backend.kind, exc_info=error)
    return errors.ServingError(grpc.StatusCode.INTERNAL, f"inference failed: {type(error).__name__}: {error}")
