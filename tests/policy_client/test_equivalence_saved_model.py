"""The exact matrix on the SavedModel backend: every TF case of the matrix, saved with PolicySaver and served from
its directory (what `policy-server --policy NAME=DIR` does), against SavedModelPyTFEagerPolicy on the same
directory.

Deterministic cases are compared bit for bit over streams of time steps, unbatched and batched (leaf types
with the differences docs/exactly-like-local.md lists). Stochastic cases cannot be: a SavedModel's action
takes no seed, locally or remotely, so their draws are compared by what a seed does (the same TypeError) and
by the sampled actions lying in the action spec. Cases PolicySaver cannot save are listed with the error it
raises locally, and a test keeps that list true.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.policies import policy_saver, py_tf_eager_policy

from policy_client import RemotePolicy
from policy_server.backends.saved_model import SavedModelBackend
from policy_server.server import BackgroundServer
from tests.support import equivalence_matrix_cases as cases
from tests.support.same import assert_same, raised

TF_CASES = [c for c in cases.CASES if not c.py]
# Cases PolicySaver refuses locally (case -> text of the error it raises); none here so far.
UNSAVEABLE: dict[str, str] = {}
STEPS, BATCH = 6, 3


def _saved(case, tmp_path) -> str:
    policy = case.build()
    path = str(tmp_path / case.name)
    policy_saver.PolicySaver(policy, batch_size=None).save(path)
    return path


def _states(local, remote, batch_size):
    if not remote.policy_state_spec:
        return (), ()
    return local.get_initial_state(batch_size or 1), remote.get_initial_state(batch_size or 1)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in TF_CASES])
def test_the_saved_model_backend_answers_as_the_local_saved_model_policy(case, tmp_path):
    if case.name in UNSAVEABLE:
        with pytest.raises(Exception, match=UNSAVEABLE[case.name]):
            _saved(case, tmp_path)
        return
    path = _saved(case, tmp_path)
    # As RemotePolicy picks by the step type's rank: unbatched steps get a batch dimension, batched ones not.
    locals_ = {batched: py_tf_eager_policy.SavedModelPyTFEagerPolicy(path, load_specs_from_pbtxt=True,
                                                                     batch_time_steps=not batched)
               for batched in (False, True)}
    local = locals_[False]
    with BackgroundServer({case.name: SavedModelBackend(path)}) as server, \
            RemotePolicy(server.address, case.name, timeout=60) as remote:
        for name in ("time_step_spec", "action_spec", "policy_state_spec", "info_spec"):
            assert getattr(remote, name) == getattr(local, name), name
        for batch_size in (None, BATCH):
            local = locals_[batch_size is not None]
            local_state, remote_state = _states(local, remote, batch_size)
            assert_same(local_state, remote_state, {"tf_state"})
            stream = cases.time_step_stream(local.time_step_spec, batch_size, 7, STEPS)
            for time_step in stream:
                expected, got = local.action(time_step, local_state), remote.action(time_step, remote_state)
                if case.seeded:  # a draw of each: only dtypes and shapes can be compared (PPO's draws are
                    # not clipped to the action bounds, locally either)
                    outer = () if batch_size is None else (batch_size,)
                    for value, spec in zip(tf.nest.flatten(got.action), tf.nest.flatten(remote.action_spec)):
                        assert np.asarray(value).dtype == spec.dtype and np.shape(value) == outer + spec.shape
                else:
                    allow = {"tf_batched_step"} if batch_size else set()
                    assert_same(expected.action, got.action, allow)
                    assert_same(_coder_tuples(expected.info), _coder_tuples(got.info), allow)
                    assert_same(expected.state, got.state, {"tf_state"} | allow)
                local_state, remote_state = expected.state, got.state
        local = locals_[False]
        time_step = next(cases.time_step_stream(local.time_step_spec, None, 0, 1))
        state = _states(local, remote, None)
        local_error = raised(lambda: local.action(time_step, state[0], seed=1))
        remote_error = raised(lambda: remote.action(time_step, state[1], seed=1))
        assert isinstance(remote_error, type(local_error)), (type(local_error), type(remote_error))


# The one difference beyond bit equality: a named tuple in a SavedModel's outputs (LinUCB's PolicyInfo)
# comes back locally as a class that TensorFlow's nested_structure_coder creates when it loads the model
# (not importable, a new class per load); the client decodes the same name and fields into a named tuple of
# its own registry. Same name, fields, values and ==; another class. Shown by the test below.
CODER_MODULE = "tensorflow.python.saved_model.nested_structure_coder"


def _coder_tuples(nest):
    """Named tuples of the coder's (or the client's stand-in for them) as (name, {field: value})."""
    if isinstance(nest, tuple) and hasattr(type(nest), "_fields") and type(nest).__module__ in (
            CODER_MODULE, "policy_client.wire.namedtuples"):
        return (type(nest).__name__, {f: _coder_tuples(v) for f, v in zip(type(nest)._fields, nest)})
    if isinstance(nest, dict):
        return {k: _coder_tuples(v) for k, v in nest.items()}
    if isinstance(nest, (list, tuple)) and not hasattr(type(nest), "_fields"):
        return type(nest)(_coder_tuples(v) for v in nest)
    return nest


def test_the_one_difference_occurs_a_saved_named_tuple_is_another_class_of_the_same_name(tmp_path):
    case = next(c for c in TF_CASES if c.name == "lin_ucb")
    path = _saved(case, tmp_path)
    local = py_tf_eager_policy.SavedModelPyTFEagerPolicy(path, load_specs_from_pbtxt=True)
    with BackgroundServer({"p": SavedModelBackend(path)}) as server, RemotePolicy(server.address, "p") as remote:
        time_step = next(cases.time_step_stream(local.time_step_spec, None, 7, 1))
        expected, got = local.action(time_step).info, remote.action(time_step).info
    assert type(expected).__module__ == CODER_MODULE and type(got) is not type(expected)
    assert type(got).__name__ == type(expected).__name__ == "PolicyInfo" and got._fields == expected._fields
    np.testing.assert_array_equal(got.predicted_rewards_mean, expected.predicted_rewards_mean)

