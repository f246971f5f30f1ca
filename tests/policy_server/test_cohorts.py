"""engine/cohorts.py: when batches wait for the actors just answered, and for how long.

The decisions, on a hand-driven clock: no trial while batches hold every
actor, a trial
window each way once they can, the faster way kept, the other tried again
every KEEP_WINDOWS windows. Then a scheduler with a policy whose cost is
mostly per batch, and actors that split into two cohorts: it ends up
gathering, with fuller batches.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from policy_server.config import BatchingConfig
from policy_server.engine import cohorts
from policy_server.engine.cohorts import CohortGather
from policy_server.engine.scheduler import BatchScheduler
from policy_server.telemetry.stats import PolicyStats
from tests.support.batching import request_of
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import Clock


@pytest.fixture(autouse=True)
def windows_by_batches(monkeypatch, request):
    """On the hand-driven clock a window is WINDOW_BATCHES batches, whatever their length."""
    if "scheduler" not in request.node.name:
        monkeypatch.setattr(cohorts, "WINDOW_SECONDS", 0.0)


def _serve(gather: CohortGather, clock: Clock, *, actors: int, rows_per_batch: int, batch_time: float,
           return_time: float, windows: int = 1) -> None:
    """`windows` windows of batches of `rows_per_batch` rows, each `batch_time` long, taking the `actors`
    in turn (with 16 actors and batches of 8, two cohorts that alternate). A batch's actors come back
    `return_time` after their answers."""
    for turn in range(actors):
        gather.arrived(("actor", turn), 0)
    turn = 0
    for _ in range(windows * cohorts.WINDOW_BATCHES):
        members = [("actor", (turn + k) % actors) for k in range(rows_per_batch)]
        turn += rows_per_batch
        clock.now += batch_time
        for member in members:
            gather.answered(member)
        clock.now += return_time
        for member in members:
            gather.arrived(member, 0)
        gather.batch_done(rows_per_batch, batch_time)


def test_no_trial_while_batches_hold_every_actor():
    clock = Clock()
    gather = CohortGather(clock)
    _serve(gather, clock, actors=8, rows_per_batch=8, batch_time=0.010, return_time=0.001, windows=4)
    assert not gather.gathering and not gather.describe()["trial"]


def test_cohorts_bring_a_trial_and_the_faster_way_is_kept():
    clock = Clock()
    gather = CohortGather(clock)
    # 16 actors, batches of 8 that take 10 ms: the actors come back (1 ms) while the next batch runs.
    _serve(gather, clock, actors=16, rows_per_batch=8, batch_time=0.010, return_time=0.0)
    assert gather.gathering and gather.describe()["trial"]  # the first window brings a trial of gathering
    # Gathering: batches of 16 in 11 ms each (twice the rows per second): kept.
    _serve(gather, clock, actors=16, rows_per_batch=16, batch_time=0.011, return_time=0.0)
    assert gather.gathering and not gather.describe()["trial"]
    rates = gather.describe()["rates"]
    assert rates[True] > cohorts.MARGIN * rates[False]
    # Every KEEP_WINDOWS windows the other way is tried again.
    _serve(gather, clock, actors=16, rows_per_batch=16, batch_time=0.011, return_time=0.0,
           windows=cohorts.KEEP_WINDOWS - 1)
    assert gather.gathering
    _serve(gather, clock, actors=16, rows_per_batch=16, batch_time=0.011, return_time=0.0)
    assert not gather.gathering and gather.describe()["trial"]


def test_gathering_that_serves_no_more_is_dropped():
    clock = Clock()
    gather = CohortGather(clock)
    _serve(gather, clock, actors=16, rows_per_batch=8, batch_time=0.010, return_time=0.0)
    assert gather.gathering
    # Batches of 16 that take twice as long (the cost is all per row): no more rows per second.
    _serve(gather, clock, actors=16, rows_per_batch=16, batch_time=0.020, return_time=0.001)
    assert not gather.gathering and not gather.describe()["trial"]


def test_patience_is_twice_the_return_and_at_most_a_batch():
    clock = Clock()
    gather = CohortGather(clock)
    for k in range(8):
        gather.arrived(k, 0)
        gather.answered(k)
    clock.now += 0.002
    for k in range(8):
        gather.arrived(k, 4)
    assert gather.patience(1.0) == pytest.approx(0.004)
    assert gather.patience(0.003) == pytest.approx(0.003)
    assert gather.expected_rows() == 32


def test_a_gathering_wait_ends_when_the_actors_are_back():
    async def scenario():
        gather = CohortGather()
        for k in range(4):
            gather.arrived(k, 0)
            gather.answered(k)
        queued = [0]
        wakeup = asyncio.Event()

        async def actors_return():
            for _ in range(4):
                await asyncio.sleep(0.001)
                queued[0] += 1
                wakeup.set()

        gather._returns.extend([5.0])  # patience of 1 s (the batch time): only the actors' return ends it
        task = asyncio.ensure_future(actors_return())
        started = time.monotonic()
        await gather.gather(lambda: queued[0], wakeup, 1.0, lambda: False)
        await task
        return time.monotonic() - started, queued[0]

    waited, queued = asyncio.run(scenario())
    assert queued == 4 and waited < 0.5


def test_a_scheduler_serving_cohorts_of_a_batch_cost_policy_gathers_them():
    """8 actors, a policy whose batch costs 20 ms whatever its rows: cohorts of 4 form, then merge."""
    async def scenario():
        backend = EchoBackend(stateful=False, delay=0.020)
        scheduler = BatchScheduler(backend, BatchingConfig(inline_threshold=0.0), PolicyStats(), _Raw())
        scheduler.start()
        stop = time.monotonic() + 6.0

        async def actor(k: int) -> None:
            await asyncio.sleep(0.011 * (k % 2))  # two cohorts from the start
            while time.monotonic() < stop and not _kept_gathering(scheduler.cohorts):
                request = request_of(echo_time_step(np.full(3, k, np.float32)), (), 0)
                request.source = ("actor", k)
                await scheduler.submit(request)
                await asyncio.sleep(0.002)  # the environment's step

        await asyncio.gather(*(actor(k) for k in range(8)))
        gathering = _kept_gathering(scheduler.cohorts)
        await scheduler.close()
        return gathering, backend.batch_sizes

    gathering, sizes = asyncio.run(scenario())
    assert gathering, "the scheduler never kept gathering"
    assert max(sizes) == 8 and np.mean(sizes[:cohorts.WINDOW_BATCHES]) <= 5


def _kept_gathering(gather: CohortGather) -> bool:
    state = gather.describe()
    return state["gathering"] and not state["trial"]


class _Raw:
    def fits(self, step):
        return True

    def encode_leaves(self, leaves):
        return leaves

    def encode(self, step):
        return step


def test_actors_that_left_stop_counting_within_a_few_batches():
    clock = Clock()
    gather = CohortGather(clock)
    _serve(gather, clock, actors=16, rows_per_batch=8, batch_time=0.010, return_time=0.0)
    assert gather.expected_rows() == 16
    _serve(gather, clock, actors=8, rows_per_batch=8, batch_time=0.010, return_time=0.0)  # 8 of them left
    assert gather.expected_rows() == 8


def test_past_the_tracking_bound_the_longest_silent_actor_is_forgotten(monkeypatch):
    monkeypatch.setattr(cohorts, "_MAX_TRACKED", 3)
    clock = Clock()
    gather = CohortGather(clock)
    for source in ("a", "b", "c", "a", "d"):  # "a" came back before "d" arrived: "b" is the longest silent
        clock.now += 0.001
        gather.arrived(source, 0)
    assert set(gather._active) == {"c", "a", "d"}  # pylint: disable=protected-access
