"""A server hosting what `policy-server --demo` hosts, plus a policy that balances the pole."""

from __future__ import annotations

import pytest

from policy_server import EagerBackend
from policy_server.backends.py_policy import PyPolicyBackend
from policy_server.server import BackgroundServer
from tests.clients.balancing import BALANCING, BalancingPolicy


@pytest.fixture(scope="module")
def demo_server():
    """'cartpole' (greedy, seed 0), 'cartpole_collect' (epsilon-greedy) and 'cartpole_balancing'
    (tests/clients/balancing.py) on a free 127.0.0.1 port.

    The policies are built here, not taken from the session's `cartpole_tf_policy`:
    these tests run first, and a Keras model built this early would be
    invalidated for later tests by any test that builds models in a
    tf.compat.v1.Graph.
    """
    from examples.cartpole import cartpole_collect_policy, cartpole_q_policy  # pylint: disable=import-outside-toplevel

    policies = {"cartpole": EagerBackend(cartpole_q_policy(seed=0)),
                "cartpole_collect": EagerBackend(cartpole_collect_policy(seed=0)),
                BALANCING: PyPolicyBackend(BalancingPolicy())}
    with BackgroundServer(policies) as server:
        yield server
