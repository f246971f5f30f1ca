"""The client core (the wire layer, PolicyClient) works where TensorFlow cannot be imported."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter whose import system refuses TensorFlow and
# TF-Agents (and records every attempt), then exercises the wire.
_SCRIPT = textwrap.dedent(r'''
    import importlib.abc
    import json
    import sys

    BLOCKED = ("tensorflow", "tf_agents", "tensorflow_probability", "keras")
    attempts = []

    class BlockTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempts.append(name)
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTensorFlow())

    import collections

    import numpy as np

    import policy_client.wire.errors
    import policy_client.wire.standins as light
    from policy_client import wire
    from policy_client.wire.generated import types_pb2 as pb

    assert issubclass(policy_client.wire.errors.CodecError, ValueError)
    results = {}

    def round_trip(to_proto, from_proto, message_type, value):
        data = to_proto(value).SerializeToString()
        return from_proto(message_type.FromString(data))

    # A TimeStep-like value: any object with the four fields.
    class StepLike:
        step_type = np.int32(0)
        reward = np.float32(0.5)
        discount = np.float32(1.0)
        observation = {"pos": np.arange(4, dtype=np.float32), "id": np.array([b"x"], dtype=object)}

    step = round_trip(wire.time_step_to_proto, wire.time_step_from_proto, pb.TimeStep, StepLike())
    assert type(step) is light.TimeStep, type(step)
    assert step.reward == np.float32(0.5) and step.observation["pos"].tolist() == [0, 1, 2, 3]
    assert step.observation["id"].tolist() == [b"x"]

    policy_step = round_trip(wire.policy_step_to_proto, wire.policy_step_from_proto,
                             pb.PolicyStep, light.PolicyStep(np.int64(1), (), ()))
    assert type(policy_step) is light.PolicyStep and policy_step.state == ()

    spec = light.BoundedArraySpec((2,), np.float32, -1.0, [1.0, 2.0], "action")
    decoded_spec = round_trip(wire.spec_to_proto, wire.spec_from_proto, pb.ArraySpec, spec)
    assert type(decoded_spec) is light.BoundedArraySpec, type(decoded_spec)
    assert decoded_spec == spec and decoded_spec.name == "action"
    assert decoded_spec.minimum.tolist() == -1.0 and decoded_spec.maximum.tolist() == [1.0, 2.0]
    plain = round_trip(wire.spec_to_proto, wire.spec_from_proto, pb.ArraySpec,
                       light.ArraySpec((), np.int8))
    assert type(plain) is light.ArraySpec and plain.name is None

    Pair = collections.namedtuple("Pair", "left right")
    nest = collections.OrderedDict([
        ("z", [light.TimeStep(np.int32(2), np.float32(1), np.float32(0), ()), None]),
        ("a", (Pair(np.uint8(1), {"k": np.zeros((0, 2), np.float16)}),)),
    ])
    decoded = round_trip(wire.nest_to_proto, wire.nest_from_proto, pb.Nest, nest)
    assert type(decoded) is collections.OrderedDict and list(decoded) == ["z", "a"]
    assert type(decoded["z"]) is list and type(decoded["z"][0]) is light.TimeStep
    assert type(decoded["a"]) is tuple and type(decoded["a"][0]).__name__ == "Pair"
    assert decoded["a"][0].right["k"].shape == (0, 2)

    # The stand-ins travel under TF-Agents' names, so a TensorFlow peer gets its own classes.
    results["wire_names"] = [
        wire.nest_to_proto(light.TimeStep(0, 0, 0, 0)).named_tuple.type_name,
        wire.nest_to_proto(light.PolicyStep(0, (), ())).named_tuple.type_name,
        wire.nest_to_proto(light.Trajectory(*[None] * 7)).named_tuple.type_name,
    ]

    # Messages a TensorFlow peer produced (hex on stdin) decode into the stand-ins.
    peer = json.loads(sys.stdin.read() or "{}")
    if "policy_specs" in peer:
        specs = wire.policy_specs_from_proto(
            pb.PolicySpecs.FromString(bytes.fromhex(peer["policy_specs"])))
        assert type(specs) is light.PolicySpecs
        assert type(specs.time_step_spec) is light.TimeStep
        assert type(specs.time_step_spec.discount) is light.BoundedArraySpec
        assert type(specs.collect_data_spec) is light.Trajectory
        results["peer_observation"] = repr(specs.time_step_spec.observation)

    results["attempts"] = list(attempts)
    results["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    try:
        import tensorflow  # noqa: F401  The blocker itself must work.
    except ImportError:
        results["blocker_works"] = True
    print(json.dumps(results))
''')


def _run(stdin: str = "") -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], input=stdin, capture_output=True,
                          text=True, cwd=REPO_ROOT, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_codec_round_trips_without_tensorflow() -> None:
    results = _run()
    assert results["attempts"] == []  # Not even tried: no import guarded by try/except.
    assert results["loaded"] == []
    assert results["blocker_works"] is True
    assert results["wire_names"] == [
        "tf_agents.trajectories.time_step.TimeStep",
        "tf_agents.trajectories.policy_step.PolicyStep",
        "tf_agents.trajectories.trajectory.Trajectory",
    ]


def test_specs_from_a_tensorflow_peer_decode_without_tensorflow() -> None:
    # pylint: disable=import-outside-toplevel
    import numpy as np

    from policy_client import wire
    from policy_client.wire import standins as light

    array_spec = pytest.importorskip("tf_agents.specs.array_spec")
    time_step = pytest.importorskip("tf_agents.trajectories.time_step")
    trajectory = pytest.importorskip("tf_agents.trajectories.trajectory")

    observation = {"pos": array_spec.BoundedArraySpec((4,), np.float32, -1.0, 1.0, "pos")}
    ts_spec = time_step.time_step_spec(observation)
    action = array_spec.BoundedArraySpec((), np.int64, 0, 1, "action")
    collect = trajectory.Trajectory(
        step_type=ts_spec.step_type, observation=observation, action=action, policy_info=(),
        next_step_type=ts_spec.step_type, reward=ts_spec.reward, discount=ts_spec.discount)
    msg = wire.policy_specs_to_proto(light.PolicySpecs(ts_spec, action, (), (), collect))
    results = _run(json.dumps({"policy_specs": msg.SerializeToString().hex()}))
    assert results["attempts"] == [] and results["loaded"] == []
    assert results["peer_observation"] == repr(
        {"pos": light.BoundedArraySpec((4,), np.float32, -1.0, 1.0, "pos")})
    assert results["peer_observation"] == repr(observation)
