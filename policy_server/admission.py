"""The one seam between the front doors and the engine: every action request is admitted here.

A front door (the native gRPC stream and unary calls, the shared-memory
plane, the Open Inference Protocol) reads its wire message into a `Call`
and hands it to `Admission.submit`, which does for every door alike:

1. finds the named policy, waiting (within the call's patience) while it loads;
2. waits for the call's `min_version` if the policy serves an older one;
3. refuses the call at once when the policy's queue is full (RESOURCE_EXHAUSTED
   with a retry hint, before its inputs are read), and a seed the policy
   cannot take;
4. has the door read the call's inputs against the policy (`Call.read`: the
   spec check, naming the field that does not fit);
5. queues the request on the policy's scheduler, or runs it as the next step
   of a server-held session (`engine.sessions`), with the session's state
   riding in the batch like any client-held state.

`submit` never raises: it returns a future of (answer, version), and a
refusal is that future's exception, which each door answers the way its
protocol does. The answer is what the scheduler made of the request: the
PolicyStep's leaves for a `raw` request, else the encoding of the policy's
StepEncoder; for a session step, the PolicyStep's leaves, unbatched.
Everything up to queueing (or taking a session step in) runs synchronously
in `submit`, so the calls of one source keep their order.

A new front door is one module: a `Call` subclass, and what it does with
the answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Hashable

import numpy as np
import tree

from policy_client.wire import errors
from policy_server.engine import sessions
from policy_server.engine.batching import Request
from policy_server.registry import LOADING_WAIT, HostedPolicy, Registry

# How long a call without a patience of its own (a stream's) waits for its min_version.
VERSION_WAIT = 10.0
_VERSION_POLL = 0.02  # waiting for a version is rare: polling it is simplest


@dataclasses.dataclass
class SessionStep:
    """One step of a server-held session, as a door read it.

    Attributes:
      key: the session's key in the policy's SessionTable (each door keeps
        its own namespace of keys).
      start: the call asked to start the session (a FIRST step type starts
        it too).
      end: the session ends after this step.
      names: the door's names of the session parameters, for errors.
      time_step: the time step's leaves (dm-tree order), unbatched.
      step_type: the time step's step type.
    """

    key: Hashable
    start: bool
    end: bool
    names: sessions.Names
    time_step: list[np.ndarray]
    step_type: int


class Call:
    """One action request as a front door hands it to admission; each door subclasses it.

    Attributes:
      policy: the policy's name ("" for the default policy).
      seed: a per-call seed, or None.
      min_version: the oldest policy version that may answer (0: any).
      source: who sent it (a stream, a unary caller's peer, a slot): batches
        share their rows fairly between sources (engine.fair_queue).
      patience: seconds the call may wait for a loading policy, or for its
        min_version (None: LOADING_WAIT and VERSION_WAIT).
      as_local: the call asks for the local policy's own semantics: a seed
        the policy cannot take goes to the policy itself, which raises as it
        would locally, instead of being refused here.
    """

    policy: str = ""
    seed: int | None = None
    min_version: int = 0
    source: Hashable | None = None
    patience: float | None = None
    as_local: bool = False

    def read(self, hosted: HostedPolicy) -> Request | SessionStep:
        """The call's inputs, read and checked against the hosted policy.

        Raises:
          RemoteError: naming the field that does not fit (mostly INVALID_ARGUMENT).
        """
        raise NotImplementedError


def refused(error: BaseException) -> asyncio.Future:
    """A future that holds `error` (a door's answer to what it could not even read)."""
    future = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


class Admission:
    """Admits the calls of every front door into the policies of a registry.

    Args:
      registry: the server's policies.
    """

    def __init__(self, registry: Registry):
        self.registry = registry
        self._initial: dict[str, tuple[int, list[np.ndarray]]] = {}  # policy -> (version, unbatched state)

    def submit(self, call: Call) -> asyncio.Future:
        """Admits a call; the future resolves to (answer, version), or to the call's error. Never raises."""
        try:
            if self.registry.loading(call.policy):
                return asyncio.ensure_future(self._when_loaded(call))
            hosted = self.registry.get(call.policy)
            if call.min_version and call.min_version > hosted.backend.version:
                return asyncio.ensure_future(self._when_version(hosted, call))
            return self._admit(hosted, call)
        except Exception as e:  # pylint: disable=broad-except
            return refused(e)

    def _admit(self, hosted: HostedPolicy, call: Call) -> asyncio.Future:
        try:
            backend = hosted.backend
            if hosted.scheduler.full:  # refused before its inputs are read: a full queue answers at once
                raise hosted.scheduler.queue_full_error(hosted.name)
            if call.seed is not None and not backend.supports_seed and not call.as_local:
                raise errors.InvalidArgumentError.at(
                    "seed", f"the {backend.kind} policy {hosted.name!r} cannot take a per-call seed")
            admitted = call.read(hosted)
        except errors.RemoteError:
            hosted.stats.record_error()
            raise
        if isinstance(admitted, SessionStep):
            return self._session_step(hosted, admitted, call)
        admitted.source = call.source
        return hosted.scheduler.submit(admitted)

    async def _when_loaded(self, call: Call) -> Any:
        await self.registry.wait(call.policy, LOADING_WAIT if call.patience is None else call.patience)
        return await self.submit(call)

    async def _when_version(self, hosted: HostedPolicy, call: Call) -> Any:
        """Waits up to the call's patience for the policy to reach its min_version, then admits it."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + (VERSION_WAIT if call.patience is None else call.patience)
        while hosted.backend.version < call.min_version:
            if loop.time() >= give_up:
                raise errors.FailedPreconditionError.at(
                    "min_version", f"the served version {hosted.backend.version} of {hosted.name!r} is older "
                                   f"than the {call.min_version} asked for")
            await asyncio.sleep(_VERSION_POLL)
        return await self.submit(call)

    # ------------------------------------------------------------ server-held sessions

    def _session_step(self, hosted: HostedPolicy, step: SessionStep, call: Call) -> asyncio.Future:
        """Takes the step in now (its place in the session's order), and runs it when its turn comes."""
        start = step.start or step.step_type == sessions.FIRST
        ticket = hosted.sessions.begin(step.key, start, step.end, step.names)
        task = asyncio.ensure_future(self._run_step(hosted, step, ticket, start, call))
        task.add_done_callback(lambda _: hosted.sessions.release(ticket))  # also when cancelled before it ran
        return task

    async def _run_step(self, hosted: HostedPolicy, step: SessionStep, ticket: Any, start: bool,
                        call: Call) -> tuple[list[np.ndarray], int]:
        first, last = hosted.answer_plan.cut_points  # where the state's leaves are among the PolicyStep's

        async def act(state: list[np.ndarray]) -> tuple[Any, list[np.ndarray]]:
            row = Request(step.time_step + state, 0, hosted.request_plan.unflatten, call.seed, raw=True,
                          source=call.source)
            answer, version = await hosted.scheduler.submit(row)
            return (answer, version), [np.array(x) for x in answer[first:last]]

        return await hosted.sessions.step(ticket, start, lambda: self._initial_state(hosted), act)

    async def _initial_state(self, hosted: HostedPolicy) -> list[np.ndarray]:
        """The policy's unbatched initial state (its leaves), built once per version."""
        cached = self._initial.get(hosted.name)
        version = hosted.backend.version
        if cached is None or cached[0] != version:
            state = await hosted.scheduler.run_exclusive(lambda: hosted.backend.initial_state(None))
            cached = self._initial[hosted.name] = (version, [np.array(x) for x in tree.flatten(state)])
        return [x.copy() for x in cached[1]]
