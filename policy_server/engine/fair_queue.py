"""The waiting requests of one policy, queued per client so that batches share their rows fairly.

Every request has a `source` (batching.Request.source): the ActionStream it
came on, the peer of a unary call (its connection, which gRPC shares between
a process's channels to one address), the shared-memory slot; None makes a
request a source of its own. Requests of one source are taken first-in
first-out. Between sources the queue is a start-time fair queue by rows
(SFQ, Goyal et al. 1996; deficit round robin by rows in effect):

- each waiting source has a tag, the rows it was served so far on a virtual
  clock; the next request taken is the head of the source with the smallest
  tag (ties: the source that waits longest), and taking it adds its rows to
  the tag (at most one batch's worth, so a request that runs alone costs one
  batch, however many rows it has);
- a source that starts waiting joins at the clock (the tag of the last request
  taken; when nothing waits, the highest tag of the sources served before
  the last one), so being idle earns no credit; one that was just served (a
  split request's next piece, a stream's next request) keeps the tag it
  reached, so it queues behind the others.

So a light actor's request goes into the next batch however much a heavy
client has queued, and backlogged clients get equal rows over time whatever
their request sizes. With one source it is the plain first-come,
first-served queue. Batches still take whole requests: a light row that does
not fit beside a heavy request runs in a smaller batch instead of waiting.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import itertools
from typing import Hashable, Iterator

from policy_server.engine.batching import Request, can_join

# Tags of sources no longer waiting kept at most (only a flood of new clients reaches it).
_MAX_SERVED = 10_000


@dataclasses.dataclass
class _Source:
    tag: int
    order: int  # when it started waiting (breaks ties)
    queue: collections.deque = dataclasses.field(default_factory=collections.deque)


class FairQueue:
    """Waiting requests by source; `take_batch` pops the next batch.

    Attributes:
      rows: the rows of every waiting request (an unbatched request is one row).
    """

    def __init__(self) -> None:
        self._sources: dict[Hashable, _Source] = {}  # the sources with waiting requests
        self._served: dict[Hashable, int] = {}  # the tags of sources that stopped waiting recently
        self._clock = 0
        self._order = itertools.count()
        self._requests = 0
        self.rows = 0

    def __len__(self) -> int:
        return self._requests

    def __iter__(self) -> Iterator[Request]:
        """Every waiting request (by source; each source's in order)."""
        for source in self._sources.values():
            yield from source.queue

    def append(self, request: Request) -> None:
        key = _key(request)
        source = self._sources.get(key)
        if source is None:
            tag = max(self._clock, self._served.pop(key, 0))
            source = self._sources[key] = _Source(tag, next(self._order))
        source.queue.append(request)
        self._requests += 1
        self.rows += request.size

    def peek(self) -> Request:
        """The request that heads the next batch (the queue must not be empty)."""
        return min(self._sources.values(), key=lambda s: (s.tag, s.order)).queue[0]

    def take_batch(self, max_rows: int, batchable: bool) -> list[Request]:
        """Pops the next batch: whole requests, up to `max_rows` rows, taken fairly across sources.

        The first request is `peek()`'s and is always taken (even when larger).
        A request that may not join others (see batching.can_join) forms a
        batch alone; as the head of its source it holds that source's later
        requests back (the others go on filling the batch).
        """
        heap = [(s.tag, s.order, key) for key, s in self._sources.items()]
        heapq.heapify(heap)
        first = self._sources[heap[0][2]].queue[0]
        if not can_join(first, batchable):
            self._pop(heap[0][2], max_rows)
            return [first]
        batch, rows = [], 0
        while heap and rows < max_rows:
            key = heapq.heappop(heap)[2]
            head = self._sources[key].queue[0]
            if not can_join(head, batchable) or (batch and rows + head.size > max_rows):
                continue  # this source waits for a later batch
            self._pop(key, max_rows)
            batch.append(head)
            rows += head.size
            source = self._sources.get(key)
            if source is not None:
                heapq.heappush(heap, (source.tag, source.order, key))
        return batch

    def _pop(self, key: Hashable, max_rows: int) -> Request:
        source = self._sources[key]
        request = source.queue.popleft()
        self._clock = max(self._clock, source.tag)
        source.tag += min(request.size, max_rows)
        self._requests -= 1
        self.rows -= request.size
        if not source.queue:
            del self._sources[key]
            if not self._sources:  # nothing waits: the clock catches up with the tags of the others
                self._clock = max(self._clock, max(self._served.values(), default=0))
                self._served.clear()
            if request.source is not None or request.split is not None:  # it may come back
                self._served[key] = source.tag
            if len(self._served) > 2 * len(self._sources) + 64:  # forget the tags the clock has passed
                self._served = {k: t for k, t in self._served.items() if t > self._clock}
                if len(self._served) > _MAX_SERVED:
                    self._served.clear()
        return request


def _key(request: Request) -> Hashable:
    """The request's source; without one, a request (the pieces of a split one together) is its own."""
    if request.source is not None:
        return request.source
    return ("split", id(request.split)) if request.split is not None else ("request", id(request))
