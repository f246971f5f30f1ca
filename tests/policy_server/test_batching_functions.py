"""The pure batching functions alone: taking, stacking, padding, splitting and joining rows."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from policy_server.engine import batching
from policy_server.engine.batching import Request
from tests.support.batching import request_of, take_batch


def req(rows: int, start: float = 0.0, seed: int | None = None) -> Request:
    """A request with observation rows start, start+1, ... and a per-row state."""
    shape = (rows, 2) if rows else (2,)
    obs = (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + start)
    count = np.arange(rows, dtype=np.int64) if rows else np.int64(0)
    return request_of({"obs": obs}, {"count": count}, rows, seed)


@pytest.mark.parametrize("sizes, max_rows, expected", [
    ([1, 1, 1], 8, [3]),
    ([0, 0, 0], 2, [2, 1]),          # unbatched requests are one row each
    ([3, 3, 3], 6, [2, 1]),
    ([5, 1], 4, [1, 1]),              # a request larger than max_rows still forms a batch (alone)
    ([2, 4, 1], 4, [1, 1, 1]),
], ids=["all-fit", "unbatched", "whole-requests", "oversized-first", "no-reordering"])
def test_take_batch_takes_whole_requests_in_order(sizes, max_rows, expected):
    pending = collections.deque(req(rows, start=10 * i) for i, rows in enumerate(sizes))
    order = list(pending)
    taken = []
    while pending:
        taken.append(take_batch(pending, max_rows, batchable=True))
    assert [len(b) for b in taken] == expected
    assert [r for b in taken for r in b] == order


def test_seeded_and_unbatchable_requests_go_alone():
    pending = collections.deque([req(0), req(0, seed=3), req(0), req(0)])
    assert [len(take_batch(pending, 8, True)) for _ in range(3)] == [1, 1, 2]
    pending = collections.deque([req(0), req(0)])
    assert len(take_batch(pending, 8, batchable=False)) == 1


def test_stack_and_split_are_inverse():
    requests = [req(0, 0), req(3, 100), req(0, 200), req(1, 300)]
    leaves, rows = batching.stack(requests)
    assert rows == 6
    obs, count = leaves  # dm-tree order: the time step's leaves, then the state's
    assert obs.shape == (6, 2) and count.tolist() == [0, 0, 1, 2, 0, 0]
    np.testing.assert_array_equal(obs[1:4], requests[1].time_step["obs"])
    step = {"action": obs * 2, "state": count + 1}  # a policy over the whole batch
    pieces = [dict(zip(("action", "state"), p)) for p in batching.split([step["action"], step["state"]], requests)]
    assert len(pieces) == 4
    np.testing.assert_array_equal(pieces[0]["action"], requests[0].time_step["obs"] * 2)
    assert pieces[0]["action"].shape == (2,)  # unbatched requests lose the outer dimension
    np.testing.assert_array_equal(pieces[1]["action"], requests[1].time_step["obs"] * 2)
    np.testing.assert_array_equal(pieces[1]["state"], requests[1].policy_state["count"] + 1)
    np.testing.assert_array_equal(pieces[3]["action"], requests[3].time_step["obs"] * 2)


def test_a_lone_batched_request_is_not_copied():
    request = req(4)
    leaves, rows = batching.stack([request])
    assert rows == 4 and leaves is request.leaves


@pytest.mark.parametrize("rows, sizes, expected", [
    (3, (), 3), (3, (2, 4, 8), 4), (4, (2, 4, 8), 4), (1, (2, 4), 2), (8, (8,), 8)])
def test_padded_size(rows, sizes, expected):
    assert batching.padded_size(rows, sizes) == expected


def test_padded_size_refuses_rows_beyond_the_largest_size():
    with pytest.raises(ValueError, match="exceed the largest allowed batch size 8"):
        batching.padded_size(9, (4, 8))


def test_pad_repeats_the_last_row_and_split_drops_the_padding():
    requests = [req(0, 0), req(2, 10)]
    leaves, rows = batching.stack(requests)
    padded = batching.pad(leaves, rows, 8)
    assert all(x.shape[0] == 8 for x in padded)
    np.testing.assert_array_equal(padded[0][3:], np.repeat(leaves[0][-1:], 5, axis=0))
    pieces = batching.split([padded[0]], requests)
    np.testing.assert_array_equal(pieces[1][0], requests[1].time_step["obs"])
    assert batching.pad(leaves, rows, rows) is leaves


def test_split_request_cuts_views_in_order_and_concat_joins_them():
    whole = req(10, 0)
    pieces = batching.split_request(whole, 4)
    assert [p.rows for p in pieces] == [4, 4, 2] and [p.piece for p in pieces] == [0, 1, 2]
    assert all(p.split is pieces[0].split and p.split.request is whole for p in pieces)
    assert pieces[1].leaves[0].base is whole.leaves[0]  # a view, not a copy
    np.testing.assert_array_equal(pieces[1].time_step["obs"], whole.time_step["obs"][4:8])
    obs, count = batching.concat([p.leaves for p in pieces])
    np.testing.assert_array_equal(obs, whole.time_step["obs"])
    np.testing.assert_array_equal(count, whole.policy_state["count"])
