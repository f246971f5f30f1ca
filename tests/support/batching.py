"""Test oracles of the engine's batching: requests built from nests, and one client's batching rule."""

from __future__ import annotations

import collections
from typing import Any

import tree

from policy_server.engine.batching import Request, can_join


def request_of(time_step: Any, policy_state: Any, rows: int, seed: int | None = None) -> Request:
    """A request holding these nests (their structure is kept for `unflatten`)."""
    structure = (time_step, policy_state)
    return Request(tree.flatten(structure), rows, lambda leaves: tree.unflatten_as(structure, leaves), seed)


def take_batch(pending: collections.deque[Request], max_rows: int, batchable: bool) -> list[Request]:
    """Pops the next batch off `pending`: whole requests, in order, up to `max_rows` rows.

    One client's rule, which the scheduler's FairQueue must follow when every
    request has one source. The first request is always taken (even when
    larger); a request that may not join others (see can_join) forms a batch
    alone.
    """
    first = pending.popleft()
    batch, rows = [first], first.size
    if not can_join(first, batchable):
        return batch
    while pending and can_join(pending[0], batchable) and rows + pending[0].size <= max_rows:
        rows += pending[0].size
        batch.append(pending.popleft())
    return batch
