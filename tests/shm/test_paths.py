"""Each input form takes the path it should, and a call that the shared-memory plane cannot carry is counted.

With `data_plane="shm"` forced: 0-d arrays, numpy scalars of the spec dtype
and batched arrays go through the slot; what the specs do not fit (Python
floats where float32 arrays belong, another dtype) goes over gRPC, counted
in `PolicyClient.shm_fallbacks` by reason and logged once per reason (the
expected first call at INFO, the others at WARNING), and
the request says why (ActionRequest.slot_fallback), for the server's
`tfa_policy_shm_fallbacks` metric. A client's first call is one too
(`no_plan_yet`): the client learns the policy's plans from its first answer.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from policy_client.transport import ACTIONS_SENT
from policy_client.wire.standins import TimeStep
from policy_server.shm import plane as shm
from tests.operations.test_metrics import scrape, value
from tests.support.fakes import EchoBackend
from tests.support.servers import WAIT

pytestmark = pytest.mark.skipif(not shm.available(), reason="no POSIX shared memory")

OBS = np.array([1, 2, 3], np.float32)
STATE = {"count": np.array(0, np.int64)}


def _path(client, time_step, state=STATE, batch_size=0) -> str:
    before = dict(ACTIONS_SENT)
    client.action(time_step, state, batch_size=batch_size)
    grpc_calls, shm_calls = ACTIONS_SENT["grpc"] - before["grpc"], ACTIONS_SENT["shm"] - before["shm"]
    assert grpc_calls + shm_calls == 1, (grpc_calls, shm_calls)
    return "shm" if shm_calls else "grpc"


def _server_fallbacks(server) -> dict[str, float]:
    return {dict(labels)["reason"]: count for (name, labels), count in scrape(server).items()
            if name == "tfa_policy_shm_fallbacks_total" and dict(labels)["policy"] == "echo"}


def test_each_input_form_takes_its_path_and_fallbacks_are_counted(servers, caplog):
    server = servers.serve({"echo": EchoBackend()}, metrics_port=0)
    client = servers.client(server.address, "echo", data_plane="shm", timeout=WAIT)
    caplog.set_level(logging.INFO, logger="policy_client.transport.shm")
    arrays = TimeStep(np.array(0, np.int32), np.array(0, np.float32), np.array(1, np.float32), OBS)
    assert _path(client, arrays) == "grpc" and client.shm_fallbacks == {"no_plan_yet": 1}  # plans come with it
    forms = {
        "0-d arrays": (arrays, STATE, 0, "shm"),
        "numpy scalars": (TimeStep(np.int32(0), np.float32(0), np.float32(1), OBS), {"count": np.int64(0)}, 0,
                          "shm"),
        "a batch": (TimeStep(np.zeros(2, np.int32), np.zeros(2, np.float32), np.ones(2, np.float32),
                             np.stack([OBS, OBS])), {"count": np.zeros(2, np.int64)}, 2, "shm"),
        "Python floats": (TimeStep(np.int32(0), 0.0, 1.0, OBS), STATE, 0, "grpc"),
        "float64 observation": (TimeStep(np.int32(0), np.float32(0), np.float32(1), OBS.astype(np.float64)), STATE,
                                0, "grpc"),
    }
    for name, (time_step, state, rows, path) in forms.items():
        if path == "grpc":  # strict mode: the server refuses what does not fit, after it went over gRPC
            with pytest.raises(Exception):
                _path(client, time_step, state, rows)
            continue
        for _ in range(3):
            assert _path(client, time_step, state, rows) == path, name
    assert client.shm_fallbacks == {"no_plan_yet": 1, "not_conforming": 2}
    warnings = [r.getMessage() for r in caplog.records if "went over gRPC" in r.getMessage()]
    assert len(warnings) == 2 and "no_plan_yet" in warnings[0] and "not_conforming" in warnings[1], warnings
    levels = [r.levelname for r in caplog.records if "went over gRPC" in r.getMessage()]
    assert levels == ["INFO", "WARNING"]  # the first call before the plans is expected; the other is not
    assert _server_fallbacks(server) == {"no_plan_yet": 1, "not_conforming": 2}
    client.action_async(arrays, STATE).result(WAIT)  # futures go over gRPC: counted too
    assert client.shm_fallbacks["async"] == 1 and _server_fallbacks(server)["async"] == 1


def test_the_auto_plane_counts_without_logging(servers, caplog):
    server = servers.serve({"echo": EchoBackend()}, metrics_port=0)
    client = servers.client(server.address, "echo", timeout=WAIT)  # data_plane "auto"
    caplog.set_level(logging.WARNING, logger="policy_client.transport.shm")
    step = TimeStep(np.int32(0), np.float32(0), np.float32(1), OBS)
    for _ in range(3):
        client.action(step, STATE)
    with pytest.raises(ValueError, match="time_step.reward"):  # not conforming: counted (then refused), not logged
        client.action(TimeStep(np.int32(0), 0.0, np.float32(1), OBS), STATE)
    assert client.data_plane == "shm" and client.shm_fallbacks == {"no_plan_yet": 1, "not_conforming": 1}
    assert not [r for r in caplog.records if "went over gRPC" in r.getMessage()]
    assert _server_fallbacks(server) == {}  # only a forced plane says why: "auto" uses what it can


def test_unknown_fallback_reasons_are_counted_as_other():
    from policy_server.native.messages import fallback_reason
    assert fallback_reason(5) == "no_slot" and fallback_reason(12) == "session" and fallback_reason(999) == "other"
