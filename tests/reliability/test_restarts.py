"""The restart subset of `make test`: one SIGKILL and one SIGTERM of a subprocess server under 4 RemotePolicy
actors (2 on streams, 2 unary), each restarted on the same port.

No answer may be lost, duplicated or crossed; across the SIGKILL no call may fail. Across the SIGTERM the
only failures allowed are those of known defect C (a unary call gRPC cancels as the server shuts down),
which the full run counts (`make reliability`, 5 restarts of each kind under 8 actors).
"""

from __future__ import annotations

import pytest

from tests.reliability.actors import Actors
from tests.reliability.backends import VERSION_ENV
from tests.reliability.procs import ServerProcess
from tests.reliability.scenarios import ECHO

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(300)]

DEADLINE = 60.0  # each actor call's; restarts take 3 to 20 s on a loaded 2-core machine


def test_sigkill_then_sigterm_restarts_under_actors():
    with ServerProcess([ECHO], env={VERSION_ENV: "1"}) as server:
        server.start()
        actors = Actors(server.address, ["stream", "unary", "shm"] * 2, timeout=DEADLINE).start()
        try:
            assert actors.wait_for_version(1, DEADLINE)
            server.kill()
            server.start(env={VERSION_ENV: "2"})
            assert actors.wait_for_version(2, DEADLINE), "not every actor was answered after the SIGKILL restart"
            failed_by_kill = [a.tally.samples[:] for a in actors.actors if a.tally.failed]
            assert server.terminate(DEADLINE) == 0
            server.start(env={VERSION_ENV: "3"})
            assert actors.wait_for_version(3, DEADLINE), "not every actor was answered after the SIGTERM restart"
        finally:
            tally = actors.finish()
    assert not failed_by_kill, failed_by_kill
    assert tally.wrong == 0 and tally.lost == 0, tally.samples
    assert set(tally.versions) == {1, 2, 3}
    assert tally.failed == 0, tally.samples  # unary calls a stopping server cancels are resent (defect C)
