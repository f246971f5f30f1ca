"""Server-held sessions on the native API (ActionRequest.session): the same answers as a local recurrent
policy, bounded, expiring, ordered, and refused clearly when misused."""

from __future__ import annotations

import numpy as np
import pytest
from tf_agents.trajectories import time_step as ts

from policy_client.wire import errors
from policy_client.wire.generated import policy_service_pb2 as service_pb
from tests.oip.conftest import rnn_policy  # noqa: F401  (the recurrent CartPole policy fixture)
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT, session_clock

pytestmark = pytest.mark.timeout(180)


def test_two_interleaved_sessions_act_as_the_local_recurrent_policy(servers, rnn_policy):  # noqa: F811
    from tf_agents.environments import suite_gym  # pylint: disable=import-outside-toplevel
    from tf_agents.policies import py_tf_eager_policy  # pylint: disable=import-outside-toplevel

    local = py_tf_eager_policy.PyTFEagerPolicy(rnn_policy, use_tf_function=True)
    server = servers.serve({"rnn": rnn_policy})
    client = servers.client(server.address, "rnn", timeout=WAIT)
    envs = [suite_gym.load("CartPole-v0") for _ in range(2)]
    for seed, env in enumerate(envs):
        env.seed(20 + seed)
    steps = [env.reset() for env in envs]
    states = [local.get_initial_state(1) for _ in envs]
    fresh = local.get_initial_state(1)
    differs = 0
    for t in range(60):
        for i, env in enumerate(envs):
            if steps[i].is_last():
                continue
            expected = local.action(steps[i], states[i])
            states[i] = expected.state
            remote = client.session_action(steps[i], f"episode-{i}", start=t == 0)
            assert int(remote.policy_step.action) == int(expected.action), (t, i)
            assert remote.policy_step.state == ()
            differs += int(local.action(steps[i], fresh).action) != int(expected.action)
            steps[i] = env.step(expected.action)
    assert differs > 0, "the state never mattered: the test shows nothing"
    assert client.stats()[0]["open_sessions"] == 2
    client.session_action(steps[0], "episode-0", end=True)
    assert client.stats()[0]["open_sessions"] == 1


def test_sessions_are_bounded_expire_and_name_their_fields(servers):
    server = servers.serve({"echo": EchoBackend()}, max_sessions=2, session_idle_timeout=0.5)
    clock = session_clock(server, "echo")  # nothing expires until the test says time passed
    client = servers.client(server.address, "echo", timeout=WAIT)
    step = echo_time_step(np.ones(3, np.float32))  # a FIRST step type starts a session
    client.session_action(step, "a")
    client.session_action(step, "b")
    with pytest.raises(errors.ResourceExhaustedError, match="session.id") as info:
        client.session_action(step, "c")
    assert info.value.fields[0][0] == "session.id"
    mid = ts.transition(np.ones(3, np.float32), np.float32(0))
    with pytest.raises(errors.FailedPreconditionError, match="session.start"):
        client.session_action(mid, "never-started")
    clock.now += 0.6  # both idle past the timeout: freed
    with pytest.raises(errors.FailedPreconditionError, match="idle for more than 0.5 s"):
        client.session_action(mid, "a")
    client.session_action(step, "c")
    assert server.server.registry.get("echo").sessions.counts()["expired"] == 2
    stub = servers.stub(server.address)
    request = client.encode_request(step, {"count": np.int64(0)})
    request.session.id = "d"
    with pytest.raises(Exception) as refused:
        stub.Action(request, timeout=WAIT)
    assert "policy_state" in refused.value.details()
    batched = client.encode_request(echo_time_step(np.ones((2, 3), np.float32), 2), batch_size=2)
    batched.ClearField("policy_state")
    batched.session.id = "e"
    with pytest.raises(Exception) as refused:
        stub.Action(batched, timeout=WAIT)
    assert "batch_size" in refused.value.details()


def test_the_steps_of_a_session_keep_its_state_in_order_and_through_a_weight_update(servers):
    backend = EchoBackend()
    server = servers.serve({"echo": backend})
    client = servers.client(server.address, "echo", timeout=WAIT)
    from policy_client import VariablePublisher  # pylint: disable=import-outside-toplevel

    first = echo_time_step(np.zeros(3, np.float32))
    mid = ts.transition(np.zeros(3, np.float32), np.float32(0))
    client.session_action(first, "s")
    futures = [client.submit(_session_request(client, mid, "s")) for _ in range(5)]
    for future in futures:
        future.result(WAIT)
    with VariablePublisher(server.address, "echo", timeout=WAIT) as publisher:
        publisher.push([np.float32(5)], 3)
    answer = client.session_action(mid, "s")
    assert answer.version == 3
    # EchoBackend's state counts its steps: 1 + 5 + 1 before this one, so the session saw them all.
    hosted = server.server.registry.get("echo")
    session = next(iter(hosted.sessions._sessions.values()))
    assert int(session.state[0]) == 7


def _session_request(client, time_step, session: str) -> service_pb.ActionRequest:
    request = client.encode_request(time_step, ())
    request.ClearField("policy_state")
    request.session.id = session
    return request
