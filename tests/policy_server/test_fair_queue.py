"""The fair queue alone: FIFO per source, rows shared between sources, lone requests, accounting."""

from __future__ import annotations

import collections

import numpy as np

from policy_server.engine import batching
from policy_server.engine.batching import Request
from tests.support.batching import request_of, take_batch
from policy_server.engine.fair_queue import FairQueue


def req(rows: int, source=None, seed: int | None = None, tag: float = 0.0) -> Request:
    """A request of `rows` rows whose observations all equal `tag` (to tell requests apart)."""
    shape = (rows, 2) if rows else (2,)
    request = request_of({"obs": np.full(shape, tag, np.float32)}, (), rows, seed)
    request.source = source
    return request


def queue_of(*requests: Request) -> FairQueue:
    queue = FairQueue()
    for request in requests:
        queue.append(request)
    return queue


def drain(queue: FairQueue, max_rows: int, batchable: bool = True) -> list[list[Request]]:
    batches = []
    while queue:
        batches.append(queue.take_batch(max_rows, batchable))
    return batches


def test_one_source_is_first_come_first_served_like_take_batch():
    sizes = [1, 3, 0, 2, 4, 1, 5, 0]
    for max_rows in (1, 4, 8):
        fair = queue_of(*[req(n, source="a") for n in sizes])
        plain = collections.deque(fair)
        order = list(plain)
        expected = []
        while plain:
            expected.append(take_batch(plain, max_rows, batchable=True))
        assert drain(fair, max_rows) == expected
        assert [r for b in expected for r in b] == order


def test_a_light_source_goes_into_the_next_batch_behind_a_heavy_backlog():
    heavy = [req(1, source="heavy", tag=i) for i in range(20)]
    light = [req(1, source="light", tag=100 + i) for i in range(2)]
    queue = queue_of(*heavy, *light)
    first = queue.take_batch(4, batchable=True)
    assert first == [heavy[0], light[0], heavy[1], light[1]]  # round robin, each source in order
    assert [r for b in drain(queue, 4) for r in b] == heavy[2:]


def test_rows_are_shared_not_requests():
    """A source of 4-row requests and one of 1-row requests get about equal rows per batch."""
    big = [req(4, source="big", tag=i) for i in range(10)]
    small = [req(1, source="small", tag=100 + i) for i in range(40)]
    queue = queue_of(*big, *small)
    for _ in range(5):
        batch = queue.take_batch(8, batchable=True)
        rows = {s: sum(r.size for r in batch if r.source == s) for s in ("big", "small")}
        assert rows == {"big": 4, "small": 4}, rows


def test_a_source_that_was_just_served_queues_behind_the_others():
    """The next piece of a split request (queued after its batch) waits behind another client."""
    queue = FairQueue()
    whole = req(12, source="huge")
    pieces = batching.split_request(whole, 4)
    assert {p.source for p in pieces} == {"huge"}
    queue.append(pieces[0])
    light = req(4, source="light")
    queue.append(light)
    assert queue.take_batch(4, True) == [pieces[0]]
    queue.append(pieces[1])
    assert queue.take_batch(4, True) == [light]
    queue.append(req(4, source="light"))
    assert queue.take_batch(4, True) == [pieces[1]]
    # Alone, the huge request runs piece after piece; a client that comes meanwhile goes next.
    queue = queue_of(pieces[0])
    for before, piece in zip(pieces, pieces[1:]):
        assert queue.take_batch(4, True)[0] is before
        queue.append(piece)
    late = req(4, source="late")
    queue.append(late)
    assert drain(queue, 4) == [[late], [pieces[-1]]]


def test_requests_that_cannot_join_run_alone_and_hold_back_only_their_own_source():
    seeded = req(0, source="a", seed=7)
    after = req(0, source="a")
    others = [req(0, source="b"), req(0, source="c")]
    queue = queue_of(req(0, source="b"), seeded, after, *others)
    batches = drain(queue, 8)
    assert [len(b) for b in batches] == [3, 1, 1]  # b, c and b; the seeded one; then a's next
    assert batches[1] == [seeded] and batches[2] == [after]
    local = req(0, source="x")
    local.local = ((), ())
    queue = queue_of(local, req(0, source="y"))
    assert [len(b) for b in drain(queue, 8)] == [1, 1]
    assert [len(b) for b in drain(queue_of(req(0, "a"), req(0, "b")), 8, batchable=False)] == [1, 1]


def test_a_lone_request_costs_its_source_one_batch_at_most():
    huge = req(1000, source="a", seed=1)
    queue = queue_of(huge, *[req(1, source="b") for _ in range(3)])
    assert queue.take_batch(2, True) == [huge]  # it waited longest
    queue.append(req(1, source="a", tag=5))
    batches = drain(queue, 2)
    assert any(r.source == "a" for r in batches[1]), batches  # after 2 rows of b, not after 1000


def test_requests_without_a_source_are_each_their_own():
    a, b = req(1, tag=1), req(1, tag=2)
    queue = queue_of(a, b, req(1, source="s"))
    assert queue.take_batch(2, True) == [a, b]
    queue = queue_of(a)
    assert drain(queue, 2) == [[a]] and not queue


def test_lengths_rows_and_iteration_count_every_waiting_request():
    queue = queue_of(req(3, "a"), req(0, "b"), req(2, "a"))
    assert (len(queue), queue.rows, len(list(queue))) == (3, 6, 3)
    assert queue.peek().source == "a"
    queue.take_batch(4, True)
    assert (len(queue), queue.rows) == (1, 2)
    queue.take_batch(4, True)
    assert (len(queue), queue.rows, bool(queue)) == (0, 0, False)


def test_sources_that_come_and_go_are_forgotten():
    queue = FairQueue()
    for i in range(10_000):
        queue.append(req(1, source=("peer", i)))
        queue.take_batch(4, True)
    assert len(queue._served) <= 200  # pylint: disable=protected-access
