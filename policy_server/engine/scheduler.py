"""The batch scheduler: one policy's queue, its batch loop and its inference thread.

Every call into a backend (inference, initial state, reading or swapping
weights) is made by the scheduler's loop, one at a time, between two
batches: that loop is the policy's only lock, so no batch ever sees a mix of
two versions. Batches of a fast policy run on the event loop itself (a thread
hop would cost more than the call); slow ones, and all weight and state work,
run on the scheduler's one inference thread. Every call into the policy's code
goes through `outcomes.capture`: whatever it raises (StopIteration and
BaseExceptions included) comes back as a value and is answered as an error,
so no exception of a policy can stop the loop.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import time
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import tree

from policy_client.wire import errors
from policy_server.engine import batching
from policy_server.engine import outcomes
from policy_server.backends.base import Backend
from policy_server.engine.batching import Request
from policy_server.engine.cohorts import CohortGather
from policy_server.config import BatchingConfig
from policy_server.engine.fair_queue import FairQueue
from policy_server.telemetry.stats import PolicyStats
from policy_server.engine.latency import LatencyTarget

logger = logging.getLogger(__name__)

# Event loop turns after a batch: two let gRPC hand the new messages over and
# their readers queue them; more are taken while the queue still grows.
_GATHER_TURNS = 6


class StepEncoder(Protocol):
    """Turns a policy's answer for one request into what the scheduler resolves its future with.

    Called on the inference thread (or the event loop for fast policies), so
    encoding stays off the request-reading path.
    """

    def fits(self, step: Any) -> bool:
        """Whether `encode_leaves` can encode answers of this batch's step structure."""

    def encode_leaves(self, leaves: Sequence[np.ndarray]) -> Any:
        """One request's answer from its leaves (dm-tree order of a step that fits)."""

    def encode(self, step: Any) -> Any:
        """One request's answer from its PolicyStep nest."""


@dataclasses.dataclass
class _Exclusive:
    fn: Callable[[], Any]
    future: asyncio.Future
    swap: bool


