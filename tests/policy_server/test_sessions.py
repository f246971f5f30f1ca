"""SessionTable: bounded, expiring, one step at a time per sequence, in arrival order (a fake clock)."""

from __future__ import annotations

import asyncio

import pytest

from policy_client.wire import errors
from policy_server.engine.sessions import SessionTable
from tests.support.servers import Clock


async def initial() -> int:
    return 0


def counting(log: list, delay: float = 0.0):
    async def act(state: int):
        await asyncio.sleep(delay)
        log.append(state)
        return state + 1, state + 1

    return act


def test_steps_continue_from_the_state_the_previous_left_and_restart_on_start():
    async def run():
        table, log = SessionTable(), []
        for start in (True, False, False, True, False):
            ticket = table.begin("a", start, False)
            await table.step(ticket, start, initial, counting(log))
        return log, table.counts()

    log, counts = asyncio.run(run())
    assert log == [0, 1, 2, 0, 1]
    assert counts == {"open": 1, "started": 1, "ended": 0, "expired": 0, "refused": 0}


def test_pipelined_steps_of_one_sequence_run_in_arrival_order():
    async def run():
        table, log = SessionTable(), []
        tickets = [table.begin("a", i == 0, i == 4) for i in range(5)]  # taken in before any runs
        # The first step is the slowest: the others must wait for it.
        steps = [table.step(t, i == 0, initial, counting(log, 0.02 if i == 0 else 0.0)) for i, t in enumerate(tickets)]
        return await asyncio.gather(*steps), log, table.open

    answers, log, still_open = asyncio.run(run())
    assert answers == [1, 2, 3, 4, 5] and log == [0, 1, 2, 3, 4] and still_open == 0


def test_the_bound_refuses_with_resource_exhausted_and_idle_sequences_expire():
    async def run():
        clock = Clock()
        table = SessionTable(max_sessions=2, idle_timeout=10.0, clock=clock)
        for key in ("a", "b"):
            await table.step(table.begin(key, True, False), True, initial, counting([]))
        with pytest.raises(errors.ResourceExhaustedError, match="2 sequences are open"):
            table.begin("c", True, False)
        clock.now += 6
        await table.step(table.begin("b", False, False), False, initial, counting([]))
        clock.now += 6  # "a" idle for 12 s, "b" for 6 s
        await table.step(table.begin("c", True, False), True, initial, counting([]))
        with pytest.raises(errors.FailedPreconditionError, match="sequence 'a' is not open"):
            table.begin("a", False, False)
        return table.counts()

    assert asyncio.run(run()) == {"open": 2, "started": 3, "ended": 0, "expired": 1, "refused": 1}


def test_a_step_in_flight_never_expires_and_a_cancelled_one_releases_its_sequence():
    async def run():
        clock = Clock()
        table = SessionTable(max_sessions=4, idle_timeout=1.0, clock=clock)
        gate = asyncio.Event()

        async def slow(state: int):
            await gate.wait()
            return state, state

        running = asyncio.ensure_future(table.step(table.begin("a", True, False), True, initial, slow))
        await asyncio.sleep(0)
        clock.now += 5
        assert table.open == 1  # in flight: kept
        # A step taken in but cancelled before it ran must not block the sequence.
        cancelled = asyncio.ensure_future(table.step(ticket := table.begin("a", False, False), False, initial, slow))
        cancelled.cancel()
        table.release(ticket)
        gate.set()
        await running
        nxt = await table.step(table.begin("a", False, False), False, initial, counting([]))
        return nxt

    assert asyncio.run(run()) == 1


def test_end_frees_at_once_and_bad_settings_are_refused():
    async def run():
        table = SessionTable()
        await table.step(table.begin(("i", 1), True, True), True, initial, counting([]))
        return table.counts()

    assert asyncio.run(run())["open"] == 0
    with pytest.raises(ValueError):
        SessionTable(max_sessions=0)
    with pytest.raises(ValueError):
        SessionTable(idle_timeout=0)
