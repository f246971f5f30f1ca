"""`policy-client`: every verb against a real server, TLS and tokens, files in and out, no TensorFlow."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from policy_client.cli import command as cli
from policy_server.security import TokenAuth, server_credentials
from tests.operations.processes import ROOT
from tests.security.certs import make_certs
from tests.support.fakes import EchoBackend

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server(servers):
    """'echo' (stateful, the default) and 'plain' (stateless)."""
    return servers.serve({"echo": EchoBackend(), "plain": EchoBackend(stateful=False)})


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `policy-client ARGV`."""
    try:
        code = cli.main(list(argv))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str):
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_list(capsys, server):
    code, out, _ = run(capsys, "list", server.address)
    assert code == 0
    assert out.splitlines()[0].split() == ["POLICY", "VERSION", "BACKEND", "STATEFUL"]
    assert out.splitlines()[1].split() == ["echo", "(default)", "0", "echo", "yes"]
    assert run_json(capsys, "list", server.address)["policies"][1] == {
        "name": "plain", "version": 0, "backend": "echo", "stateful": False}


def test_specs_are_nested_with_bounds(capsys, server):
    code, out, _ = run(capsys, "specs", f"grpc://{server.address}/echo")
    assert code == 0
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert lines[0] == "policy 'echo' (echo, version 0)"
    assert "discount float32 () [0, 1]" in lines and "observation float32 (3,)" in lines
    assert "action_spec: float32 (3,) [-1e+09, 1e+09] name='action'" in lines
    assert "['count'] int64 ()" in lines
    found = run_json(capsys, "specs", server.address, "--policy", "plain")
    assert found["policy"] == "plain" and found["policy_state_spec"] == []
    assert found["time_step_spec"]["discount"] == {"name": "discount", "dtype": "float32", "shape": [],
                                                   "minimum": 0.0, "maximum": 1.0}


def test_act_with_random_time_steps_carries_the_state(capsys, server):
    found = run_json(capsys, "act", server.address, "--steps", "3", "--seed", "1")
    steps = found["steps"]
    assert [s["state"]["count"] for s in steps] == [1, 2, 3]
    for step in steps:  # the echo policy: 2 * observation + version (0)
        np.testing.assert_allclose(step["action"], 2 * np.array(step["observation"], np.float32), rtol=1e-6)
    again = run_json(capsys, "act", server.address, "--steps", "3", "--seed", "1")
    assert again["steps"] == steps  # the same seed, the same time steps and answers
    seeded = run_json(capsys, "act", server.address, "--steps", "2", "--seed", "1", "--request-seed", "10")
    for i, step in enumerate(seeded["steps"]):  # the echo policy adds the request's seed
        np.testing.assert_allclose(step["action"], 2 * np.array(step["observation"], np.float32) + 10 + i, rtol=1e-6)
    code, out, _ = run(capsys, "act", server.address, "--policy", "plain", "--batch", "4")
    assert code == 0 and "step 1 (version 0, batch of 4):" in out and "action: float32  (4, 3)" in out


def test_act_with_values_from_json_and_npz_files(capsys, server, tmp_path):
    (tmp_path / "step.json").write_text(json.dumps({"observation": [1, 2, 3], "step_type": 1}))
    found = run_json(capsys, "act", server.address, "--input", str(tmp_path / "step.json"))
    assert found["steps"][0]["action"] == [2.0, 4.0, 6.0]
    np.savez(tmp_path / "batch.npz", observation=np.ones((2, 3), np.float32), reward=np.zeros(2, np.float32))
    found = run_json(capsys, "act", server.address, "--policy", "plain", "--input", str(tmp_path / "batch.npz"))
    assert found["steps"][0]["action"] == [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]
    (tmp_path / "bad.json").write_text(json.dumps({"observation": [1, 2]}))
    code, _, err = run(capsys, "act", server.address, "--input", str(tmp_path / "bad.json"))
    assert code == 2 and "observation: shape (2,) does not fit the spec's (3,)" in err
    (tmp_path / "extra.json").write_text(json.dumps({"observation": [1, 2, 3], "obs": 1}))
    code, _, err = run(capsys, "act", server.address, "--input", str(tmp_path / "extra.json"))
    assert code == 2 and "unknown fields ['obs']" in err


def test_stats(capsys, server):
    run_json(capsys, "act", server.address, "--steps", "2")
    code, out, _ = run(capsys, "stats", server.address, "--policy", "echo")
    assert code == 0 and out.splitlines()[0].split()[:3] == ["POLICY", "VERSION", "REQUESTS"]
    assert out.splitlines()[1].split()[:3] == ["echo", "0", "2"]
    assert [p["policy"] for p in run_json(capsys, "stats", server.address)["policies"]] == ["echo", "plain"]


