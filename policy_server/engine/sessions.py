"""Server-held recurrent sessions: each open sequence's policy state, bounded in number and idle time.

A client that cannot (or will not) carry a recurrent policy's state names a
sequence instead (the Open Inference Protocol's Triton-style `sequence_id`,
`sequence_start`, `sequence_end`). The server keeps that sequence's state
between its steps:

- a step that starts the sequence (the start flag, or a FIRST step type)
  begins from the policy's initial state; any other step continues from the
  state the sequence's previous step left;
- the steps of one sequence run one after another, in the order they
  arrived, even when a client sends the next before the previous answered;
- each step itself is an ordinary request: its state rides in the batch with
  every other request's rows;
- a weight update does not touch the states (as locally: an actor's state
  lives across a policy update);
- the end flag frees the sequence; so does `idle_timeout` seconds without
  a step (swept lazily: whenever the table is read, at most every
  `sweep_interval`, and before refusing a new sequence);
- at most `max_sessions` sequences are open per policy: one more is refused
  with RESOURCE_EXHAUSTED.

Counts are read from other threads (the Prometheus endpoint), so the table
holds a lock around its dictionary; every method is short and synchronous
but `step`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any, Awaitable, Callable, Hashable

from policy_client.wire import errors

DEFAULT_MAX_SESSIONS = 1024
DEFAULT_IDLE_TIMEOUT = 60.0
FIRST = 0  # TF-Agents' StepType.FIRST: a step of this type starts its session


@dataclasses.dataclass(eq=False)
class Session:
    """One open sequence: its policy state (None until its first step ran) and its step chain."""

    key: Hashable
    last_used: float
    state: Any = None
    inflight: int = 0
    tail: asyncio.Future | None = None
    names: "Names | None" = None


class SessionTable:
    """The open sequences of one policy.

    Args:
      max_sessions: how many sequences may be open at once.
      idle_timeout: seconds without a step after which a sequence is freed.
      clock: the time source (tests pass their own).
    """

    def __init__(self, max_sessions: int = DEFAULT_MAX_SESSIONS, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic):
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        if idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be > 0, got {idle_timeout}")
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.sweep_interval = min(1.0, idle_timeout / 4)
        self.clock = clock  # public: tests swap in a clock they advance
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0
        self.started = self.ended = self.expired = self.refused = 0

    @property
    def open(self) -> int:
        """Sequences open now (expired ones swept first)."""
        with self._lock:
            self._sweep_if_due()
            return len(self._sessions)

    def counts(self) -> dict[str, int]:
        """open, started, ended, expired and refused sequences (since the start)."""
        with self._lock:
            self._sweep_if_due()
            return {"open": len(self._sessions), "started": self.started, "ended": self.ended,
                    "expired": self.expired, "refused": self.refused}

    def begin(self, key: Hashable, start: bool, end: bool, names: "Names | None" = None) -> "_Ticket":
        """Takes a step of sequence `key` in: opens the sequence when `start`, frees it now when `end`.

        Synchronous, so steps of one sequence keep the order they arrived in;
        run each with `step` afterwards (exactly once).

        Raises:
          FailedPreconditionError: the sequence is not open and this step does not start it.
          ResourceExhaustedError: starting it would open more than max_sessions sequences.
        """
        with self._lock:
            now = self.clock()
            self._sweep_if_due(now)
            session = self._sessions.get(key)
            names = names or OIP_NAMES
            if session is None:
                if not start:
                    raise _not_open(key, self.idle_timeout, names=names)
                if len(self._sessions) >= self.max_sessions:
                    self._sweep(now)
                if len(self._sessions) >= self.max_sessions:
                    self.refused += 1
                    raise errors.ResourceExhaustedError.at(
                        names.id, f"{len(self._sessions)} sequences are open, the most this policy keeps "
                                  f"(--max-sessions); end one with {names.end}, or wait until one is idle for "
                                  f"{self.idle_timeout:g} s")
                session = self._sessions[key] = Session(key, now, names=names)
                self.started += 1
            session.inflight += 1
            session.last_used = now
            if end:
                del self._sessions[key]
                self.ended += 1
            session.tail, previous = asyncio.get_running_loop().create_future(), session.tail
            return _Ticket(session, previous, session.tail)

    async def step(self, ticket: "_Ticket", start: bool, initial: Callable[[], Awaitable[Any]],
                   act: Callable[[Any], Awaitable[tuple[Any, Any]]]) -> Any:
        """Runs a step taken in by `begin`, after the sequence's previous step; returns what `act` answered.

        Args:
          ticket: what `begin` returned.
          start: the step starts (or restarts) the sequence: it begins from `initial()`.
          initial: returns the policy's initial state.
          act: takes the state, returns (answer, the state after the step).

        Raises:
          FailedPreconditionError: the sequence's first step failed, so it has no state.
          Exception: whatever `initial` or `act` raised (the state stays as it was).
        """
        session = ticket.session
        try:
            if ticket.previous is not None:
                await ticket.previous
            if start:
                session.state = await initial()
            elif session.state is None:
                raise _not_open(session.key, self.idle_timeout, "its first step failed", session.names)
            answer, session.state = await act(session.state)
            return answer
        finally:
            self.release(ticket)

    def release(self, ticket: "_Ticket") -> None:
        """Ends a step: the sequence's next step may run (`step` calls it; once per ticket counts).

        Call it also when the step may never run (e.g. its task was
        cancelled before it started), or the sequence would wait forever.
        """
        if ticket.done.done():
            return
        with self._lock:
            ticket.session.inflight -= 1
            ticket.session.last_used = self.clock()
        ticket.done.set_result(None)

    def _sweep_if_due(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        if now >= self._next_sweep:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Frees every sequence idle for longer than idle_timeout (none with a step in flight)."""
        self._next_sweep = now + self.sweep_interval
        idle = [key for key, s in self._sessions.items() if not s.inflight and now - s.last_used > self.idle_timeout]
        for key in idle:
            del self._sessions[key]
        self.expired += len(idle)


@dataclasses.dataclass(eq=False)
class _Ticket:
    """One step of a sequence, taken in: its session, the previous step's end, its own end."""

    session: Session
    previous: asyncio.Future | None
    done: asyncio.Future


def _not_open(key: Hashable, idle_timeout: float, why: str = "",
              names: "Names | None" = None) -> errors.FailedPreconditionError:
    names = names or OIP_NAMES
    because = why or f"it never started, ended, or was idle for more than {idle_timeout:g} s"
    return errors.FailedPreconditionError.at(
        names.id, f"sequence {key!r} is not open ({because}); start it with {names.start} or a FIRST step type")


@dataclasses.dataclass(frozen=True)
class Names:
    """How a protocol names a session's id, start and end fields (for error messages)."""

    id: str
    start: str
    end: str


OIP_NAMES = Names("sequence_id", "sequence_start", "sequence_end")
NATIVE_NAMES = Names("session.id", "session.start", "session.end")