class BatchScheduler:
    """Merges one policy's requests into batched backend calls, sharing them fairly between clients.

    Args:
      backend: the policy.
      config: batching settings.
      stats: where traffic is counted.
      encoder: turns each request's answer into what its future resolves to.
    """

    def __init__(self, backend: Backend, config: BatchingConfig, stats: PolicyStats,
                 encoder: StepEncoder):
        self.backend = backend
        self.config = config
        self.stats = stats
        self._encoder = encoder
        self._pending = FairQueue()  # batches share their rows fairly between clients
        self._exclusive: collections.deque[_Exclusive] = collections.deque()
        self._open_splits = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._task: asyncio.Task | None = None
        self._recent_inference: float | None = None  # moving average of batch times (seconds)
        self.latency_target = LatencyTarget(config.target_latency) if config.target_latency else None
        self.cohorts = CohortGather()  # waits for the actors just answered, when that serves more (cohorts.py)

    @property
    def queue_depth(self) -> int:
        """Requests (and pieces of split requests) waiting for a batch."""
        return len(self._pending)

    @property
    def exclusive_waiting(self) -> int:
        """Calls waiting to run between two batches (weight swaps, initial states, variable reads)."""
        return len(self._exclusive)

    @property
    def full(self) -> bool:
        """Whether a request arriving now would be refused (the queue holds max_queue_size requests)."""
        return len(self._pending) >= self.config.max_queue_size

    def queue_full_error(self, policy: str = "") -> errors.ResourceExhaustedError:
        """The refusal of a request that finds the queue full, with a retry hint.

        The hint (google.rpc.RetryInfo) is the recent time of one batch, when
        max_batch_size places free up: at least 1 ms, at most 1 s.
        """
        recent = self._recent_inference if self._recent_inference is not None else 0.01
        whose = f"policy {policy!r}'s queue" if policy else "the policy's queue"
        return errors.ResourceExhaustedError(
            f"{whose} is full ({self.config.max_queue_size} requests waiting, --max-queue-size): send it again "
            "after the retry delay, or to another replica", reason=errors.QUEUE_FULL,
            retry_delay=min(max(recent, 0.001), 1.0))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def submit(self, request: Request) -> asyncio.Future:
        """Queues a request; the future resolves to (answer, version).

        A batchable, unseeded request with more rows than max_batch_size is
        queued as consecutive pieces (see batching.split_request) and
        answered once, whole.

        Raises:
          UnavailableError: shutting down.
          ResourceExhaustedError: the queue is full.
        """
        if self._closing:
            raise errors.UnavailableError("the server is shutting down")
        if self.full:
            self.stats.record_error()
            raise self.queue_full_error()
        request.future = asyncio.get_running_loop().create_future()
        if request.rows > self.config.max_batch_size and batching.can_join(request, self.backend.batchable):
            pieces = batching.split_request(request, self.config.max_batch_size)
            for piece in pieces:
                piece.future = request.future
            self._pending.append(pieces[0])  # the rest follow one by one (see _loop)
            pieces[0].split.waiting.extend(pieces[1:])
            self._open_splits += 1
        else:
            self._pending.append(request)
        self.cohorts.arrived(request.source, request.rows)
        self._wakeup.set()
        return request.future

    async def run_exclusive(self, fn: Callable[[], Any], *, swap: bool = False) -> Any:
        """Runs `fn` on the inference thread between two batches and returns its result.

        Args:
          fn: what to run (it may call the backend).
          swap: `fn` changes the weights: it waits until no split request is
            half-served, so every answer comes from one version.

        Raises:
          UnavailableError: the scheduler has shut down.
          Exception: whatever `fn` raised.
        """
        if self._task is None or self._task.done():
            raise errors.UnavailableError("the server is shutting down")
        future = asyncio.get_running_loop().create_future()
        self._exclusive.append(_Exclusive(fn, future, swap))
        self._wakeup.set()
        return await future

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

    # ------------------------------------------------------------ the loop

    async def _loop(self) -> None:
        while True:
            await self._run_exclusive_work()
            if not self._pending:
                if self._closing and not self._exclusive:
                    return
                if not self._exclusive:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                continue
            if self.cohorts.gathering and self.latency_target is None and self._recent_inference is not None:
                await self.cohorts.gather(lambda: self._pending.rows, self._wakeup, self._recent_inference,
                                          lambda: self._closing or bool(self._exclusive))
            await self._fill(self._pending.peek())
            batch = self._pending.take_batch(self.config.max_batch_size, self.backend.batchable)
            for request in batch:  # a split request's next piece queues behind the others: they interleave
                if request.split is not None and request.split.waiting:
                    self._pending.append(request.split.waiting.popleft())
            try:
                await self._run(batch)
            except Exception as e:  # pylint: disable=broad-except
                # Never let the loop die: every accepted request gets an answer.
                logger.exception("batch of %d requests failed outside inference", len(batch))
                for request in batch:
                    _settle(request.future, errors.InternalError(f"batch failed: {type(e).__name__}: {e}"))

    async def _run_exclusive_work(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(len(self._exclusive)):
            work = self._exclusive.popleft()
            if work.swap and self._open_splits:
                self._exclusive.append(work)  # after the split requests in flight
                continue
            try:
                result = outcomes.unwrap(await loop.run_in_executor(self._executor, outcomes.capture, work.fn))
            except Exception as e:  # pylint: disable=broad-except
                _settle(work.future, e)
            else:
                _settle(work.future, result)

    @property
    def batch_delay(self) -> float:
        """How long a batch now waits for more rows after its first (tuned under a latency target)."""
        return self.latency_target.delay if self.latency_target else self.config.max_batch_delay

    async def _fill(self, first: Request) -> None:
        """Waits until the batch is full, or its wait after the first row is over.

        The wait is batch_delay; below min_batch_size rows it is at least
        min_batch_timeout, and a batch that reached min_batch_size with no
        delay set goes at once.
        """
        if not batching.can_join(first, self.backend.batchable):
            return  # it runs alone: waiting for company would only add latency
        config = self.config
        while not self._closing:
            rows = self._pending.rows
            if rows >= config.max_batch_size:
                return
            if self.latency_target is not None and rows >= config.min_batch_size and self.latency_target.full(rows):
                return
            wait = self.batch_delay if rows >= config.min_batch_size else max(self.batch_delay,
                                                                              config.min_batch_timeout)
            remaining = first.arrival + wait - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    @property
    def inline(self) -> bool:
        """Whether batches now run on the event loop (see BatchingConfig.inline_threshold)."""
        return self._recent_inference is not None and self._recent_inference < self.config.inline_threshold

    async def _off_loop(self, fn: Callable[[], Any]) -> Any:
        """fn() on the event loop for a fast policy, else on the inference thread (raises what it raised)."""
        if self.inline:
            return outcomes.unwrap(outcomes.capture(fn))
        return outcomes.unwrap(await asyncio.get_running_loop().run_in_executor(self._executor, outcomes.capture, fn))

    async def _run(self, batch: list[Request]) -> None:
        start = time.monotonic()
        results = await self._off_loop(lambda: self._infer(batch))
        inference = time.monotonic() - start
        recent = self._recent_inference
        self._recent_inference = inference if recent is None else 0.8 * recent + 0.2 * inference
        failures = answered = answered_rows = 0
        for request, outcome in zip(batch, results):
            failed = isinstance(outcome, BaseException)
            failures += failed and request.split is None
            answered += not failed and request.split is None
            answered_rows += 0 if failed else request.size
            if request.split is not None:
                await self._piece_done(request, outcome)
            else:
                _settle(request.future, outcome)
                self.cohorts.answered(request.source)
        self.stats.record_error(failures)
        waits = [start - r.arrival for r in batch]
        self.stats.record_batch(answered, answered_rows, waits, inference, batch_rows=sum(r.size for r in batch))
        self.cohorts.batch_done(answered_rows, inference)
        if self.latency_target is not None:
            self.latency_target.observe([w + inference for w in waits], sum(r.size for r in batch))
        await self._gather()

    async def _gather(self) -> None:
        """Gives the event loop a few turns after a batch, so that the answers go out and the
        requests that arrived meanwhile reach the queue: the next batch takes them all."""
        grown = True
        for turn in range(_GATHER_TURNS):
            if turn >= 2 and not grown:
                return
            before = len(self._pending)
            await asyncio.sleep(0)
            grown = len(self._pending) > before

    async def _piece_done(self, piece: Request, outcome: Any) -> None:
        """Records one piece; answers the whole request once its last piece has run."""
        whole = piece.split
        whole.done += 1
        if isinstance(outcome, BaseException):
            whole.error = whole.error or outcome
        else:
            whole.steps[piece.piece] = outcome
        if not whole.complete:
            return
        try:
            if whole.error is not None:
                self.stats.record_error()
                _settle(piece.future, whole.error)
                return
            version, step = whole.steps[0][1], whole.steps[0][2]
            pieces = [whole.steps[i][0] for i in range(whole.pieces)]
            raw = whole.request.raw
            merge = lambda: (self._answer(batching.concat(pieces), step, raw), version)  # noqa: E731
            _settle(piece.future, await self._off_loop(merge))
            self.stats.record_requests(1)
        except Exception as e:  # pylint: disable=broad-except
            _settle(piece.future, outcomes.logged_error(e, self.backend))
        finally:
            self._open_splits -= 1

    # ------------------------------------------------------------ inference thread

    def _infer(self, batch: list[Request]) -> list[Any]:
        """One backend call for the batch; one outcome per request: (answer, version) or an error."""
        version = self.backend.version
        guarded = outcomes.guarded
        if batch[0].local is not None:
            return [guarded(lambda: self._local(batch[0], version), self.backend)]
        if not self.backend.batchable:
            return [guarded(lambda r=r: self._direct(r, version), self.backend) for r in batch]
        outcome = outcomes.capture(lambda: self._batched(batch, version))
        if not isinstance(outcome, outcomes.Raised):
            return outcome
        if len(batch) == 1:
            return [outcomes.logged_error(outcome.error, self.backend)]
        # Keep one bad request from failing its neighbours: retry one by one.
        logger.warning("batch of %d requests failed (%s); retrying them one by one", len(batch), outcome.error)
        return [guarded(lambda r=r: self._batched([r], version)[0], self.backend) for r in batch]

    def _direct(self, request: Request, version: int) -> Any:
        time_step, policy_state = request.unflatten(request.leaves)
        step = self.backend.action(time_step, policy_state, request.seed)
        return self._answer(tree.flatten(step), step, request.raw), version

    def _local(self, request: Request, version: int) -> Any:
        step = self.backend.local_action(*request.local, request.seed)
        return self._encoder.encode(step), version

    def _batched(self, batch: list[Request], version: int) -> list[Any]:
        leaves, rows = batching.stack(batch)
        seed = batch[0].seed
        if seed is None:  # a seeded call runs as the client sent it: padding would change its draws
            leaves = batching.pad(leaves, rows, batching.padded_size(rows, self.config.allowed_batch_sizes))
        step = self.backend.action_flat(leaves, seed)
        fits = self._encoder.fits(step)
        answers = batching.split(tree.flatten(step), batch)
        # Pieces of a split request stay numpy until the whole request is joined.
        return [(rows_of, version, step) if r.split is not None else
                (rows_of if r.raw else self._encode(rows_of, step, fits), version)
                for r, rows_of in zip(batch, answers)]

    def _answer(self, leaves: Sequence[np.ndarray], step: Any, raw: bool) -> Any:
        """A raw request's leaves as they are (a list), else their encoding."""
        return list(leaves) if raw else self._encode(leaves, step)

    def _encode(self, leaves: Sequence[np.ndarray], step: Any, fits: bool | None = None) -> Any:
        """One request's answer from its leaves; `step` gives the structure."""
        if fits is None:
            fits = self._encoder.fits(step)
        if fits:
            return self._encoder.encode_leaves(leaves)
        return self._encoder.encode(tree.unflatten_as(step, list(leaves)))


def _settle(future: asyncio.Future | None, outcome: Any) -> None:
    """Answers a future once (a caller that went away leaves it cancelled)."""
    if future is None or future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcomes.portable(outcome))  # a future refuses StopIteration
    else:
        future.set_result(outcome)
