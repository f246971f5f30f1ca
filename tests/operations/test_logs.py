"""Quiet, useful output: what `policy-server` prints, JSON logs, progress of slow loads, stats only with traffic."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

import numpy as np
import pytest

from policy_client import PolicyClient
from policy_server.telemetry import logs
from tests.operations.processes import ECHO, policy_server
from tests.support.fakes import EchoBackend, echo_time_step
from tests.support.servers import WAIT

pytestmark = pytest.mark.timeout(180)

# What TensorFlow, CUDA, gym and absl print at start-up when nothing keeps them quiet.
NOISE = ("Unable to register", "cuda", "cuDNN", "oneDNN", "TF-TRT", "cpu_feature_guard", "Gym has been unmaintained",
         "gymnasium", "WARNING:absl", "WARNING:tensorflow")
READY = r"policy-server serving (.*) on (\S+)$"


def act_once(address: str, policy: str = "echo") -> None:
    with PolicyClient(address, policy, timeout=WAIT) as client:
        client.action(echo_time_step([1, 2, 3]), {"count": np.array(0, np.int64)})


# "2" is what `make` exports; unset is a bare shell.
@pytest.mark.parametrize("tf_level", ["2", None], ids=["make", "bare-shell"])
def test_the_server_prints_one_line_per_event_and_no_start_up_chatter(tmp_path, tf_level):
    with policy_server([*ECHO, "--factory", "echo2=tests.support.fakes:EchoBackend", "--stats-interval", "0"],
                       tmp_path, env={"TF_CPP_MIN_LOG_LEVEL": tf_level}) as server:
        listening = server.wait_for(r"^policy-server listening on (\S+) \(loading policies\)$")
        ready = server.wait_for(READY)
        assert ready.group(1) == "echo, echo2" and ready.group(2) == listening.group(1)
        act_once(ready.group(2))
        assert server.stop() == 0
    assert len(server.stdout) == 2, server.stdout
    lines = server.stderr.splitlines()
    for noise in NOISE:
        assert not [line for line in lines if noise.lower() in line.lower()], (noise, lines)
    events = [line.split(": ", 1)[1] for line in lines]
    assert events[0] == f"listening on {listening.group(1)} (plaintext, no tokens)"
    assert events[1].startswith("serving policy 'echo' (echo, version 0")
    assert events[2].startswith("serving policy 'echo2' (echo, version 0")
    assert events[3:5] == ["received SIGTERM: answering accepted requests, then stopping",
                           "policy 'echo' v0: " + events[4].split(": ", 1)[1]]  # the final stats: echo had traffic
    assert events[5:] == ["server stopped"], lines  # echo2 was idle: no stats line for it


def test_json_logs_are_one_object_per_line_on_both_streams(tmp_path):
    with policy_server([*ECHO, "--log-format", "json", "--metrics-port", "0"], tmp_path) as server:
        listening = json.loads(server.wait_for(r"^\{.*\"event\": \"listening\"").string)
        ready = json.loads(server.wait_for(r"^\{.*\"event\": \"ready\"").string)
        assert ready["address"] == listening["address"] and ready["policies"] == "echo"
        assert listening["metrics"].startswith("http://127.0.0.1:") and listening["metrics"].endswith("/metrics")
        assert ready["message"] == f"policy-server serving echo on {ready['address']}"
        act_once(ready["address"])
        assert server.stop() == 0
    records = [json.loads(line) for line in server.stderr.splitlines()]  # every line is one JSON object
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert [r["event"] for r in records if "event" in r][:2] == ["listening", "serving"]
    serving = next(r for r in records if r.get("event") == "serving")
    assert serving["policy"] == "echo" and serving["level"] == "INFO" and serving["logger"] == "policy_server.server"
    assert records[0]["time"].endswith("Z") and "T" in records[0]["time"]


def test_a_policy_that_fails_to_load_is_one_error_line_and_exit_code_1(tmp_path):
    with policy_server([*ECHO, "--factory", "broken=no_such_module_anywhere:build"], tmp_path) as server:
        server.wait_for(r"listening on")
        server.proc.wait(120)
    assert server.proc.returncode == 1
    errors = [line for line in server.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "policy 'broken' failed to load: ImportError: cannot import " \
        "'no_such_module_anywhere' for --factory" in errors[0], server.stderr
    assert "Traceback" not in server.stderr


def test_debug_lets_the_libraries_speak(tmp_path):
    with policy_server([*ECHO, "--log-level", "DEBUG"], tmp_path, env={"TF_CPP_MIN_LOG_LEVEL": None}) as server:
        server.wait_for(READY)
        assert server.stop() == 0
    assert "Gym has been unmaintained" in server.stderr  # nothing is hidden at DEBUG


def test_a_slow_load_reports_its_progress(servers, caplog):
    caplog.set_level(logging.INFO, logger="policy_server.server")
    release = threading.Event()

    def slow():
        assert release.wait(WAIT)
        return EchoBackend()

    server = servers.serve({"slow": slow}, wait_until_loaded=False, gates=(release,), load_report_interval=0.1)
    deadline = time.monotonic() + WAIT
    while "still loading policy 'slow'" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    release.set()
    server.run(server.server.wait_until_loaded())
    progress = [r for r in caplog.records if r.getMessage().startswith("still loading policy 'slow' (")]
    assert progress and all(getattr(r, "event", None) == "loading" for r in progress)
    assert "serving policy 'slow'" in caplog.text


def test_stats_lines_only_while_there_is_traffic(servers, caplog):
    caplog.set_level(logging.INFO, logger="policy_server.server")
    server = servers.serve({"echo": EchoBackend(), "idle": EchoBackend()}, stats_interval=0.1)
    time.sleep(0.35)
    assert "requests=" not in caplog.text  # nothing happened: nothing to say
    act_once(server.address)
    deadline = time.monotonic() + WAIT
    while "policy 'echo' v0: requests=1 " not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.35)
    stats = [r.getMessage() for r in caplog.records if "requests=" in r.getMessage()]
    assert len(stats) == 1 and stats[0].startswith("policy 'echo' v0: requests=1 "), stats


def test_json_formatter_keeps_extras_and_exceptions():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "failed %s", ("here",),
                                                   exc_info=sys.exc_info(), extra={"policy": "p", "event": "e", "n": 3})
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "failed here" and entry["level"] == "ERROR" and entry["logger"] == "x"
    assert (entry["policy"], entry["event"], entry["n"]) == ("p", "e", 3)
    assert "ValueError: boom" in entry["exception"]


@pytest.mark.parametrize("before, after", [(None, "3"), ("2", "3"), ("3", "3"), ("1", "1"), ("0", "0")])
def test_quiet_libraries_raises_tensorflows_log_level_unless_asked_for_more(monkeypatch, before, after):
    if before is None:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", before)
    levels = {name: logging.getLogger(name).level for name in ("absl", "tensorflow")}
    try:
        logs.quiet_libraries()
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == after
        assert logging.getLogger("absl").level == logging.ERROR
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
