"""Batching as pure functions: which requests form a batch, and stack / pad / split rows.

Nothing here waits, locks or touches a backend: the scheduler (`scheduler`)
calls these between its queue and the backend. Nests are flattened with
dm-tree, in the order tf.nest uses (sorted dict keys).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import dataclasses
import time
from typing import Any, Sequence

import numpy as np
import tree


@dataclasses.dataclass
class Request:
    """One accepted request: validated numpy values and the future of its answer.

    Attributes:
      time_step, policy_state: the values; with `rows` > 0 every leaf has an
        outer dimension of `rows`, with 0 they have exactly the spec shapes.
      seed: a per-call seed; a seeded request runs alone.
      arrival: when it was accepted (time.monotonic()).
      future: resolves to (answer, version).
      split: for a piece of a request split across batches, the split it
        belongs to (see split_request); the whole request's future answers.
      piece: the piece's index within its split.
    """

    time_step: Any
    policy_state: Any
    rows: int
    seed: int | None = None
    arrival: float = dataclasses.field(default_factory=time.monotonic)
    future: asyncio.Future | None = None
    split: "Split | None" = None
    piece: int = 0

    @property
    def size(self) -> int:
        """Rows it adds to a batch (an unbatched request is one row)."""
        return max(self.rows, 1)


@dataclasses.dataclass
class Split:
    """A request larger than max_batch_size, served as consecutive pieces.

    Attributes:
      request: the whole request (its future is answered once, when every
        piece has run).
      pieces: how many pieces it was cut into.
      steps: the PolicySteps of the pieces that ran, by piece index.
      error: the first failure of a piece, if any.
    """

    request: Request
    pieces: int
    steps: dict[int, Any] = dataclasses.field(default_factory=dict)
    error: BaseException | None = None
    done: int = 0

    @property
    def complete(self) -> bool:
        return self.done == self.pieces


def can_join(request: Request, batchable: bool) -> bool:
    """Whether a request may share a batch with others (seeded ones run alone)."""
    return batchable and request.seed is None


def take_batch(pending: collections.deque[Request], max_rows: int, batchable: bool) -> list[Request]:
    """Pops the next batch off `pending`: whole requests, in order, up to `max_rows` rows.

    The first request is always taken (even when larger); a request that may
    not join others (see can_join) forms a batch alone.
    """
    first = pending.popleft()
    batch, rows = [first], first.size
    if not can_join(first, batchable):
        return batch
    while pending and can_join(pending[0], batchable) and rows + pending[0].size <= max_rows:
        rows += pending[0].size
        batch.append(pending.popleft())
    return batch


def stack(requests: Sequence[Request]) -> tuple[list[np.ndarray], int]:
    """The leaves of every (time_step, policy_state), stacked along a new or the outer axis.

    Returns:
      (leaves in dm-tree / tf.nest order, number of rows).
    """
    flat = [tree.flatten((r.time_step, r.policy_state)) for r in requests]
    rows = sum(r.size for r in requests)
    if len(requests) == 1 and requests[0].rows:
        return flat[0], rows
    leaves = [np.concatenate([f[i] if r.rows else f[i][None] for f, r in zip(flat, requests)])
              for i in range(len(flat[0]))]
    return leaves, rows


def padded_size(rows: int, allowed_sizes: Sequence[int]) -> int:
    """The smallest allowed size that holds `rows` (`rows` itself when none is set).

    Raises:
      ValueError: `rows` exceeds the largest allowed size.
    """
    if not allowed_sizes:
        return rows
    i = bisect.bisect_left(allowed_sizes, rows)
    if i == len(allowed_sizes):
        raise ValueError(f"{rows} rows exceed the largest allowed batch size {allowed_sizes[-1]}")
    return allowed_sizes[i]


def pad(leaves: list[np.ndarray], rows: int, size: int) -> list[np.ndarray]:
    """Leaves grown from `rows` to `size` rows by repeating the last row."""
    if size == rows:
        return leaves
    return [np.concatenate([x, np.repeat(x[-1:], size - rows, axis=0)]) for x in leaves]


def split(step: Any, requests: Sequence[Request]) -> list[Any]:
    """Cuts a batched step (nest of arrays, padding rows last) into one step per request.

    Unbatched requests get their row without the outer dimension.
    """
    out = tree.flatten(step)
    results, start = [], 0
    for r in requests:
        rows_of = [x[start] if not r.rows else x[start:start + r.rows] for x in out]
        results.append(tree.unflatten_as(step, rows_of))
        start += r.size
    return results


def split_request(request: Request, max_rows: int) -> list[Request]:
    """Cuts a batched request into pieces of at most `max_rows` rows (views, no copies).

    The pieces share one Split, reachable as `piece.split`.
    """
    starts = range(0, request.rows, max_rows)
    whole = Split(request, len(starts))
    pieces = []
    for index, start in enumerate(starts):
        stop = min(start + max_rows, request.rows)
        cut = lambda nest, a=start, b=stop: tree.map_structure(lambda x: x[a:b], nest)  # noqa: E731
        pieces.append(Request(cut(request.time_step), cut(request.policy_state), stop - start,
                              arrival=request.arrival, split=whole, piece=index))
    return pieces


def concat(steps: Sequence[Any]) -> Any:
    """The pieces' steps joined back along the outer axis, in order."""
    if len(steps) == 1:
        return steps[0]
    return tree.map_structure(lambda *xs: np.concatenate(xs), *steps)
