"""Whatever the hosted policy's code raises, the server answers that call and goes on serving everyone.

A `StopIteration` cannot be set on an asyncio future: raised by a policy's
`get_initial_state` (exclusive work run on the scheduler's inference thread), it
once left the call unanswered and the policy's scheduler loop stuck, so every
later call of every client ended DEADLINE_EXCEEDED and `stop()` hung.
BaseExceptions (`KeyboardInterrupt`, `SystemExit`, `GeneratorExit`) ended the
server's event loop. Here each is raised from every place a policy's code
runs (initial state, per-request and batched inference, on the inference thread
and inline on the event loop, the as-local path, loading, a follower's weight
source), then other clients are served and the server stops at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
import types

import numpy as np
import pytest
from tf_agents.policies import py_policy
from tf_agents.specs import array_spec
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

from policy_client import PolicyClient, RemoteError, RemotePolicy
from policy_client.wire import errors
from policy_server.weights import followers as follow
from policy_server.backends.py_policy import PyPolicyBackend
from policy_server.config import BatchingConfig
from policy_server.server import BackgroundServer

RAISERS = {"StopIteration": lambda: StopIteration("no more"), "StopAsyncIteration": lambda: StopAsyncIteration("x"),
           "KeyboardInterrupt": lambda: KeyboardInterrupt("ctrl-c?"), "SystemExit": lambda: SystemExit(3),
           "GeneratorExit": lambda: GeneratorExit("closed"), "MemoryError": lambda: MemoryError("oom")}
# Local type: what `except` catches remotely (None: no RemoteError can also be it; InternalError, by name).
LOCAL_TYPE = {"StopIteration": StopIteration, "StopAsyncIteration": StopAsyncIteration, "MemoryError": MemoryError}
RAISE_ON = 7.0  # the observation (and initial-state batch size) that raises
STOP_WITHIN = 5.0


class Raiser(py_policy.PyPolicy):
    """Raises `error()` for observation RAISE_ON and for get_initial_state(7); else answers 1.

    batch_time_steps: takes (and answers) batched time steps, to be served by a batched PyPolicyBackend.
    """

    def __init__(self, error, batched: bool = False):
        super().__init__(ts.time_step_spec(array_spec.ArraySpec((1,), np.float32)),
                         array_spec.BoundedArraySpec((), np.int32, 0, 3))
        self.error, self.batched = error, batched
        self.raised_on: list[str] = []  # the thread each raise happened on (the path the call took)
        self.batch_rows: list[int] = []  # rows of each call

    def _action(self, time_step, policy_state):
        observation = np.asarray(time_step.observation)
        self.batch_rows.append(len(observation) if self.batched else 1)
        if np.any(observation == RAISE_ON):
            self.raised_on.append(threading.current_thread().name)
            raise self.error()
        action = np.ones(observation.shape[:-1], np.int32) if self.batched else np.int32(1)
        return policy_step.PolicyStep(action, (), ())

    def _get_initial_state(self, batch_size):
        if batch_size == int(RAISE_ON):
            raise self.error()
        return ()


def _step(value: float) -> ts.TimeStep:
    return ts.restart(np.full(1, value, np.float32))


def _assert_answered_as(info: pytest.ExceptionInfo, name: str) -> None:
    assert isinstance(info.value, RemoteError) and info.value.reason == name, type(info.value).__mro__
    local = LOCAL_TYPE.get(name)
    assert isinstance(info.value, local) if local else type(info.value) is errors.InternalError


def _assert_everyone_is_served_then_stops(server: BackgroundServer, remote: RemotePolicy) -> None:
    assert remote.action(_step(0)).action == 1 and remote.get_initial_state(2) == ()
    for transport in ("stream", "unary"):
        with RemotePolicy(server.address, "p", timeout=5, transport=transport) as other:
            assert other.action(_step(0)).action == 1 and other.get_initial_state(2) == ()
    with PolicyClient(server.address, "p", timeout=5) as light:
        assert light.get_initial_state() == ()
    remote.close()
    started = time.monotonic()
    server.stop(grace=1)
    assert time.monotonic() - started < STOP_WITHIN


@pytest.mark.parametrize("inline", [False, True], ids=["worker-thread", "inline"])
@pytest.mark.parametrize("name", sorted(RAISERS))
def test_a_policy_raising_anything_leaves_the_server_serving(name, inline):
    # inline_threshold 0: every batch on the inference thread; 10 s: on the event loop once one was timed.
    batching = BatchingConfig(inline_threshold=10.0 if inline else 0.0)
    raiser = Raiser(RAISERS[name])
    server = BackgroundServer({"p": raiser}, batching=batching)
    try:
        remote = RemotePolicy(server.address, "p", timeout=5)
        assert remote.action(_step(0)).action == 1  # times one batch: the next ones run inline if `inline`
        assert server.server.registry.get("p").scheduler.inline == inline, "the path under test is taken"
        with pytest.raises(Exception) as info:
            remote.get_initial_state(int(RAISE_ON))
        _assert_answered_as(info, name)
        with pytest.raises(Exception) as info:
            remote.action(_step(RAISE_ON))
        _assert_answered_as(info, name)
        # The raise happened where the test says: on the event loop's thread, or on the inference thread.
        assert raiser.raised_on[-1].startswith("inference") != inline, raiser.raised_on
        with pytest.raises(Exception) as info:  # the as-local path: a Python list the specs do not fit
            remote.action(ts.restart([RAISE_ON]))
        _assert_answered_as(info, name)
        _assert_everyone_is_served_then_stops(server, remote)
    finally:
        server.stop(grace=1)


@pytest.mark.parametrize("name", ["StopIteration", "SystemExit"])
def test_a_batch_that_raises_fails_only_its_bad_request(name):
    """Batched inference: the batch is retried request by request; only the raising one fails."""
    backend = PyPolicyBackend(Raiser(RAISERS[name], batched=True), batched=True)
    server = BackgroundServer({"p": backend}, batching=BatchingConfig(max_batch_size=4, max_batch_delay=0.05))
    try:
        remote = RemotePolicy(server.address, "p", timeout=5)
        futures = [remote.action_async(_step(v)) for v in (0, RAISE_ON, 0, 0)]
        outcomes = [f.exception(timeout=10) or f.result().action for f in futures]
        rows = backend.policy.batch_rows if hasattr(backend, "policy") else None
        assert rows is not None and max(rows) > 1, f"the bad request was in a batch of several: {rows}"
        assert rows.count(1) >= 1, "then retried request by request"
        assert [o for i, o in enumerate(outcomes) if i != 1] == [1, 1, 1]
        assert isinstance(outcomes[1], RemoteError) and outcomes[1].reason == name
        _assert_everyone_is_served_then_stops(server, remote)
    finally:
        server.stop(grace=1)


@pytest.mark.parametrize("name", ["StopIteration", "SystemExit"])
def test_a_policy_factory_that_raises_fails_the_start_at_once(name):
    def factory():
        raise RAISERS[name]()

    started = time.monotonic()
    with pytest.raises(RemoteError) as info:
        BackgroundServer({"p": factory})
    assert info.value.reason == name and time.monotonic() - started < STOP_WITHIN


def test_a_follower_whose_source_raises_stop_iteration_goes_on():
    """A weight source read on an executor thread (a Reverb iterator may end): an error, not a hang."""
    class EmptySource(follow.Follower):
        def fetch(self, current):
            raise StopIteration("the source is empty")

    swapper = types.SimpleNamespace(backend=types.SimpleNamespace(version=0), name="p")

    async def poll() -> str:
        with pytest.raises(RemoteError) as info:
            await asyncio.wait_for(EmptySource(swapper, 0.01).poll_once(), STOP_WITHIN)
        return info.value.reason

    assert asyncio.run(poll()) == "StopIteration"
