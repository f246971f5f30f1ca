"""A server hosting what `policy-server --demo` hosts, for the clients in other languages."""

from __future__ import annotations

import pytest

from policy_server import EagerBackend
from policy_server.server import BackgroundServer


@pytest.fixture(scope="module")
def demo_server():
    """'cartpole' (greedy, seed 0) and 'cartpole_collect' (epsilon-greedy) on a free 127.0.0.1 port.

    The policies are built here, not taken from the session's `cartpole_tf_policy`:
    these tests run first, and a Keras model built this early would be
    invalidated for later tests by any test that builds models in a
    tf.compat.v1.Graph.
    """
    from examples.cartpole import cartpole_collect_policy, cartpole_q_policy  # pylint: disable=import-outside-toplevel

    policies = {"cartpole": EagerBackend(cartpole_q_policy(seed=0)),
                "cartpole_collect": EagerBackend(cartpole_collect_policy(seed=0))}
    with BackgroundServer(policies) as server:
        yield server
