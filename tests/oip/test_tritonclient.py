"""tritonclient (PyPI, its own venv) against the server's Open Inference Protocol endpoint.

Every action tritonclient gets must equal the local policy's and
RemotePolicy's for the same time step, over whole CartPole episodes: a
feed-forward policy over unary ModelInfer, and a recurrent policy over
Triton's ModelStreamInfer with server-held sessions (sequence_id), two
sequences interleaved on one stream, with a weight push in the middle.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import py_tf_eager_policy

from policy_client import RemotePolicy, VariablePublisher
from policy_server.config import BatchingConfig
from policy_server.backends.eager import EagerBackend
from tests.oip.peer import tensor, time_step_inputs
from tests.support.servers import session_clock

pytestmark = pytest.mark.timeout(240)

BATCHING = BatchingConfig(max_batch_size=16, max_batch_delay=0.002)
MAX_STEPS = 200


def test_a_cartpole_episode_over_model_infer_acts_like_local_and_remote(servers, peers, cartpole_policy,
                                                                       cartpole_env):
    server = servers.serve({"cartpole": EagerBackend(cartpole_policy, version=5)}, batching=BATCHING)
    peer = peers(server.address)
    local = py_tf_eager_policy.PyTFEagerPolicy(cartpole_policy)
    with RemotePolicy(server.address, "cartpole") as remote:
        time_step, actions = cartpole_env.reset(), []
        while not time_step.is_last() and len(actions) < MAX_STEPS:
            answer = peer.infer("cartpole", time_step_inputs(time_step), id=f"step-{len(actions)}")
            assert answer["version"] == "5" and answer["id"] == f"step-{len(actions)}"
            assert answer["datatypes"] == {"action": "INT64"}  # info is empty: no other output
            action = answer["outputs"]["action"][0]
            assert action == int(local.action(time_step).action) == int(remote.action(time_step).action)
            actions.append(action)
            time_step = cartpole_env.step(np.int64(action))
    assert len(actions) > 5 and set(actions) == {0, 1}, actions


def test_recurrent_episodes_through_server_held_sessions_act_like_local_and_remote(servers, peers, rnn_policy):
    from tf_agents.environments import suite_gym  # pylint: disable=import-outside-toplevel

    server = servers.serve({"rnn": EagerBackend(rnn_policy, version=1)}, batching=BATCHING)
    peer = peers(server.address)
    envs = [suite_gym.load("CartPole-v0") for _ in range(2)]
    for seed, env in enumerate(envs):
        env.seed(10 + seed)
    local = py_tf_eager_policy.PyTFEagerPolicy(rnn_policy)
    remote = RemotePolicy(server.address, "rnn")
    try:
        steps = [env.reset() for env in envs]
        local_states = [local.get_initial_state(1) for _ in envs]
        remote_states = [remote.get_initial_state(1) for _ in envs]
        actions: list[list[int]] = [[], []]
        stateless = 0  # steps where a fresh state would have acted otherwise: the state matters
        versions = set()
        for t in range(MAX_STEPS):
            if t == 6:  # the learner pushes (the same values, a new version): the sessions keep their states
                with VariablePublisher(server.address, "rnn") as publisher:
                    publisher.push(rnn_policy.variables(), 9)
            live = [i for i, step in enumerate(steps) if not step.is_last()]
            if not live:
                break
            for i in live:  # the two sequences interleave on one stream
                answer = peer.infer("rnn", time_step_inputs(steps[i]), sequence_id=100 + i, start=t == 0,
                                    end=False, stream=True)
                assert "error" not in answer, answer
                assert set(answer["outputs"]) == {"action"}  # the state stays on the server
                versions.add(answer["version"])
                local_step = local.action(steps[i], local_states[i])
                remote_step = remote.action(steps[i], remote_states[i])
                local_states[i], remote_states[i] = local_step.state, remote_step.state
                action = answer["outputs"]["action"][0]
                assert action == int(local_step.action) == int(remote_step.action), (i, t)
                stateless += action != int(local.action(steps[i], local.get_initial_state(1)).action)
                actions[i].append(action)
                steps[i] = envs[i].step(np.int64(action))
        assert versions == {"1", "9"}
        assert all(len(a) > 6 for a in actions) and {x for a in actions for x in a} == {0, 1}, actions
        assert stateless > 0
        stats = server.server.registry.get("rnn").sessions.counts()
        assert stats["open"] == 2 and stats["started"] == 2
        # The end flag frees a sequence.
        answer = peer.infer("rnn", time_step_inputs(steps[0]), sequence_id=100, end=True, stream=True)
        assert "error" not in answer and server.server.registry.get("rnn").sessions.open == 1
    finally:
        remote.close()
        for env in envs:
            env.close()


def test_sessions_are_bounded_and_expire(servers, peers, rnn_policy, cartpole_env):
    server = servers.serve({"rnn": EagerBackend(rnn_policy)}, batching=BATCHING, max_sessions=2,
                           session_idle_timeout=2.0)
    clock = session_clock(server, "rnn")  # idle time is what the test says, not what the machine's load makes
    peer = peers(server.address)
    first = time_step_inputs(cartpole_env.reset())
    for sequence in (1, 2):
        assert "error" not in peer.infer("rnn", first, sequence_id=sequence, start=True)
    refused = peer.infer("rnn", first, sequence_id=3, start=True)
    assert refused["status"] == "StatusCode.RESOURCE_EXHAUSTED" and "2 sequences are open" in refused["error"]
    assert "--max-sessions" in refused["error"]
    # A step keeps a sequence alive; idle ones are freed after the timeout.
    clock.now += 1.2
    middle = dict(first, step_type=tensor([1], "INT32"))
    assert "error" not in peer.infer("rnn", middle, sequence_id=2)
    clock.now += 1.2  # sequence 1 idle for 2.4 s (> 2), sequence 2 for 1.2 s
    assert "error" not in peer.infer("rnn", first, sequence_id=3, start=True)  # sequence 1 expired
    expired = peer.infer("rnn", middle, sequence_id=1)
    assert expired["status"] == "StatusCode.FAILED_PRECONDITION" and "not open" in expired["error"]
    counts = server.server.registry.get("rnn").sessions.counts()
    assert counts == {"open": 2, "started": 3, "ended": 0, "expired": 1, "refused": 1}


def test_bad_input_names_the_tensor(servers, peers, cartpole_policy, cartpole_env):
    server = servers.serve({"cartpole": EagerBackend(cartpole_policy)}, batching=BATCHING)
    peer = peers(server.address)
    inputs = time_step_inputs(cartpole_env.reset())
    wrong_shape = dict(inputs, observation=tensor(np.zeros((1, 3), np.float32), "FP32"))
    answer = peer.infer("cartpole", wrong_shape)
    assert answer["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "tensor 'observation': expected shape [-1, 4]" in answer["error"] and "got [1, 3]" in answer["error"]
    wrong_type = dict(inputs, reward=tensor(np.zeros(1, np.float64), "FP64"))
    answer = peer.infer("cartpole", wrong_type, stream=True)
    assert answer["error"].startswith("INVALID_ARGUMENT: tensor 'reward': expected datatype FP32, got FP64")
    missing = {k: v for k, v in inputs.items() if k != "discount"}
    assert "tensor 'discount': missing" in peer.infer("cartpole", missing)["error"]
    unknown = peer.infer("nope", inputs)
    assert unknown["status"] == "StatusCode.NOT_FOUND" and "no policy named 'nope'" in unknown["error"]
    # The stream goes on after errors.
    assert "error" not in peer.infer("cartpole", inputs, stream=True)


def test_metadata_and_probes_list_the_tensors(servers, peers, cartpole_policy, rnn_policy):
    server = servers.serve({"cartpole": EagerBackend(cartpole_policy, version=3), "rnn": EagerBackend(rnn_policy)},
                           batching=BATCHING)
    peer = peers(server.address)
    probe = peer.call(op="probe", model="cartpole")
    assert probe["live"] and probe["ready"] and probe["model_ready"]
    assert probe["server"]["name"] == "tfa-policy-grpc" and "sequence" in probe["server"]["extensions"]
    meta = peer.call(op="metadata", model="cartpole")
    assert meta["versions"] == ["3"] and meta["platform"] == "tf_agents_tf_eager"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("step_type", "INT32", ["-1"]), ("reward", "FP32", ["-1"]), ("discount", "FP32", ["-1"]),
        ("observation", "FP32", ["-1", "4"])]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [("action", "INT64", ["-1"])]
    rnn = peer.call(op="metadata", model="rnn")
    state = tf.nest.flatten(rnn_policy.policy_state_spec)
    state_inputs = [t for t in rnn["inputs"] if t["name"].startswith("state")]
    assert [t["shape"] for t in state_inputs] == [["-1", *map(str, s.shape)] for s in state]
    assert [t["name"] for t in rnn["outputs"]] == ["action", *(t["name"] for t in state_inputs)]
