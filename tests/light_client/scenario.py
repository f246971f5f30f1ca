"""Runs in a virtualenv holding only the TF-free client distribution (client/): prints one JSON document.

    python tests/light_client/scenario.py ADDRESS

Nothing here imports TensorFlow, TF-Agents or this repository's tests: only
numpy, gRPC and `policy_client` as `pip install ./client` installed it. The
server (started by tests/light_client/test_light_client.py in the main
virtualenv) hosts "cartpole" (greedy), "cartpole_collect" (epsilon-greedy), "rnn"
(a recurrent CartPole policy) and "echo" (action = 2 * observation + bias,
whose bias a push sets).
The test compares what is printed here with the local policies.
"""

from __future__ import annotations

import json
import math
import platform
import sys

import google.protobuf
import grpc
import numpy as np

import policy_client
from policy_client import PolicyClient, VariablePublisher, wire
from policy_client.wire import errors
from policy_client.wire.standins import TimeStep

FIRST, MID, LAST = 0, 1, 2


def cartpole_step(state: np.ndarray, action: int) -> tuple[np.ndarray, bool]:
    """Gym's CartPole-v1 dynamics (Euler), in float64 as gym computes them; done when the pole falls."""
    x, x_dot, theta, theta_dot = state
    force = 10.0 if action == 1 else -10.0
    cos, sin = math.cos(theta), math.sin(theta)
    temp = (force + 0.05 * theta_dot**2 * sin) / 1.1
    theta_acc = (9.8 * sin - cos * temp) / (0.5 * (4.0 / 3.0 - 0.1 * cos**2 / 1.1))
    x_acc = temp - 0.05 * theta_acc * cos / 1.1
    state = np.array([x + 0.02 * x_dot, x_dot + 0.02 * x_acc, theta + 0.02 * theta_dot,
                      theta_dot + 0.02 * theta_acc])
    return state, bool(abs(state[0]) > 2.4 or abs(state[2]) > 12 * 2 * math.pi / 360)


def episode(address: str, plane: str) -> dict:
    """One CartPole episode (at most 200 steps); time steps built from numpy scalars, as a simulator writes them."""
    rng = np.random.default_rng(0 if plane == "grpc" else 1)
    state = rng.uniform(-0.05, 0.05, 4)
    observations, actions = [], []
    with PolicyClient(address, "cartpole", data_plane=plane, timeout=30) as client:
        planes = []
        for i in range(200):
            observation = state.astype(np.float32)
            step = TimeStep(np.int32(FIRST if i == 0 else MID), np.float32(0 if i == 0 else 1), np.float32(1),
                            observation)
            action = int(client.action(step).policy_step.action)
            planes.append(client.data_plane)
            observations.append(observation.tolist())
            actions.append(action)
            state, done = cartpole_step(state, action)
            if done:
                break
    return {"observations": observations, "actions": actions, "planes": sorted(set(planes[2:])),
            "last_plane": planes[-1]}


def batch(address: str) -> dict:
    observations = np.random.default_rng(2).uniform(-0.2, 0.2, (8, 4)).astype(np.float32)
    with PolicyClient(address, "cartpole", data_plane="grpc", timeout=30) as client:
        step = TimeStep(np.full(8, MID, np.int32), np.ones(8, np.float32), np.ones(8, np.float32), observations)
        actions = client.action(step, batch_size=8).policy_step.action
    return {"observations": observations.tolist(), "actions": np.asarray(actions).tolist()}


def seeds(address: str) -> dict:
    observation = np.array([0.01, -0.02, 0.03, 0.01], np.float32)
    step = TimeStep(np.int32(MID), np.float32(1), np.float32(1), observation)
    with PolicyClient(address, "cartpole_collect", timeout=30) as client:
        by_seed = {str(seed): [int(client.action(step, seed=seed).policy_step.action) for _ in range(2)]
                   for seed in range(64)}
    return {"observation": observation.tolist(), "actions": by_seed}


