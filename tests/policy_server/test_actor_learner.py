"""Actor-learner: pushes, followers, versions, consistency, and a short real training run."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.agents.dqn import dqn_agent
from tf_agents.policies import py_tf_eager_policy
from tf_agents.train import triggers
from tf_agents.train.utils import train_utils
from tf_agents.trajectories import time_step as ts

from policy_client import (FailedPreconditionError, InvalidArgumentError, PolicyClient, RemotePolicy)
from policy_client import VariablePublisher
from examples import actor_learner
from examples import cartpole as demo_policy
from policy_server.config import PolicyConfig
from policy_server.server import BackgroundServer
from policy_server.backends.eager import EagerBackend
from policy_server.backends.saved_model import SavedModelBackend
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.reverb_tables import variable_container

OBSERVATIONS = np.random.default_rng(0).uniform(-0.3, 0.3, size=(20, 4)).astype(np.float32)


def actions_of(policy) -> list[int]:
    return [int(policy.action(ts.restart(o)).action) for o in OBSERVATIONS]


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def served():
    """A server whose 'cartpole' policy starts from seed 0, and a RemotePolicy on it."""
    with BackgroundServer({"cartpole": EagerBackend(demo_policy.cartpole_q_policy(seed=0))}) as server:
        with RemotePolicy(server.address, "cartpole") as remote:
            yield server, remote


def test_push_changes_actions_and_version(served):
    server, remote = served
    trained = demo_policy.cartpole_q_policy(seed=3)
    expected = actions_of(py_tf_eager_policy.PyTFEagerPolicy(trained))
    assert actions_of(remote) != expected
    with VariablePublisher(server.address, "cartpole", chunk_bytes=1024) as publisher:  # many slices
        assert publisher.push(trained.variables(), 17) == 17
    assert actions_of(remote) == expected
    assert remote.last_version == 17
    assert remote.client.get_specs()[1] == 17
    assert remote.client.stats()[0]["version"] == 17
    assert remote.client.list_policies()[0].version == 17


def test_bad_pushes_are_rejected_and_serving_goes_on(served):
    server, remote = served
    before = actions_of(remote)
    variables = demo_policy.cartpole_q_policy(seed=4).variables()
    with VariablePublisher(server.address, "cartpole") as publisher:
        with pytest.raises(InvalidArgumentError, match="num_variables: the policy has 6 variables"):
            publisher.push(variables[:-1], 5)
        wrong_shape = [v.numpy() for v in variables]
        wrong_shape[2] = np.zeros((3, 3), np.float32)
        with pytest.raises(InvalidArgumentError, match=r"variable 2 .*expected shape \(64, 64\)"):
            publisher.push(wrong_shape, 5)
        wrong_dtype = [v.numpy().astype(np.float64) for v in variables]
        with pytest.raises(InvalidArgumentError, match="dtype float32"):
            publisher.push(wrong_dtype, 5)
        agent = dqn_agent.DqnAgent(demo_policy.cartpole_time_step_spec(), demo_policy.ACTION_SPEC,
                                   q_network=demo_policy.cartpole_q_network(), optimizer=tf.keras.optimizers.Adam())
        target = agent._target_q_network.variables  # pylint: disable=protected-access
        with pytest.raises(InvalidArgumentError, match="expected the variable named"):
            publisher.push(target, 5)  # the target network's variables are not the policy's
        with pytest.raises(InvalidArgumentError, match=f"version {2**63 - 1}: at most {2**40} above"):
            publisher.push(variables, 2**63 - 1)  # a bogus version would lock the real learner out
        publisher.push(variables, 9)
        with pytest.raises(FailedPreconditionError, match="older than the served version 9"):
            publisher.push(variables, 8)
    after = actions_of(remote)
    assert after != before  # the good push took effect
    assert remote.last_version == 9
    assert after == actions_of(py_tf_eager_policy.PyTFEagerPolicy(demo_policy.cartpole_q_policy(seed=4)))


def test_follows_a_learner_checkpoint_directory(tmp_path):
    train_step = train_utils.create_train_step()
    agent = dqn_agent.DqnAgent(demo_policy.cartpole_time_step_spec(), demo_policy.ACTION_SPEC,
                               q_network=demo_policy.cartpole_q_network(), optimizer=tf.keras.optimizers.Adam(),
                               train_step_counter=train_step)
    policies_dir = str(tmp_path / "policies")
    # What tf_agents.train.Learner's PolicySavedModelTrigger writes.
    trigger = triggers.PolicySavedModelTrigger(policies_dir, agent, train_step, interval=1)
    collect_dir = os.path.join(policies_dir, "greedy_policy")
    greedy = PolicyConfig("greedy", lambda: SavedModelBackend(collect_dir),
                          follow_checkpoints=os.path.join(policies_dir, "checkpoints"))
    with BackgroundServer(policies=[greedy], follow_interval=0.1) as server, RemotePolicy(server.address, "greedy") as remote:
        assert actions_of(remote) == actions_of(py_tf_eager_policy.PyTFEagerPolicy(agent.policy))
        other = demo_policy.cartpole_q_policy(seed=5)
        for variable, value in zip(agent.policy.variables(), other.variables()):
            variable.assign(value)
        train_step.assign(250)
        trigger(250)  # writes policies/checkpoints/policy_checkpoint_0000000250
        assert os.path.isdir(os.path.join(policies_dir, "checkpoints", "policy_checkpoint_0000000250"))
        wait_for(lambda: remote.client.get_specs()[1] == 250)
        assert actions_of(remote) == actions_of(py_tf_eager_policy.PyTFEagerPolicy(other))
        assert remote.last_version == 250


def test_follows_a_reverb_variable_container():
    import reverb  # pylint: disable=import-outside-toplevel
    from tf_agents.experimental.distributed import reverb_variable_container as rvc  # pylint: disable=import-outside-toplevel

    trained = demo_policy.cartpole_q_policy(seed=6)
    replay, values, train_step = variable_container(trained)
    try:
        cartpole = PolicyConfig("cartpole", EagerBackend(demo_policy.cartpole_q_policy(seed=0)),
                                follow_reverb=f"127.0.0.1:{replay.port}")
        with BackgroundServer(policies=[cartpole], follow_interval=0.1) as server, RemotePolicy(server.address, "cartpole") as remote:
            train_step.assign(33)
            # What ReverbVariableContainer.push does, from the python client.
            reverb.Client(f"127.0.0.1:{replay.port}").insert(
                [np.asarray(v) for v in tf.nest.flatten(values)], {rvc.DEFAULT_TABLE: 1.0})
            wait_for(lambda: remote.client.get_specs()[1] == 33)
            assert actions_of(remote) == actions_of(py_tf_eager_policy.PyTFEagerPolicy(trained))
    finally:
        replay.stop()


def test_no_batch_mixes_versions_and_versions_never_go_back():
    """Many actors act while many versions are pushed; the version is visible in every action."""
    backend = EchoBackend(stateful=False, delay=0.002)
    with BackgroundServer({"echo": backend}) as server:
        stop = threading.Event()
        failures: list[str] = []
        answers = [0]

        def act(i: int) -> None:
            rng = np.random.default_rng(i)
            last = -1
            with PolicyClient(server.address, "echo", transport="stream" if i % 2 else "unary") as client:
                while not stop.is_set():
                    rows = int(rng.integers(0, 4))
                    obs = rng.uniform(-1, 1, size=(rows, 3) if rows else (3,)).astype(np.float32)
                    result = client.action(echo_time_step(obs, rows or None), batch_size=rows)
                    biases = np.unique(np.round(result.policy_step.action - 2 * obs, 3))
                    info = np.unique(result.policy_step.info["version"])
                    if biases.tolist() != [result.version] or info.tolist() != [result.version]:
                        failures.append(f"answer mixes versions: {biases}, info {info}, version {result.version}")
                    if result.version < last:
                        failures.append(f"version went back from {last} to {result.version}")
                    last = result.version
                    answers[0] += 1

        threads = [threading.Thread(target=act, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        with VariablePublisher(server.address, "echo") as publisher:
            for version in range(1, 61):
                publisher.push([np.float32(version)], version)
                time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures, failures[:5]
    assert answers[0] > 100
    assert max(backend.batch_sizes) > 1  # batches did form while versions changed


def test_short_actor_learner_run(tmp_path):
    """A real run that ends at 300 train steps (6 pushes), not at a time budget: the actor acts with several
    pushed versions, never going back, and the replay table fills. max_seconds is only the safety net."""
    config = actor_learner.Config(collect_actors=1, max_seconds=240, max_train_steps=300, target_return=1e9,
                                  initial_collect_steps=200, push_interval=50, train_iterations_per_call=50,
                                  eval_episodes=2, report_interval=5)
    lines: list[str] = []
    result = actor_learner.run(config, root_dir=str(tmp_path), log=lines.append)
    assert result["server_exit_code"] == 0
    assert result["train_steps"] >= 300, ("stopped by the safety net, not by its train steps", lines)
    assert result["version"] > 0, lines
    seen = [v for v in result["actor_versions_seen"] if v > 0]
    assert len(seen) >= 2, f"the actor acted with pushed versions {seen}: the scenario needs at least two"
    assert result["actor_versions_monotonic"]
    assert result["replay_items"] >= config.initial_collect_steps
    assert result["env_steps"] >= config.initial_collect_steps
    assert any(line.startswith("RESULT: average return") for line in lines)