def test_pull_then_push_variables(capsys, server, tmp_path):
    target = tmp_path / "weights.npz"
    found = run_json(capsys, "pull", server.address, "--policy", "echo", "-o", str(target))
    assert found["variables"] == [{"key": "echo/bias:0", "name": "echo/bias:0", "dtype": "float32", "shape": []}]
    with np.load(target) as data:
        assert list(data.files) == ["echo/bias:0"] and data["echo/bias:0"] == 0
    np.savez(target, **{"echo/bias:0": np.float32(5)})
    code, out, _ = run(capsys, "push", server.address, str(target), "--policy", "echo", "--version", "12")
    assert code == 0 and out.strip() == f"pushed 1 variables (4 bytes) from {target}; serving version 12"
    found = run_json(capsys, "act", server.address, "--input", str(_write_json(tmp_path, [0, 0, 0])))
    assert found["steps"][0]["version"] == 12 and found["steps"][0]["action"] == [5.0, 5.0, 5.0]
    code, _, err = run(capsys, "push", server.address, str(target), "--policy", "echo", "--version", "3")
    assert code == 1 and err.startswith("policy-client: FAILED_PRECONDITION: version 3 is older")


def _write_json(tmp_path, observation):
    path = tmp_path / "zero.json"
    path.write_text(json.dumps({"observation": observation}))
    return path


def test_errors_and_exit_codes(capsys, server):
    code, _, err = run(capsys, "specs", server.address, "--policy", "nope")
    assert code == 1 and err.startswith("policy-client: NOT_FOUND: no policy named 'nope'")
    code, _, err = run(capsys, "list", server.address, "--token", "abc")
    assert code == 2 and "a token never goes on the command line" in err
    code, _, err = run(capsys, "list", "grpc://127.0.0.1:1/x?token=abc")
    assert code == 2 and "a token never goes in a URI" in err
    code, _, err = run(capsys, "list", f"grpc://{server.address}", "--ca", "ca.pem")
    assert code == 2 and "grpc:// is plaintext" in err
    code, _, err = run(capsys, "push", server.address, "/no/such.npz", "--version", "1")
    assert code == 2 and "no such file" in err


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_tls_mtls_and_tokens(capsys, servers, certs, tmp_path):
    actor, learner = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    for name, token in (("actor", actor), ("learner", learner)):
        (tmp_path / name).write_text(token + "\n")
    server = servers.serve({"echo": EchoBackend()}, auth=TokenAuth({"actor": actor, "learner": learner}),
                           credentials=server_credentials(str(certs.server_cert), str(certs.server_key),
                                                          str(certs.ca)))
    uri = f"grpcs://localhost:{server.port}/echo?ca={certs.ca}&cert={certs.client_cert}&key={certs.client_key}"
    assert run_json(capsys, "list", uri, "--token-file", str(tmp_path / "actor"))["policies"][0]["name"] == "echo"
    flags = ["--ca", str(certs.ca), "--cert", str(certs.client_cert), "--key", str(certs.client_key),
             "--server-name", "policy.test"]
    found = run_json(capsys, "act", f"127.0.0.1:{server.port}", *flags, "--token-file", str(tmp_path / "actor"))
    assert found["steps"][0]["version"] == 0
    code, _, err = run(capsys, "pull", uri, "-o", str(tmp_path / "w.npz"), "--token-file", str(tmp_path / "actor"))
    assert code == 1 and "PERMISSION_DENIED" in err  # variables need the learner role
    code, _, err = run(capsys, "pull", uri, "-o", str(tmp_path / "w.npz"), "--token-file", str(tmp_path / "learner"))
    assert code == 0, err
    code, _, err = run(capsys, "list", uri)
    assert code == 1 and "UNAUTHENTICATED" in err
    for token in (actor, learner):
        assert token not in err


def test_the_cli_imports_no_tensorflow(server):
    check = ("import sys\nfrom policy_client import cli\n"
             f"code = cli.main(['act', {server.address!r}, '--json'])\n"
             "assert code == 0, code\n"
             "assert 'tensorflow' not in sys.modules and 'tf_agents' not in sys.modules, 'TensorFlow was imported'\n")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["steps"][0]["state"] == {"count": 1}


def test_the_console_script(server):
    script = Path(sys.executable).parent / "policy-client"  # installed by pyproject.toml's [project.scripts]
    result = subprocess.run([str(script), "list", server.address], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].split()[0] == "echo"
