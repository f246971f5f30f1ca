"""A time step that is not a nest of arrays gets what the local policy's handler catches, on both planes.

An object, a mock, a string, None, a number, a dict or a list where the
TimeStep belongs: locally, a TF policy raises ValueError or TypeError (its
structure check), a Python policy AttributeError (`time_step.observation`).
RemotePolicy raises an error that `except type(local_error)` catches: the
hosted policy's own one for what can travel (as-local), and NotANestError
(a ValueError, TypeError and AttributeError, naming the field) for what cannot
be encoded at all. Never a RecursionError, whatever the plane.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from tf_agents.policies import py_tf_eager_policy
from tf_agents.trajectories import time_step as ts

from policy_client import RemotePolicy
from policy_client.wire import errors
from policy_server import EagerBackend
from policy_server.backends.py_policy import PyPolicyBackend
from policy_server.server import BackgroundServer
from tests.support.same import raised
from tests.clients.balancing import BalancingPolicy

BAD = {"object": object, "mock": mock.MagicMock, "string": lambda: "abc", "none": lambda: None,
       "number": lambda: 3, "dict": lambda: {"a": 1}, "list": lambda: [1, 2]}


@pytest.fixture(scope="module")
def hosted(cartpole_tf_policy):
    balancing = BalancingPolicy()
    locals_ = {"eager": py_tf_eager_policy.PyTFEagerPolicy(cartpole_tf_policy), "python": balancing}
    with BackgroundServer({"eager": EagerBackend(cartpole_tf_policy), "python": PyPolicyBackend(balancing)}) as server:
        yield server, locals_



@pytest.mark.parametrize("plane", ["grpc", "shm"])
@pytest.mark.parametrize("policy", ["eager", "python"])
def test_bad_time_steps_raise_what_the_local_handler_catches(hosted, plane, policy):
    server, locals_ = hosted
    local = locals_[policy]
    with RemotePolicy(server.address, policy, data_plane=plane, timeout=30) as remote:
        remote.action(ts.restart(np.zeros(4, np.float32)))  # the plane is up (a slot, for shm)
        remote.action(ts.restart(np.zeros(4, np.float32)))
        assert remote._client.data_plane == plane  # pylint: disable=protected-access
        for name, make in BAD.items():
            local_error = raised(lambda: local.action(make()))  # noqa: B023
            remote_error = raised(lambda: remote.action(make()))  # noqa: B023
            assert not isinstance(remote_error, RecursionError), (name, remote_error)
            if name == "mock" and not isinstance(local_error, (ValueError, TypeError, AttributeError)):
                # The local policy computed with the mock's made-up attributes (BalancingPolicy indexes
                # np.asarray(mock.observation): IndexError). Nothing a client cannot send can raise that.
                assert policy == "python" and isinstance(local_error, IndexError), local_error
                assert isinstance(remote_error, errors.NotANestError)
                continue
            assert isinstance(remote_error, type(local_error)), (name, type(local_error), type(remote_error),
                                                                  str(remote_error)[:200])
            if isinstance(remote_error, errors.NotANestError):
                assert remote_error.field == "time_step" and "not a nest of arrays" in str(remote_error)
        # The policy goes on answering.
        assert remote.action(ts.restart(np.zeros(4, np.float32))).action.shape == ()


def test_not_a_nest_is_a_value_type_and_attribute_error():
    error = errors.NotANestError("time_step: not a nest of arrays", "time_step")
    assert isinstance(error, ValueError) and isinstance(error, TypeError) and isinstance(error, AttributeError)
    assert isinstance(error, errors.CodecError) and error.field == "time_step"
