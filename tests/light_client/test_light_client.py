"""The TF-free client distribution (client/), installed alone, against a server on the pinned TF stack.

`make test` builds three virtualenvs first (`make light-client`), each with
only `pip install ./client` and the pins of tests/light_client/requirements-*.txt:
the oldest end of its ranges (Python 3.10, numpy 1.22, protobuf 4.25, grpcio
1.62), Python 3.13 with numpy 2 and protobuf 6, and Python 3.12 with the
newest protobuf (7). In each, tests/light_client/scenario.py plays a CartPole
episode over gRPC and over shared memory, a batch, seeded calls, a recurrent
policy (server-held session and client-held state), a weight push and bad
inputs, against a server started here; the answers must equal the local
policies' (and the main virtualenv's client, for seeds, errors and bytes).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tf_agents.policies import py_tf_eager_policy
from tf_agents.trajectories import time_step as ts

from policy_client import PolicyClient
from policy_client.wire.standins import TimeStep
from policy_server import EagerBackend
from policy_server.server import BackgroundServer
from tests.light_client import scenario
from tests.oip.conftest import rnn_policy  # noqa: F401  (the recurrent CartPole policy fixture)
from tests.support.fakes import EchoBackend

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
ENDS = {"oldest": ("3.10", "1.22.4", "4.25.3"), "protobuf6": ("3.13", "2.5.5", "6.33.6"),
        "newest": ("3.12", "2.5.5", "7.36.2")}


@pytest.fixture(scope="module")
def cartpole():
    """The greedy and the epsilon-greedy demo CartPole policies (TF), built once."""
    from examples.cartpole import cartpole_collect_policy, cartpole_q_policy  # pylint: disable=import-outside-toplevel

    return cartpole_q_policy(seed=0), cartpole_collect_policy(seed=0)


def _python(end: str) -> Path:
    python = ROOT / f".venv-client-{end}" / "bin" / "python"
    if not (python.parent.parent / ".client").exists():
        pytest.fail(f"{python.parent.parent.name} is missing: run `make light-client` (make test does)")
    return python


def _same_files(installed: Path) -> None:
    """The installed package is today's policy_client/, file for file (else run `make light-client`)."""
    ours = {p.relative_to(ROOT / "policy_client"): p.read_bytes() for p in (ROOT / "policy_client").rglob("*.py")}
    theirs = {p.relative_to(installed): p.read_bytes() for p in installed.rglob("*.py")}
    stale = sorted(str(name) for name in ours if theirs.get(name) != ours[name])
    assert not stale and set(theirs) == set(ours), f"stale install (run `make light-client`): {stale[:5]}"


@pytest.mark.parametrize("end", list(ENDS))
def test_the_client_distribution_alone_acts_as_the_local_policies(end, cartpole, rnn_policy):  # noqa: F811
    python = _python(end)
    greedy, collect = cartpole
    with BackgroundServer({"cartpole": EagerBackend(greedy), "cartpole_collect": EagerBackend(collect),
                           "rnn": EagerBackend(rnn_policy), "echo": EchoBackend()}) as server:
        done = subprocess.run([str(python), str(ROOT / "tests" / "light_client" / "scenario.py"), server.address],
                              capture_output=True, text=True, timeout=240, cwd="/", stdin=subprocess.DEVNULL,
                              check=False)
        assert done.returncode == 0, done.stderr[-4000:]
        doc = json.loads(done.stdout)
        with PolicyClient(server.address, "cartpole_collect", timeout=30) as main_client:
            seeded = _seeded_here(main_client, doc["seeds"])
        here_errors = _errors_here(server.address)

    python_version, numpy_version, protobuf_version = ENDS[end]
    versions = doc["versions"]
    assert versions["python"].startswith(python_version + ".")
    assert (versions["numpy"], versions["protobuf"]) == (numpy_version, protobuf_version), versions
    assert doc["policy_client"].startswith(str(python.parent.parent)), "the client came from the venv's install"
    _same_files(Path(doc["policy_client"]).parent)
    assert doc["tensorflow"] is False, "the venv holds no TensorFlow"

    local = py_tf_eager_policy.PyTFEagerPolicy(greedy)
    for plane in ("grpc", "shm"):
        episode = doc[f"{plane}_episode"]
        observations = np.array(episode["observations"], np.float32)
        assert len(observations) >= 8 and episode["planes"] == [plane], episode["planes"]
        np.testing.assert_array_equal(episode["actions"], _greedy_actions(local, observations))
    batch = np.array(doc["batch"]["observations"], np.float32)
    np.testing.assert_array_equal(doc["batch"]["actions"], _greedy_actions(local, batch))

    assert doc["seeds"]["actions"] == seeded
    assert all(len(set(actions)) == 1 for actions in seeded.values()), "a seed gives one answer"
    assert {a[0] for a in seeded.values()} == {0, 1}, "the seeds matter (both actions among 64 seeds)"

    expected, fresh = _recurrent_here(rnn_policy, np.array(doc["recurrent"]["observations"], np.float32))
    assert doc["recurrent"]["session"] == expected == doc["recurrent"]["client_state"]
    assert expected != fresh, "the state mattered"

    assert doc["push"] == {"pushed_version": 7, "action": [2.5, 4.5, 6.5], "version": 7}
    string_dtype = doc["errors"].pop("string_dtype", None)
    assert doc["errors"] == here_errors
    if numpy_version.startswith("2."):
        assert string_dtype["type"] in ("CodecError", "SpecMismatchError", "InvalidArgumentError"), string_dtype
        assert "StringDType" in string_dtype["message"] and ".astype(str)" in string_dtype["message"], string_dtype
    assert doc["errors"]["wrong_shape"]["value_error"] and doc["errors"]["wrong_shape"]["field"] == \
        "time_step.observation"
    assert doc["errors"]["unknown_policy"]["type"] == "PolicyNotFoundError"
    assert doc["golden"] == scenario.golden(), "the same wire bytes on both numpy versions"


