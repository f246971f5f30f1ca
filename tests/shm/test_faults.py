"""The shared-memory path against real server processes that are SIGKILLed, SIGTERMed and restarted.

Actors keep acting through every restart: a broken slot sends the request
again over gRPC within the caller's deadline, a new slot is opened on the new
server, and no answer is lost, duplicated or crossed (each action is
`2 * observation + version`, so a wrong, stale or crossed answer shows). A
killed server's segments are gone once its successor starts.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from policy_client import PolicyClient
from policy_server.shm import plane as shm
from policy_server.shm import segments
from tests.reliability.backends import VERSION_ENV
from tests.reliability.procs import ServerProcess
from tests.reliability.scenarios import STATELESS
from tests.support.fakes import echo_time_step
from tests.support.servers import wait_until

pytestmark = [pytest.mark.timeout(300), pytest.mark.reliability,
              pytest.mark.skipif(not shm.available(), reason="no POSIX shared memory")]

ACTORS = 4


def segments_of(pid: int) -> list[str]:
    return [n for n in os.listdir(segments.SHM_DIR) if n.startswith(f"{segments.PREFIX}{pid}_")]


def test_actors_on_shared_memory_live_through_a_sigkill_and_a_sigterm():
    server = ServerProcess([STATELESS], env={VERSION_ENV: "1"})
    server.start()
    stop, failures, answers = threading.Event(), [], [[] for _ in range(ACTORS)]
    clients = [PolicyClient(server.address, "stateless", timeout=60, data_plane="auto") for _ in range(ACTORS)]

    def actor(index: int) -> None:
        client, i = clients[index], 0
        try:
            while not stop.is_set():
                observation = np.full(3, 1000 * index + i, np.float32)
                result = client.action(echo_time_step(observation))
                answers[index].append((float(observation[0]), float(result.policy_step.action[0]), result.version))
                i += 1
        except Exception as e:  # pylint: disable=broad-except
            failures.append(e)

    threads = [threading.Thread(target=actor, args=(n,)) for n in range(ACTORS)]
    try:
        for thread in threads:
            thread.start()
        wait_until(lambda: all(len(a) > 20 for a in answers) and all(c.data_plane == "shm" for c in clients),
                   "every actor on shared memory", timeout=60)
        first = server.pid
        assert segments_of(first) == [], "segments are unlinked once attached"
        server.kill()  # SIGKILL: slots break mid-call
        server.start(env={VERSION_ENV: "2"})
        counts = [len(a) for a in answers]
        wait_until(lambda: all(len(a) > c + 20 for a, c in zip(answers, counts))
                   and all(c.data_plane == "shm" for c in clients), "back on shared memory", timeout=60)
        assert server.terminate() == 0  # SIGTERM: UNAVAILABLE on the slots, then gRPC until the successor
        server.start(env={VERSION_ENV: "3"})
        counts = [len(a) for a in answers]
        wait_until(lambda: all(len(a) > c + 20 for a, c in zip(answers, counts)), "served again", timeout=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        for client in clients:
            client.close()
        server.close()
    assert not failures, failures
    for per_actor in answers:
        versions = [v for _, _, v in per_actor]
        assert versions == sorted(versions) and set(versions) == {1, 2, 3}
        for observation, action, version in per_actor:  # nothing crossed, nothing stale
            assert action == 2 * observation + version
        sent = [o for o, _, _ in per_actor]
        assert sent == sorted(set(sent)), "an answer was lost or came twice"