def recurrent(address: str) -> dict:
    """The recurrent "rnn" policy over 40 observations: a server-held session, and the state carried here."""
    observations = np.random.default_rng(3).uniform(-0.1, 0.1, (40, 4)).astype(np.float32)
    out: dict = {"observations": observations.tolist()}
    with PolicyClient(address, "rnn", timeout=30) as client:
        steps = [TimeStep(np.int32(FIRST if i == 0 else MID), np.float32(0 if i == 0 else 1), np.float32(1), obs)
                 for i, obs in enumerate(observations)]
        out["session"] = [int(client.session_action(step, "episode", start=i == 0).policy_step.action)
                          for i, step in enumerate(steps)]
        state, actions = client.get_initial_state(), []
        for step in steps:
            result = client.action(step, state)
            actions.append(int(result.policy_step.action))
            state = result.policy_step.state
        out["client_state"] = actions
    return out


def push(address: str) -> dict:
    """A weight push to the "echo" policy (action = 2 * observation + bias), then its answer."""
    with VariablePublisher(address, "echo", timeout=30) as publisher:
        values = [np.full(v["shape"], 0.5, v["dtype"]) for v in publisher.variables()]
        version = publisher.push(values, version=7)
    with PolicyClient(address, "echo", timeout=30) as client:
        step = TimeStep(np.int32(MID), np.float32(1), np.float32(1), np.array([1, 2, 3], np.float32))
        result = client.action(step, client.get_initial_state())
    return {"pushed_version": version, "action": np.asarray(result.policy_step.action).tolist(),
            "version": result.version}


def bad_inputs(address: str) -> dict:
    out = {}
    with PolicyClient(address, "cartpole", timeout=30) as client:
        for name, step in (("wrong_shape", TimeStep(np.int32(MID), np.float32(1), np.float32(1),
                                                    np.zeros(3, np.float32))),
                           ("wrong_dtype", TimeStep(np.int32(MID), np.float32(1), np.float32(1),
                                                    np.array(["a", "b", "c", "d"])))):
            try:
                client.action(step)
                out[name] = None
            except Exception as e:  # pylint: disable=broad-except  # the test checks type and message
                out[name] = {"type": type(e).__name__, "value_error": isinstance(e, ValueError),
                             "message": str(e), "field": getattr(e, "field", "") or
                             (e.fields[0][0] if getattr(e, "fields", ()) else "")}
    if hasattr(np, "dtypes") and hasattr(np.dtypes, "StringDType"):  # numpy 2: kept off the wire, clearly
        with PolicyClient(address, "cartpole", timeout=30) as client:
            try:
                client.action(TimeStep(np.int32(MID), np.float32(1), np.float32(1),
                                       np.array(["a", "b", "c", "d"], dtype=np.dtypes.StringDType())))
            except Exception as e:  # pylint: disable=broad-except
                out["string_dtype"] = {"type": type(e).__name__, "message": str(e)}
    try:
        with PolicyClient(address, "nope", timeout=30) as client:
            client.get_specs()
    except errors.PolicyNotFoundError as e:
        out["unknown_policy"] = {"type": type(e).__name__, "message": str(e)}
    return out


def golden() -> dict:
    """The wire bytes of a few values whose encoding numpy 2 could change (scalars, bools, strings, views)."""
    values = {"float32_view": np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2],
              "bool": np.array([True, False, True]), "np_bool_scalar": np.bool_(True),
              "int64_scalar": np.int64(-3), "float64_scalar": np.float64(0.1),
              "bytes": np.array([b"ab", b"c"]), "unicode": np.array(["\u00e9t\u00e9", "x"]),
              "big_endian": np.arange(3, dtype=">i4")}
    return {name: wire.tensors.array_to_proto(value).SerializeToString().hex() for name, value in values.items()}


def main() -> int:
    address = sys.argv[1]
    doc = {"versions": {"python": platform.python_version(), "numpy": np.__version__,
                        "protobuf": google.protobuf.__version__, "grpcio": grpc.__version__},
           "policy_client": policy_client.__file__,
           "golden": golden()}
    doc["grpc_episode"] = episode(address, "grpc")
    doc["shm_episode"] = episode(address, "shm")
    doc["batch"] = batch(address)
    doc["seeds"] = seeds(address)
    doc["recurrent"] = recurrent(address)
    doc["push"] = push(address)
    doc["errors"] = bad_inputs(address)
    try:
        import tensorflow  # noqa: F401  # pylint: disable=import-outside-toplevel,unused-import
        doc["tensorflow"] = True
    except ImportError:
        doc["tensorflow"] = False
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
