"""Inputs off the spec go to the hosted policy's own code (INPUT_MODE_AS_LOCAL): local and remote alike.

Each case builds two identical policies (same seed): one called locally, one
hosted and called through RemotePolicy, with the same inputs in the same order.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import policy_saver, py_tf_eager_policy, random_py_policy, random_tf_policy
from tf_agents.policies import scripted_py_policy
from tf_agents.specs import array_spec, tensor_spec
from tf_agents.trajectories import time_step as ts

from policy_client import PolicyClient, RemoteError, RemotePolicy
from policy_client.wire import errors
from policy_server.backends.py_policy import PyPolicyBackend
from policy_server.server import BackgroundServer
from policy_server.backends.eager import EagerBackend
from policy_server.backends.saved_model import SavedModelBackend
from tests.policy_client.test_equivalence import assert_nests_close

INT_ACTION = array_spec.BoundedArraySpec((), np.int32, 0, 9)


def _same(local, remote, *args, **kwargs):
    """Calls action on both; asserts the same answer or the same exception type."""
    try:
        expected = local.action(*args, **kwargs)
    except Exception as e:  # pylint: disable=broad-except
        with pytest.raises(type(e)) as info:
            remote.action(*args, **kwargs)
        # The whole message on a stream; cut to fit gRPC's metadata limit on unary calls.
        assert isinstance(info.value, RemoteError) and str(e).startswith(str(info.value).split("... [")[0])
        return None
    got = remote.action(*args, **kwargs)
    assert_nests_close(expected, got)
    return got


def _serve(make):
    """(local policy, server hosting an identical one)."""
    return make(), BackgroundServer({"p": PyPolicyBackend(make())})


def test_random_py_policy_takes_what_it_takes_locally():
    make = lambda: random_py_policy.RandomPyPolicy(  # noqa: E731
        ts.time_step_spec(array_spec.ArraySpec((1,), np.int32)), INT_ACTION, seed=3)
    local, server = _serve(make)
    with server, RemotePolicy(server.address, "p") as remote:
        for time_step in (ts.restart(np.array([1])),  # int64 where the spec says int32
                          ts.restart(np.array([[1], [2], [3]]), batch_size=3),  # batch from the observation alone
                          ts.TimeStep(0, 0.0, 1.0, [5]),  # Python numbers and lists
                          ts.restart(np.array([1], np.int32))):  # conforming
            _same(local, remote, time_step)
        _same(local, remote, ts.restart(np.array([1], np.int32)), seed=5)  # no seed in _action: TypeError


def test_scripted_py_policy_keeps_its_undeclared_state():
    script = [(1, np.int32(4)), (2, np.int32(7)), (1, np.int32(2))]
    make = lambda: scripted_py_policy.ScriptedPyPolicy(  # noqa: E731
        ts.time_step_spec(array_spec.ArraySpec((), np.float32)), INT_ACTION, script)
    local, server = _serve(make)
    with server, RemotePolicy(server.address, "p") as remote:
        local_state, remote_state = local.get_initial_state(), remote.get_initial_state()
        assert remote_state == local_state == [0, 0] and all(type(v) is int for v in remote_state)
        time_step = ts.restart(np.float32(0))
        for _ in range(4):
            expected, got = local.action(time_step, local_state), remote.action(time_step, remote_state)
            assert got.action == expected.action and got.state == expected.state
            local_state, remote_state = expected.state, got.state
        _same(local, remote, time_step, local_state)  # past the end of the script: the same error


def test_a_policy_with_the_default_empty_time_step_spec_is_served():
    make = lambda: random_py_policy.RandomPyPolicy(time_step_spec=None, action_spec=INT_ACTION, seed=1)  # noqa: E731
    local, server = _serve(make)
    with server, RemotePolicy(server.address, "p") as remote:
        assert remote.time_step_spec == local.time_step_spec and remote.action_spec == local.action_spec
        for _ in range(3):
            _same(local, remote, ts.restart(np.array([1.5])))


@pytest.fixture(scope="module")
def eager():
    # Its own policy, not the session's: Keras models made before another test
    # builds layers in a tf.compat.v1.Graph become invalid.
    from examples.cartpole import cartpole_q_policy  # pylint: disable=import-outside-toplevel

    tf_policy = cartpole_q_policy(seed=0)
    with BackgroundServer({"p": EagerBackend(tf_policy)}) as server, RemotePolicy(server.address, "p") as remote:
        yield py_tf_eager_policy.PyTFEagerPolicy(tf_policy), remote


OBS = np.array([0.01, -0.02, 0.03, 0.04], np.float32)


@pytest.mark.parametrize("name, time_step", [
    ("tensor observation", ts.restart(tf.constant(OBS))),
    ("python numbers", ts.TimeStep(0, 0.0, 1.0, OBS.tolist())),
    ("float64", ts.restart(OBS.astype(np.float64))),
    ("int", ts.restart(np.array([1, 0, 0, 1]))),
    ("wrong rank", ts.restart(OBS[None, None])),
    ("dict observation", ts.restart({"x": OBS})),
    ("step_type out of range", ts.restart(OBS)._replace(step_type=np.int32(7))),
], ids=lambda v: v if isinstance(v, str) else "")
def test_tf_policy_inputs_cast_or_fail_as_locally(eager, name, time_step):
    local, remote = eager
    _same(local, remote, time_step)


def test_rows_that_disagree_fail_as_locally(eager):
    local, remote = eager
    time_step = ts.restart(np.zeros((3, 4), np.float32), batch_size=3)._replace(step_type=np.zeros(2, np.int32))
    _same(py_tf_eager_policy.PyTFEagerPolicy(local._policy, batch_time_steps=False), remote, time_step)  # pylint: disable=protected-access


def test_strict_clients_get_the_field_named_instead(eager):
    _, remote = eager
    with PolicyClient(remote.client.address, "p") as strict:
        with pytest.raises(errors.InvalidArgumentError, match=r"time_step.observation: expected shape \(4,\)") \
                as info:
            strict.action(ts.restart(np.zeros(3, np.float32)))
        assert info.value.fields[0][0] == "time_step.observation"


def test_a_saved_policy_without_variables_is_served(tmp_path):
    spec = tensor_spec.TensorSpec((2,), tf.float32)
    policy = random_tf_policy.RandomTFPolicy(ts.time_step_spec(spec), tensor_spec.BoundedTensorSpec((), tf.int32, 0, 2))
    path = str(tmp_path / "random")
    policy_saver.PolicySaver(policy, batch_size=None).save(path)
    local = py_tf_eager_policy.SavedModelPyTFEagerPolicy(path, load_specs_from_pbtxt=True)
    with BackgroundServer({"p": lambda: SavedModelBackend(path)}) as server, \
            RemotePolicy(server.address, "p") as remote:
        assert remote.action_spec == local.action_spec
        step = remote.action(ts.restart(np.zeros(2, np.float32)))
        assert step.action.dtype == np.int32 and 0 <= step.action <= 2
        assert remote.get_initial_state() == local.get_initial_state() == ()
        _same(local, remote, ts.restart(np.zeros(2, np.float32)), seed=1)  # the saved function takes no seed
