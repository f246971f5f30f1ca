"""Runs a client in another language in its --json mode and checks it against policy_client.PolicyClient.

Every client (examples/clients/*) prints one JSON document of what it sent and
received: the policies, the episode it simulated (each observation it sent
over ActionStream and the action that came back), the batch of its unary
Action call, and the structured errors of its two wrong requests. The checks
send the same observations through PolicyClient and expect the same actions,
and the same code, message, field violations and reason for the same mistake.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
from collections.abc import Sequence
from typing import Any

import numpy as np

from policy_client import PolicyClient
from policy_client.wire import errors
from policy_client.wire.standins import TimeStep
from tests.clients.balancing import balancing_action
from tests.support.servers import WAIT

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Longest run of one client process (it connects, runs an episode of at most
# 200 steps and three more calls, each with a deadline of WAIT seconds).
RUN_TIMEOUT = 90.0
FIRST, MID, LAST = 0, 1, 2


def run_client(command: Sequence[str], *, expect_ok: bool = True) -> subprocess.CompletedProcess:
    """Runs a client process to its end (killed after RUN_TIMEOUT), from the repository root."""
    result = subprocess.run(list(command), cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                            stdin=subprocess.DEVNULL, check=False)
    if expect_ok:
        assert result.returncode == 0, f"{command[0]} exited {result.returncode}:\n{result.stderr}"
    return result


def run_json(command: Sequence[str]) -> dict[str, Any]:
    """The JSON document a client prints with --json."""
    return json.loads(run_client([*command, "--json"]).stdout)


def float32_rows(rows: list[list[float]]) -> np.ndarray:
    """The observations as float32, checked to be what the client sent (float32 values, exactly)."""
    array = np.array(rows, np.float32)
    np.testing.assert_array_equal(array.astype(np.float64), np.array(rows, np.float64))
    return array


def check_against_python(doc: dict[str, Any], address: str, policy: str) -> None:
    """The client's policies, actions and errors equal what PolicyClient gets for the same requests."""
    with PolicyClient(address, policy, timeout=WAIT) as stream, \
            PolicyClient(address, policy, timeout=WAIT, transport="unary") as unary:
        assert doc["policy"] == policy
        assert doc["policies"] == [{"name": p.name, "version": p.version, "backend": p.backend,
                                    "stateful": p.stateful} for p in stream.list_policies()]
        check_episode(doc["episode"], stream)
        check_batch(doc["batch"], unary)
        with_wrong = TimeStep(np.array(LAST, np.int32), np.array(0, np.float32), np.array(0, np.float32),
                              np.zeros(3, np.float32))
        for seen, client in ((doc["stream_error"], stream), (doc["call_error"], unary)):
            try:
                client.action(with_wrong)
            except errors.InvalidArgumentError as e:
                check_same_error(seen, e)
            else:
                raise AssertionError("the server accepted an observation of shape (3,)")


def check_episode(episode: dict[str, Any], client: PolicyClient) -> None:
    observations = float32_rows(episode["observations"])
    assert 1 <= len(observations) <= 200 and len(episode["actions"]) == len(observations)
    assert episode["return"] == len(observations)  # reward 1 per step, as in gym's CartPole
    assert episode["fell"] or len(observations) == 200  # the pole fell, or the time limit
    for i, (observation, action) in enumerate(zip(observations, episode["actions"])):
        step_type, reward = (FIRST, 0.0) if i == 0 else (MID, 1.0)
        step = TimeStep(np.array(step_type, np.int32), np.array(reward, np.float32), np.array(1, np.float32),
                        observation)
        result = client.action(step)
        assert result.policy_step.action == action, f"step {i}: observation {observation.tolist()}"
        assert episode["versions"][i] == result.version


def check_both_actions(doc: dict[str, Any]) -> None:
    """A run of the balancing policy: a full episode whose actions are both 0 and 1, each as the policy answers.

    With check_against_python, this proves that the client's stream decodes
    either action value (the greedy demo policy's episodes are nearly all 0).
    """
    episode, batch = doc["episode"], doc["batch"]
    assert len(episode["actions"]) == 200 and not episode["fell"], "the balancing policy keeps the pole up"
    counts = [episode["actions"].count(action) for action in (0, 1)]
    assert min(counts) >= 50, f"actions 0 and 1 taken {counts[0]} and {counts[1]} times in 200 steps"
    np.testing.assert_array_equal(np.array(episode["actions"]), balancing_action(float32_rows(episode["observations"])))
    np.testing.assert_array_equal(np.array(batch["actions"]), balancing_action(float32_rows(batch["observations"])))
    assert set(batch["actions"]) == {0, 1}, batch["actions"]


def check_batch(batch: dict[str, Any], client: PolicyClient) -> None:
    observations = float32_rows(batch["observations"])
    n = len(observations)
    step = TimeStep(np.full(n, MID, np.int32), np.ones(n, np.float32), np.ones(n, np.float32), observations)
    result = client.action(step, batch_size=n)
    np.testing.assert_array_equal(np.array(batch["actions"], np.int64), result.policy_step.action)
    assert batch["version"] == result.version


def check_same_error(seen: dict[str, Any], error: errors.RemoteError) -> None:
    """A client's reading of a google.rpc.Status equals Python's (policy_client.wire.status)."""
    assert (seen["code"], seen["codeName"]) == (error.code.value[0], error.code.name) == (3, "INVALID_ARGUMENT")
    assert seen["message"] == error.details
    assert [(f["field"], f["description"]) for f in seen["fields"]] == [tuple(f) for f in error.fields]
    assert seen["fields"][0]["field"] == "time_step.observation"
    assert (seen["reason"], seen["domain"]) == (error.reason, "tfa-policy-grpc")