def _greedy_actions(local, observations: np.ndarray) -> list[int]:
    n = len(observations)
    step = ts.TimeStep(np.full(n, ts.StepType.MID, np.int32), np.ones(n, np.float32), np.ones(n, np.float32),
                       observations)
    return np.asarray(local.action(step).action).tolist()


def _seeded_here(client: PolicyClient, seeds: dict) -> dict:
    step = TimeStep(np.int32(1), np.float32(1), np.float32(1), np.array(seeds["observation"], np.float32))
    return {seed: [int(client.action(step, seed=int(seed)).policy_step.action) for _ in range(2)]
            for seed in seeds["actions"]}


def _recurrent_here(policy, observations: np.ndarray) -> tuple[list[int], list[int]]:
    local = py_tf_eager_policy.PyTFEagerPolicy(policy)
    state, actions, fresh = local.get_initial_state(1), [], []
    for i, observation in enumerate(observations):
        step = ts.TimeStep(np.int32(0 if i == 0 else 1), np.float32(0 if i == 0 else 1), np.float32(1), observation)
        result = local.action(step, state)
        actions.append(int(result.action))
        fresh.append(int(local.action(step, local.get_initial_state(1)).action))
        state = result.state
    return actions, fresh


def _errors_here(address: str) -> dict:
    """What the main venv's PolicyClient raises for the scenario's bad inputs."""
    return scenario.bad_inputs(address)


def test_the_gymnasium_example_runs_on_python_3_13_with_numpy_2(cartpole):
    """docs/light-client.md's example, as printed there, in the venv with Gymnasium 1.x and numpy 2."""
    python = _python("protobuf6")
    example = ROOT / "examples" / "gymnasium_client.py"
    code = [line for line in example.read_text().splitlines() if line and not line.startswith((" ", '"""', "#"))]
    lines = [line for line in example.read_text().split('"""', 2)[2].splitlines() if line.strip()]
    assert len(lines) <= 15, "a 15-line example"
    assert "import gymnasium as gym" in code
    with BackgroundServer({"cartpole": EagerBackend(cartpole[0])}) as server:
        done = subprocess.run([str(python), str(example), server.address], capture_output=True, text=True,
                              timeout=120, cwd="/", stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    total, plane = done.stdout.split()[1], done.stdout.split()[-1]
    assert int(total) >= 8 and plane == "shm", done.stdout
    assert "{{snippet}}" not in (ROOT / "docs" / "light-client.md").read_text()
    assert example.read_text().split('"""', 2)[2].strip() in (ROOT / "docs" / "light-client.md").read_text()


@pytest.mark.parametrize("end", list(ENDS))
def test_the_golden_bytes_test_passes_on_every_end(end, tmp_path):
    """tests/policy_client/test_codec_golden.py (the wire format, literal bytes; TF-free) on numpy 1 and 2 and
    protobuf 4.25 to 7, against the venv's installed client (a copy of the file, away from this checkout)."""
    python = _python(end)
    copy = tmp_path / "test_codec_golden.py"
    copy.write_text((ROOT / "tests" / "policy_client" / "test_codec_golden.py").read_text())
    done = subprocess.run([str(python), "-m", "pytest", "-q", "--noconftest", "-c", "/dev/null", "-p",
                           "no:cacheprovider", str(copy)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout[-500:]


def test_the_scenario_imports_nothing_of_tensorflow_or_the_tests():
    source = (ROOT / "tests" / "light_client" / "scenario.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert not [line for line in imports if "tensorflow" in line or "tf_agents" in line or "tests" in line]


def test_the_client_distribution_holds_the_client_package_and_its_ranges():
    import tomllib  # pylint: disable=import-outside-toplevel

    project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    assert project["name"] == "tfa-policy-grpc-client" and project["requires-python"] == ">=3.10"
    main = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["version"] == main["version"]
    deps = {d.split(">")[0].split("=")[0].split("<")[0]: d for d in project["dependencies"]}
    assert deps["numpy"] == "numpy>=1.22,<3" and deps["protobuf"] == "protobuf>=4.25.3,<8"
    assert not any("==" in d for d in project["dependencies"]), "ranges, not pins"
    link = ROOT / "client" / "policy_client"
    assert link.is_symlink() and link.resolve() == (ROOT / "policy_client").resolve()
    assert sys.version_info[:2] == (3, 11)  # the main venv: the pinned TF stack, unchanged
