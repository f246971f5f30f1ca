"""Clients built from the oldest supported v1 protos (tests/clients/oldest_v1) work against today's server.

The Node example client generates its code at run time from the folder it is
given (`--protos`); the C++ one at build time (`-DPROTOS_DIR`). Both, built
from the first published v1, must give the Python client's answers and
errors: the wire promise of docs/protocol.md, kept by a client that was never
rebuilt. The C++ build is slow (`make test-all`) and needs its toolchain
(skipped without it, with the command that installs it).
"""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from tests.clients import test_cpp_client, test_node_client
from tests.clients.balancing import BALANCING
from tests.clients.checks import ROOT, check_against_python, check_both_actions, run_json

OLDEST = ROOT / "tests" / "clients" / "oldest_v1"
CURRENT = ROOT / "protos"
FILES = ("tfa_policy_grpc/v1/policy_service.proto", "tfa_policy_grpc/v1/types.proto", "google/rpc/status.proto",
         "google/rpc/error_details.proto")

node = test_node_client.node  # the fixture: the Node client's command


def test_the_oldest_protos_are_older_than_todays():
    """The folder holds what the clients read, and today's protos have grown since (else the test proves little)."""
    for name in FILES:
        assert (OLDEST / name).is_file(), name
    assert not (OLDEST / "tfa_policy_grpc/v1/shared_memory.proto").exists()
    old = (OLDEST / "tfa_policy_grpc/v1/policy_service.proto").read_text()
    new = (CURRENT / "tfa_policy_grpc/v1/policy_service.proto").read_text()
    for added in ("min_version", "Session session"):
        assert added in new and added not in old, added


@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", [0, 7])
def test_the_node_client_from_the_oldest_protos_answers_as_python(node, demo_server, seed):
    doc = run_json([*node, demo_server.address, "cartpole", "--seed", str(seed), "--batch", "16", "--timeout",
                    "20", "--protos", str(OLDEST)])
    assert len(doc["batch"]["actions"]) == 16
    check_against_python(doc, demo_server.address, "cartpole")
    doc = run_json([*node, demo_server.address, BALANCING, "--seed", str(seed), "--batch", "16", "--timeout", "20",
                    "--protos", str(OLDEST)])
    check_both_actions(doc)
    check_against_python(doc, demo_server.address, BALANCING)


@pytest.fixture(scope="module")
def cpp_client_oldest(tmp_path_factory) -> list[str]:
    """The C++ client built from the oldest protos (skips without the toolchain)."""
    missing = test_cpp_client.missing_toolchain()
    if missing:
        pytest.skip(f"C++ toolchain missing ({', '.join(missing)}); install it with: {test_cpp_client.apt_install()}")
    build_dir = tmp_path_factory.mktemp("cpp-oldest")
    source = ROOT / "examples" / "clients" / "cpp"
    for command in (["cmake", "-S", str(source), "-B", str(build_dir), f"-DPROTOS_DIR={OLDEST}"],
                    ["cmake", "--build", str(build_dir), "-j2"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=test_cpp_client.BUILD_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
        assert done.returncode == 0, f"{command} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return [str(pathlib.Path(build_dir) / "client")]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", [0, 7])
def test_the_cpp_client_from_the_oldest_protos_answers_as_python(cpp_client_oldest, demo_server, seed):
    doc = run_json([*cpp_client_oldest, demo_server.address, "cartpole", "--seed", str(seed), "--batch", "16",
                    "--timeout", "20"])
    check_against_python(doc, demo_server.address, "cartpole")
    doc = run_json([*cpp_client_oldest, demo_server.address, BALANCING, "--seed", str(seed), "--batch", "16",
                    "--timeout", "20"])
    check_both_actions(doc)
    check_against_python(doc, demo_server.address, BALANCING)
