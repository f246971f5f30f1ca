"""Any number of servers in one process (tests, notebooks, one server per policy) run quietly."""

from __future__ import annotations

import logging
import threading

import numpy as np
from tf_agents.policies import random_py_policy
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from policy_client import PolicyClient, RemotePolicy
from policy_server.server import BackgroundServer
from tests.support.fakes import EchoBackend, echo_time_step


def test_three_servers_with_busy_clients_log_nothing(caplog):
    caplog.set_level(logging.WARNING)
    servers = [BackgroundServer({"echo": EchoBackend(stateful=False)}) for _ in range(3)]
    try:
        clients = [PolicyClient(s.address, "echo", transport=t) for s in servers for t in ("stream", "unary")]

        def work(client: PolicyClient) -> None:
            for i in range(150):
                assert client.action(echo_time_step(np.full(3, i, np.float32))).policy_step.action[0] == 2 * i

        threads = [threading.Thread(target=work, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        for client in clients:
            client.close()
    finally:
        for server in servers:
            server.stop()
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not noisy, [r.getMessage() for r in noisy[:3]]


def test_a_policy_object_is_served_as_it_is():
    policy = random_py_policy.RandomPyPolicy(ts.time_step_spec(array_spec.ArraySpec((), np.float32)),
                                             array_spec.BoundedArraySpec((), np.int32, 0, 3))
    with BackgroundServer({"random": policy}) as server, RemotePolicy(server.address) as remote:
        assert remote.action_spec == policy.action_spec
        assert 0 <= remote.action(ts.restart(np.float32(0))).action <= 3
