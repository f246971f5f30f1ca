"""Flags of `policy-server` that only a real server shows: each starts the CLI and checks what the flag changes.

--no-shared-memory (and the config file's `shared_memory = false`), --max-message-mb,
--metrics-host, --stream-acks (and `stream_acks`), --follow-reverb and --reverb-table, against `python -m policy_server.cli` on free
127.0.0.0/8 ports.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from tf_agents.trajectories import time_step as ts

from examples.serving_demo import start_server, stop_server
from policy_client import PolicyClient
from policy_client.wire import errors
from policy_client.wire.generated import policy_service_pb2_grpc as service_grpc
from tests.reliability.clients import echo_request
from tests.support.reverb_tables import variable_container

pytestmark = pytest.mark.timeout(240)

ECHO = ["--factory", "echo=tests.support.fakes:EchoBackend"]
STATE = {"count": np.array(0, np.int64)}


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Served:
    def __init__(self, flags):
        self.proc, self.address = start_server(flags)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        assert stop_server(self.proc) == 0


def _plane_after_calls(address: str) -> tuple[str, int]:
    with PolicyClient(address, "echo", timeout=30) as client:
        for _ in range(4):  # a first answer teaches the plans; the next calls would take a slot if offered
            client.action(ts.restart(np.ones(3, np.float32)), STATE)
        return client.data_plane, client.stats()[0]["shared_memory_slots"]


def test_shared_memory_is_offered_by_default_and_not_with_the_flag_or_the_file_key(tmp_path):
    with _Served(ECHO) as served:
        assert _plane_after_calls(served.address) == ("shm", 1)
    with _Served([*ECHO, "--no-shared-memory"]) as served:
        assert _plane_after_calls(served.address) == ("grpc", 0)
        with PolicyClient(served.address, "echo", timeout=30, data_plane="shm") as forced:
            with pytest.raises(errors.FailedPreconditionError, match="offers shared memory"):
                forced.action(ts.restart(np.ones(3, np.float32)), STATE)
                forced.action(ts.restart(np.ones(3, np.float32)), STATE)
    config = tmp_path / "server.toml"
    config.write_text('[server]\nshared_memory = false\n\n'
                      '[policies.echo]\nfactory = "tests.support.fakes:EchoBackend"\n')
    with _Served(["--config", str(config)]) as served:
        assert _plane_after_calls(served.address) == ("grpc", 0)


def test_max_message_mb_bounds_requests(tmp_path):
    with _Served([*ECHO, "--max-message-mb", "1", "--no-shared-memory"]) as served:
        with PolicyClient(served.address, "echo", timeout=30) as client:
            rows = 20_000  # 32 bytes a row (with step type, reward, discount, state): 0.64 MB, under 1 MiB
            obs = np.ones((rows, 3), np.float32)
            step = ts.TimeStep(np.zeros(rows, np.int32), np.zeros(rows, np.float32), np.ones(rows, np.float32), obs)
            answer = client.action(step, {"count": np.zeros(rows, np.int64)}, batch_size=rows)
            assert answer.policy_step.action.shape == (rows, 3)
            rows = 40_000  # 1.28 MB: over the limit
            obs = np.ones((rows, 3), np.float32)
            step = ts.TimeStep(np.zeros(rows, np.int32), np.zeros(rows, np.float32), np.ones(rows, np.float32), obs)
            with pytest.raises(errors.ResourceExhaustedError, match="1048576 bytes"):
                client.action(step, {"count": np.zeros(rows, np.int64)}, batch_size=rows)


def test_metrics_host_is_where_the_endpoint_binds():
    port = _free_port("127.0.0.2")
    with _Served([*ECHO, "--metrics-port", str(port), "--metrics-host", "127.0.0.2"]) as served:
        with PolicyClient(served.address, "echo", timeout=30) as client:
            client.action(ts.restart(np.ones(3, np.float32)), STATE)
        text = urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=10).read().decode()
        assert 'tfa_policy_requests_total{code="OK",method=' in text
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)


def _raw_stream_answer(address: str, acknowledging: bool):
    """The answer to one raw ActionStream request, with answers_read set or not."""
    request = echo_request("echo", np.ones(3, np.float32), stateful=True, request_id=7)
    if acknowledging:
        request.answers_read = 0
    with grpc.insecure_channel(address) as channel:
        call = service_grpc.PolicyServiceStub(channel).ActionStream(iter([request]), timeout=30, wait_for_ready=True)
        (answer,) = list(call)
    return answer


def test_stream_acks_required_refuses_stream_requests_without_answers_read(tmp_path):
    with _Served([*ECHO, "--stream-acks", "required"]) as served:
        assert "StreamAcksRequired" in str(_raw_stream_answer(served.address, acknowledging=False).error)
        assert not _raw_stream_answer(served.address, acknowledging=True).HasField("error")
        with PolicyClient(served.address, "echo", timeout=30, transport="stream", data_plane="grpc") as client:
            client.action(ts.restart(np.ones(3, np.float32)), STATE)  # the client acknowledges: served
    with _Served(ECHO) as served:  # the default serves clients that do not acknowledge
        assert not _raw_stream_answer(served.address, acknowledging=False).HasField("error")
    config = tmp_path / "server.toml"
    config.write_text('[server]\nstream_acks = "required"\n\n'
                      '[policies.echo]\nfactory = "tests.support.fakes:EchoBackend"\n')
    with _Served(["--config", str(config)]) as served:
        assert "StreamAcksRequired" in str(_raw_stream_answer(served.address, acknowledging=False).error)


def test_follow_reverb_and_reverb_table_flags_load_what_a_learner_pushes():
    """`--follow-reverb cartpole=ADDRESS --reverb-table NAME`: the demo policy follows a variable container
    kept in a table of that name (not the default "variables"), as tf_agents' ReverbVariableContainer pushes."""
    import reverb  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from tf_agents.policies import py_tf_eager_policy  # pylint: disable=import-outside-toplevel

    from examples import cartpole as demo_policy  # pylint: disable=import-outside-toplevel

    trained = demo_policy.cartpole_q_policy(seed=6)
    replay, values, train_step = variable_container(trained, "learner_weights")
    try:
        address = f"127.0.0.1:{replay.port}"
        with _Served(["--demo", "--follow-reverb", f"cartpole={address}", "--reverb-table", "learner_weights",
                      "--follow-interval", "0.1"]) as served:
            with PolicyClient(served.address, "cartpole", timeout=30) as client:
                assert client.get_specs()[1] == 0
                train_step.assign(33)
                reverb.Client(address).insert([np.asarray(v) for v in tf.nest.flatten(values)],
                                              {"learner_weights": 1.0})
                deadline = time.monotonic() + 60
                while client.get_specs()[1] != 33:
                    assert time.monotonic() < deadline, "the server never loaded the pushed variables"
                    time.sleep(0.05)
                local = py_tf_eager_policy.PyTFEagerPolicy(trained)
                observations = np.random.default_rng(0).uniform(-0.2, 0.2, (16, 4)).astype(np.float32)
                remote = [int(client.action(ts.restart(o)).policy_step.action) for o in observations]
                assert remote == [int(local.action(ts.restart(o)).action) for o in observations]
    finally:
        replay.stop()
