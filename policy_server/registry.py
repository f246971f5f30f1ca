"""The named policies one server hosts, each with its scheduler, weights pipeline and stats."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from typing import Callable, Iterator

import tree

from policy_client.wire import errors
from policy_client.wire.status import truncate
from policy_client.wire.step_plan import AnswerPlan, RequestPlan
from policy_server.backends.base import Backend
from policy_server.config import BatchingConfig
from policy_server.engine.scheduler import BatchScheduler, StepEncoder
from policy_server.engine.sessions import SessionTable
from policy_server.telemetry.stats import PolicyStats
from policy_server.weights.swapper import WeightSwapper

# Client-supplied names are echoed in errors cut to this length.
_NAME_CHARS = 200
# Longest wait of a call for a policy that is loading, when the call has no deadline.
LOADING_WAIT = 120.0


@dataclasses.dataclass
class HostedPolicy:
    """A named policy with its plans, batch scheduler, weight swapper, statistics and server-held sessions."""

    name: str
    backend: Backend
    scheduler: BatchScheduler
    weights: WeightSwapper
    stats: PolicyStats
    request_plan: RequestPlan
    answer_plan: AnswerPlan
    sessions: SessionTable = dataclasses.field(default_factory=SessionTable)
    shared_memory_slots: int = 0  # actors attached through the shared-memory plane (see shm)
    # Requests of clients forced to shared memory that came over gRPC, by reason (ActionRequest.slot_fallback).
    shm_fallbacks: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    @classmethod
    def create(cls, name: str, backend: Backend, config: BatchingConfig,
               encoder: Callable[[AnswerPlan], StepEncoder]) -> "HostedPolicy":
        """Hosts `backend`; `encoder` builds the scheduler's StepEncoder from the answer plan."""
        specs = backend.specs
        request_plan = RequestPlan(specs.time_step_spec, specs.policy_state_spec)
        answer_plan = AnswerPlan(specs.action_spec, specs.policy_state_spec, specs.info_spec)
        stats = PolicyStats()
        scheduler = BatchScheduler(backend, config, stats, encoder=encoder(answer_plan))
        scheduler.cohorts.name = name
        return cls(name, backend, scheduler, WeightSwapper(name, backend, scheduler), stats,
                   request_plan, answer_plan)

    @property
    def stateful(self) -> bool:
        """Whether the policy carries a recurrent state."""
        return bool(tree.flatten(self.backend.specs.policy_state_spec))


class Registry:
    """The named policies of one server; the first one named is the default.

    A call for a policy that is still loading waits until it serves, within
    the call's deadline (`wait`); health says NOT_SERVING meanwhile.
    """

    def __init__(self) -> None:
        self._policies: dict[str, HostedPolicy] = {}
        self._expected: list[str] = []
        self._ready: dict[str, asyncio.Event] = {}
        self._failure: str | None = None
        self._closed = False
        self._closing = asyncio.Event()

    def expect(self, names) -> None:
        """Names the policies that will be added once loaded (on the server's event loop)."""
        self._expected = list(names)
        self._ready = {name: asyncio.Event() for name in self._expected}

    def add(self, hosted: HostedPolicy) -> None:
        if hosted.name in self._policies:
            raise ValueError(f"policy {hosted.name!r} is already registered")
        self._policies[hosted.name] = hosted
        if hosted.name in self._ready:
            self._ready[hosted.name].set()

    def fail(self, error: BaseException) -> None:
        """Loading failed: calls waiting for a policy that never came get FAILED_PRECONDITION."""
        self._failure = f"{type(error).__name__}: {error}"
        self._wake_all()

    def close(self) -> None:
        """The server is stopping: calls waiting for a policy get UNAVAILABLE."""
        self._closed = True
        self._closing.set()
        self._wake_all()

    def _wake_all(self) -> None:
        for event in self._ready.values():
            event.set()

    def _resolve(self, name: str) -> str:
        return self._expected[0] if not name and self._expected else name

    def get(self, name: str) -> HostedPolicy:
        """Returns the named policy (the default, the first one named, for an empty name).

        Raises:
          PolicyNotFoundError: an unknown name.
          UnavailableError: a policy still loading (retryable), or the server is stopping.
          FailedPreconditionError: loading failed.
        """
        name = self._resolve(name)
        hosted = self._policies.get(name)
        if hosted is not None:
            return hosted
        shown = truncate(repr(name), _NAME_CHARS)
        if name not in self._expected:
            raise errors.PolicyNotFoundError.at("policy", "no such policy", details=f"no policy named {shown}; this "
                                                f"server hosts {sorted(self._expected)}")
        if self._closed:
            raise errors.UnavailableError("the server is shutting down")
        if self._failure is not None:
            raise errors.FailedPreconditionError(f"policy {shown} failed to load: {truncate(self._failure)}")
        raise errors.UnavailableError(f"policy {shown} is still loading")

    async def wait_closed(self) -> None:
        """Returns once `close` was called (the server is stopping)."""
        await self._closing.wait()

    @property
    def ready(self) -> bool:
        """Whether every policy named serves and the server is not stopping."""
        return not self._closed and self._failure is None and all(n in self._policies for n in self._expected)

    def loading(self, name: str) -> bool:
        """Whether `name` is a policy that is still loading."""
        name = self._resolve(name)
        return name not in self._policies and name in self._ready and not self._ready[name].is_set()

    async def wait(self, name: str, timeout: float | None) -> HostedPolicy:
        """Returns the named policy, waiting up to `timeout` seconds (None: LOADING_WAIT) while it loads.

        Raises:
          as `get` (UnavailableError when it is still loading at the end).
        """
        if self.loading(name):
            event = self._ready[self._resolve(name)]
            try:
                await asyncio.wait_for(event.wait(), LOADING_WAIT if timeout is None else max(timeout, 0.0))
            except asyncio.TimeoutError:
                pass
        return self.get(name)

    def __iter__(self) -> Iterator[HostedPolicy]:
        return iter(self._policies.values())

    def __len__(self) -> int:
        return len(self._policies)
