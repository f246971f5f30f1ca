"""A graph-mode PyTFPolicy restored from a checkpoint, local vs served by GraphBackend: bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.drivers import py_driver
from tf_agents.environments import suite_gym
from tf_agents.networks import q_network
from tf_agents.policies import greedy_policy, py_tf_policy, q_policy
from tf_agents.utils import common

from policy_client import RemotePolicy
from examples.cartpole import ACTION_SPEC, OBSERVATION_SPEC, cartpole_time_step_spec
from policy_server.server import BackgroundServer
from policy_server.backends.graph import GraphBackend
from tests.support.equivalence_cases import sample_time_step
from tests.policy_client.test_equivalence import SPEC_PROPERTIES
from tests.support.same import assert_same


def build_in_graph(seed: int) -> tuple[tf.Graph, py_tf_policy.PyTFPolicy]:
    """A CartPole QPolicy built in its own graph, wrapped in PyTFPolicy."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(seed)
        network = q_network.QNetwork(OBSERVATION_SPEC, ACTION_SPEC, fc_layer_params=(64, 64))
        policy = greedy_policy.GreedyPolicy(
            q_policy.QPolicy(cartpole_time_step_spec(), ACTION_SPEC, q_network=network))
        py_policy = py_tf_policy.PyTFPolicy(policy)
        py_policy.session = tf.compat.v1.Session(graph=graph)
    return graph, py_policy


def restored_local(policy_dir: str, batch_size: int | None) -> py_tf_policy.PyTFPolicy:
    """A local PyTFPolicy, restored as the reference API does: initialize, restore."""
    graph, py_policy = build_in_graph(seed=99)
    with graph.as_default():
        py_policy.initialize(batch_size)
        py_policy.restore(policy_dir)
    return py_policy


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("py_tf_policy"))
    graph, py_policy = build_in_graph(seed=1)
    with graph.as_default():
        py_policy.initialize(None)
        # What PyTFPolicy.save does, at train step 42.
        global_step = tf.compat.v1.train.get_or_create_global_step()
        checkpointer = common.Checkpointer(ckpt_dir=path, policy=py_policy._tf_policy, global_step=global_step)
        checkpointer.initialize_or_restore(py_policy.session)
        py_policy.session.run(global_step.assign(42))
        with py_policy.session.as_default():
            checkpointer.save(global_step)
    return path


@pytest.fixture(scope="module")
def remote(policy_dir):
    graph, served = build_in_graph(seed=7)  # different initial weights: the checkpoint must win
    with BackgroundServer({"graph": GraphBackend(served, graph, policy_dir=policy_dir)}) as server:
        with RemotePolicy(server.address, "graph") as policy:
            yield policy


def test_specs_and_version(remote, policy_dir):
    local = restored_local(policy_dir, None)
    for prop in SPEC_PROPERTIES:
        assert getattr(remote, prop) == getattr(local, prop), prop
    assert remote.last_version == 42
    assert remote.client.list_policies()[0].backend == "py_tf_policy"


@pytest.mark.parametrize("batch_size", [None, 6], ids=["unbatched", "batched"])
def test_actions_equal(remote, policy_dir, batch_size):
    local = restored_local(policy_dir, batch_size)
    for seed in range(3):
        time_step = sample_time_step(local.time_step_spec, batch_size, seed)
        assert_same(local.action(time_step), remote.action(time_step), {"tf_batched_step"} if batch_size else ())


def test_seed_is_refused_like_the_local_policy(remote, policy_dir):
    local = restored_local(policy_dir, None)
    time_step = sample_time_step(local.time_step_spec, None, 0)
    with pytest.raises(ValueError):
        local.action(time_step, seed=1)
    with pytest.raises(ValueError, match="seed"):
        remote.action(time_step, seed=1)


def test_driver_trajectories_equal(remote, policy_dir):
    runs = []
    for policy in (restored_local(policy_dir, None), remote):
        env, trajectories = suite_gym.load("CartPole-v0"), []
        env.seed(3)
        py_driver.PyDriver(env, policy, observers=[trajectories.append], max_episodes=3).run(env.reset())
        runs.append(trajectories)
    assert len(runs[0]) == len(runs[1]) > 3
    for expected, got in zip(*runs):
        assert_same(expected, got)
    assert np.sum([t.is_last() for t in runs[1]]) == 3
