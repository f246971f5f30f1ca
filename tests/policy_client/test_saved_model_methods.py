"""The SavedModel policy's own methods on RemotePolicy: get_train_step, variables, update_from_checkpoint."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import policy_saver, py_tf_eager_policy
from tf_agents.trajectories import time_step as ts

from policy_client import FailedPreconditionError, InvalidArgumentError, RemoteError, RemotePolicy
from policy_server.server import BackgroundServer
from policy_server.backends.eager import EagerBackend
from policy_server.backends.saved_model import SavedModelBackend
from tests.support.fakes import EchoBackend

OBS = np.random.default_rng(4).uniform(-0.2, 0.2, size=(8, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(SavedModel path, the latest checkpoint (train step 40), an older one (20)), each of other weights."""
    from examples.cartpole import cartpole_q_policy  # pylint: disable=import-outside-toplevel

    policy = cartpole_q_policy(seed=1)
    train_step = tf.Variable(3, dtype=tf.int64)
    root = tmp_path_factory.mktemp("saved")
    saver = policy_saver.PolicySaver(policy, batch_size=None, train_step=train_step)
    saver.save(str(root / "policy"))
    checkpoints = []
    for step in (20, 40):
        for variable in policy.variables():
            variable.assign(variable * 1.5 + 0.1)
        train_step.assign(step)
        checkpoints.append(str(root / f"policy_checkpoint_{step:010d}"))
        saver.save_checkpoint(checkpoints[-1])
    return str(root / "policy"), checkpoints[1], checkpoints[0]


def test_saved_model_methods_mean_what_they_mean_locally(saved):
    path, checkpoint, older = saved
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
        # Versions never go backwards for actors: the SavedModel's own variables (train step 3) are refused
        # where the local policy would read them (and fail its assert_existing_objects_matched).
        with pytest.raises(FailedPreconditionError, match="version 3 is older than the served version 40"):
            remote.update_from_checkpoint(path)
        # An older checkpoint, which the local policy loads, likewise; loaded under a new version it is served.
        local.update_from_checkpoint(older)
        with pytest.raises(FailedPreconditionError, match="version 20 is older than the served version 40"):
            remote.update_from_checkpoint(older)
        assert remote.client.load_checkpoint(older, version=remote.get_train_step() + 1) == 41
        assert [v.numpy().tolist() for v in remote.variables()] == [v.numpy().tolist() for v in local.variables()]
        for o in OBS:
            assert remote.action(ts.restart(o)).action == local.action(ts.restart(o)).action


def test_a_path_without_a_checkpoint_raises_what_the_local_policy_raises(saved):
    path, _, _ = saved
    local = py_tf_eager_policy.SavedModelPyTFEagerPolicy(path, load_specs_from_pbtxt=True)
    missing = os.path.join(os.path.dirname(path), "missing_policy_checkpoint_0000000050")
    with pytest.raises(tf.errors.NotFoundError) as local_info:
        local.update_from_checkpoint(missing)
    with BackgroundServer({"p": lambda: SavedModelBackend(path)}) as server, \
            RemotePolicy(server.address, "p") as remote:
        for bad in (missing, os.path.dirname(path)):
            with pytest.raises(tf.errors.NotFoundError) as info:
                remote.update_from_checkpoint(bad)
            assert isinstance(info.value, InvalidArgumentError) and info.value.fields[0][0] == "path"
            assert info.value.error_code == tf.errors.NOT_FOUND
            assert info.value.message.startswith("Unsuccessful TensorSliceReader constructor: Failed to find")
        assert info.value.message == local_info.value.message.replace(missing, os.path.dirname(path))
        assert remote.get_train_step() == 3, "nothing was loaded"


def test_variables_of_a_saved_model_without_variables_raise_like_the_local_policy(tmp_path):
    """PolicySaver saves no `model_variables` for a policy without variables (RandomTFPolicy)."""
    from tf_agents.policies import random_tf_policy  # pylint: disable=import-outside-toplevel
    from tf_agents.specs import tensor_spec  # pylint: disable=import-outside-toplevel

    policy = random_tf_policy.RandomTFPolicy(ts.time_step_spec(tensor_spec.TensorSpec((2,), tf.float32)),
                                             tensor_spec.BoundedTensorSpec((), tf.int32, 0, 3))
    policy_saver.PolicySaver(policy, batch_size=None).save(str(tmp_path))
    local = py_tf_eager_policy.SavedModelPyTFEagerPolicy(str(tmp_path), load_specs_from_pbtxt=True)
    with pytest.raises(AttributeError) as local_info:
        local.variables()
    with BackgroundServer({"p": lambda: SavedModelBackend(str(tmp_path))}) as server, \
            RemotePolicy(server.address, "p") as remote:
        with pytest.raises(AttributeError) as info:
            remote.variables()
        assert isinstance(info.value, RemoteError) and str(info.value) == str(local_info.value)
        assert remote.get_train_step() == local.get_train_step() == -1  # saved without a train step
        assert 0 <= remote.action(ts.restart(np.zeros(2, np.float32))).action <= 3, "the server goes on serving"


def test_backends_that_cannot_load_checkpoints_say_so(saved, cartpole_tf_policy):
    _, checkpoint, _ = saved
    with BackgroundServer({"p": EagerBackend(cartpole_tf_policy), "echo": EchoBackend()}) as server:
        with RemotePolicy(server.address, "p") as remote:
            with pytest.raises(FailedPreconditionError, match="cannot load PolicySaver checkpoints"):
                remote.update_from_checkpoint(checkpoint)
            values = remote.variables()  # numpy, as PyTFEagerPolicy.variables() returns
            assert len(values) == len(cartpole_tf_policy.variables()) and isinstance(values[0], np.ndarray)
            with pytest.raises(ValueError):
                values[0][...] = 0  # read-only: the served values change by pushes only
