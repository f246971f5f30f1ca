"""The Node.js client (examples/clients/node) against a live server: same answers as the Python client.

`make test` installs its packages first (`make node-client`: npm ci from the
committed package-lock.json).
"""

from __future__ import annotations

import shutil

import pytest

from policy_server.server import BackgroundServer
from tests.clients.balancing import BALANCING
from tests.clients.checks import (
    ROOT,
    check_against_python,
    check_both_actions,
    run_client,
    run_json,
)
from tests.support.fakes import EchoBackend

pytestmark = pytest.mark.timeout(180)

CLIENT_DIR = ROOT / "examples" / "clients" / "node"


@pytest.fixture(scope="module")
def node() -> list[str]:
    """The command that runs the client script (fails, with the fix, when Node or its packages are missing)."""
    executable = shutil.which("node")
    if executable is None:
        pytest.fail("node is not installed: the Node client needs Node.js >= 18 (and npm to install its packages)")
    if not (CLIENT_DIR / "node_modules" / ".installed").exists():
        pytest.fail("the Node client's packages are not installed: run `make node-client` (npm ci)")
    return [executable, str(CLIENT_DIR / "client.js")]


@pytest.mark.parametrize("seed", [0, 7])
def test_actions_and_errors_equal_the_python_clients(node, demo_server, seed):
    doc = run_json([*node, demo_server.address, "cartpole", "--seed", str(seed), "--batch", "16",
                    "--timeout", "20"])
    assert len(doc["batch"]["actions"]) == 16
    check_against_python(doc, demo_server.address, "cartpole")



@pytest.mark.parametrize("seed", [0, 7])
def test_stream_actions_of_both_values_equal_the_python_clients(node, demo_server, seed):
    doc = run_json([*node, demo_server.address, BALANCING, "--seed", str(seed), "--batch", "16", "--timeout", "20"])
    check_both_actions(doc)
    check_against_python(doc, demo_server.address, BALANCING)

def test_default_run_prints_policies_specs_episode_batch_and_errors(node, demo_server):
    out = run_client([*node, demo_server.address, "--timeout", "20"]).stdout
    for expected in ("policies at ", "  cartpole: version 0, backend tf_eager, stateless",
                     "specs of 'cartpole' (version 0):", "float32(4,) 'observation' min [-4.8,",
                     "int64() 'action' in [0, 1]", "episode over ActionStream: ",
                     "answered with ActionResponse.error:", "unary Action with a batch of 8: actions [",
                     "fails with grpc-status-details-bin:",
                     "INVALID_ARGUMENT: time_step.observation: expected shape (4,) and dtype float32, got shape (3,)",
                     "field time_step.observation: ", "reason SpecMismatchError (domain tfa-policy-grpc)"):
        assert expected in out



def test_the_readmes_example_output_is_what_it_prints(node, demo_server):
    readme = (CLIENT_DIR / "README.md").read_text()
    example = readme.split("```text\n", 1)[1].split("```", 1)[0]
    out = run_client([*node, demo_server.address]).stdout
    printed = [line for line in out.splitlines() if not line.startswith(f"  {BALANCING}:")]  # not a demo policy
    assert printed == example.replace("127.0.0.1:50051", demo_server.address).splitlines()

def test_the_collect_policy_runs_too(node, demo_server):
    doc = run_json([*node, demo_server.address, "cartpole_collect", "--timeout", "20"])
    assert doc["policy"] == "cartpole_collect" and set(doc["episode"]["actions"]) <= {0, 1}


def test_an_unknown_policy_is_a_clear_error(node, demo_server):
    result = run_client([*node, demo_server.address, "nope", "--timeout", "20"], expect_ok=False)
    assert result.returncode == 1
    assert "error: NOT_FOUND: no policy named 'nope'" in result.stderr
    assert "field policy: " in result.stderr


def test_no_server_is_a_clear_error_within_the_timeout(node):
    result = run_client([*node, "127.0.0.1:1", "--timeout", "1"], expect_ok=False)
    assert result.returncode == 1
    assert "no policy server reachable at" in result.stderr


def test_bad_arguments_print_the_usage(node):
    result = run_client([*node], expect_ok=False)
    assert result.returncode == 2 and "usage: node client.js ADDRESS [POLICY]" in result.stderr


@pytest.mark.parametrize("stateful, message", [
    (True, "policy 'echo' is stateful: this example sends no policy state"),
    (False, "it needs a float observation of shape (4,), the policy wants float32(3,) 'observation'"),
])
def test_a_policy_it_cannot_drive_is_refused_before_any_action(node, stateful, message):
    with BackgroundServer({"echo": EchoBackend(stateful=stateful)}) as server:
        result = run_client([*node, server.address, "--timeout", "20"], expect_ok=False)
    assert result.returncode == 1 and message in result.stderr
