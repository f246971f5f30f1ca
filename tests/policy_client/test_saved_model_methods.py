"""The SavedModel policy's own methods on RemotePolicy: get_train_step, variables, update_from_checkpoint."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import policy_saver, py_tf_eager_policy
from tf_agents.trajectories import time_step as ts

from policy_client import FailedPreconditionError, InvalidArgumentError, RemotePolicy
from policy_server.server import BackgroundServer
from policy_server.tf_backends import EagerBackend, SavedModelBackend
from tests.support.fakes import EchoBackend

OBS = np.random.default_rng(4).uniform(-0.2, 0.2, size=(8, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(SavedModel path, a later checkpoint path of other weights, the TF policy)."""
    from examples.cartpole import cartpole_q_policy  # pylint: disable=import-outside-toplevel

    policy = cartpole_q_policy(seed=1)
    train_step = tf.Variable(3, dtype=tf.int64)
    root = tmp_path_factory.mktemp("saved")
    saver = policy_saver.PolicySaver(policy, batch_size=None, train_step=train_step)
    saver.save(str(root / "policy"))
    for variable in policy.variables():
        variable.assign(variable * 1.5 + 0.1)
    train_step.assign(40)
    checkpoint = str(root / "policy_checkpoint_0000000040")
    saver.save_checkpoint(checkpoint)
    return str(root / "policy"), checkpoint


def test_saved_model_methods_mean_what_they_mean_locally(saved):
    path, checkpoint = saved
    local = py_tf_eager_policy.SavedModelPyTFEagerPolicy(path, load_specs_from_pbtxt=True)
    with BackgroundServer({"p": lambda: SavedModelBackend(path)}) as server, \
            RemotePolicy(server.address, "p") as remote:
        assert remote.get_train_step() == local.get_train_step() == 3
        assert [v.numpy().tolist() for v in remote.variables()] == [v.numpy().tolist() for v in local.variables()]
        assert all(isinstance(v, tf.Tensor) for v in remote.variables())  # read-only, unlike tf.Variables
        assert remote.get_train_step_from_last_restored_checkpoint_path() is None

        local.update_from_checkpoint(checkpoint)
        remote.update_from_checkpoint(checkpoint)
        assert remote.get_train_step() == local.get_train_step() == 40 == remote.last_version
        assert remote.get_train_step_from_last_restored_checkpoint_path() == 40
        assert [v.numpy().tolist() for v in remote.variables()] == [v.numpy().tolist() for v in local.variables()]
        for o in OBS:
            assert remote.action(ts.restart(o)).action == local.action(ts.restart(o)).action

        with pytest.raises(FailedPreconditionError, match="older"):
            remote.client.load_checkpoint(checkpoint, version=1)
        with pytest.raises(InvalidArgumentError, match="not a PolicySaver checkpoint") as info:
            remote.update_from_checkpoint(os.path.join(checkpoint, "missing_policy_checkpoint_0000000050"))
        assert info.value.fields[0][0] == "path"


def test_backends_that_cannot_load_checkpoints_say_so(saved, cartpole_tf_policy):
    _, checkpoint = saved
    with BackgroundServer({"p": EagerBackend(cartpole_tf_policy), "echo": EchoBackend()}) as server:
        with RemotePolicy(server.address, "p") as remote:
            with pytest.raises(FailedPreconditionError, match="cannot load PolicySaver checkpoints"):
                remote.update_from_checkpoint(checkpoint)
            values = remote.variables()  # numpy, as PyTFEagerPolicy.variables() returns
            assert len(values) == len(cartpole_tf_policy.variables()) and isinstance(values[0], np.ndarray)
            with pytest.raises(ValueError):
                values[0][...] = 0  # read-only: the served values change by pushes only
