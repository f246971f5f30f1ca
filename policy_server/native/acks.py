"""How far one ActionStream may run ahead of its client: answers computed and not yet read.

A stream whose client acknowledges (ActionRequest.answers_read) is capped at
`cap` answers the client has not read: the server keeps reading it (its
acknowledgements arrive in it) but starts nothing more until the client reads.
A stream that does not acknowledge (clients of the first v1 protos, raw
clients) counts an answer as read once gRPC has taken it: HTTP/2 flow control
then holds it back, at the client's receive window, which gRPC's BDP probing
grows to megabytes.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from policy_client.wire import errors
from policy_server import services


class StreamCredit:
    """The answers one ActionStream owes and may start.

    Attributes:
      cap: answers started and not read (acknowledged, or written on a stream
        without acknowledgements) at most; also the requests read and not yet
        started at most.
      started: requests started (admitted, or answered at once: malformed ones).
      written: answers handed to gRPC.
      acked: answers the client said it read; None while it has said nothing.
    """

    def __init__(self, cap: int):
        self.cap = cap
        self.started = self.written = 0
        self.acked: int | None = None
        self.pending: collections.deque = collections.deque()  # read, not started
        self._changed = asyncio.Event()

    @property
    def acknowledging(self) -> bool:
        return self.acked is not None

    def acknowledge(self, answers_read: int) -> None:
        """The client read `answers_read` answers (never more than were written: a larger count is clamped)."""
        self.acked = max(self.acked or 0, min(answers_read, self.written))
        self._changed.set()

    def wrote(self) -> None:
        self.written += 1
        self._changed.set()

    def startable(self) -> bool:
        """Whether one more request may start: fewer than `cap` answers started and not read."""
        read = self.written if self.acked is None else self.acked
        return self.started - read < self.cap

    def may_read(self) -> bool:
        """Whether the stream may be read now.

        Without acknowledgements, only while a request could start (what is not
        read stays in HTTP/2's window); with them, while fewer than `cap`
        requests wait to start, since the acknowledgements come in the stream.
        """
        return len(self.pending) < self.cap if self.acknowledging else self.startable() and not self.pending

    async def wait_to_read(self) -> None:
        while not self.may_read():
            self._changed.clear()
            await self._changed.wait()

    def take_startable(self) -> list[Any]:
        """The pending requests that may start now, oldest first (counted as started)."""
        ready = []
        while self.pending and self.startable():
            ready.append(self.pending.popleft())
            self.started += 1
        if ready:
            self._changed.set()
        return ready

    def take_all(self) -> list[Any]:
        """Every pending request, whatever the cap (the stream is ending: each still gets its answer)."""
        ready = list(self.pending)
        self.pending.clear()
        self.started += len(ready)
        return ready


def ack_only(request: Any) -> bool:
    """Whether a stream message is an acknowledgement only (answers_read and nothing else): it gets no answer."""
    return len(request.ListFields()) == 1


class Unacknowledged(services.Malformed):
    """A stream request without answers_read on a server that requires acknowledgements: refused uncomputed."""

    def __init__(self, request_id: int):
        super().__init__("this server requires ActionRequest.answers_read on every ActionStream request "
                         "(policy-server --stream-acks=required): set it to the number of answers this stream's "
                         "client has read, or use the unary Action call", request_id)

    def error(self) -> errors.RemoteError:
        return errors.FailedPreconditionError(self.message, reason="StreamAcksRequired", fields=(
            ("answers_read", "required on ActionStream requests by this server"),))
