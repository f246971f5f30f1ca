"""The C++ client (examples/clients/cpp) built with `make cpp-client` and run against a live server.

Slow (the build takes a minute on two cores): `make test-all`. Skipped, with
the command that installs it, where the toolchain (CMake, a C++ compiler,
pkg-config, the system gRPC and protobuf) is missing.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.clients.checks import ROOT, check_against_python, run_client, run_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

APT_INSTALL = ("apt-get install -y cmake g++ make pkg-config libgrpc++-dev protobuf-compiler-grpc "
               "libprotobuf-dev protobuf-compiler")
BINARY = ROOT / "examples" / "clients" / "cpp" / "build" / "client"
BUILD_TIMEOUT = 600.0


def missing_toolchain() -> list[str]:
    """What of the C++ client's toolchain this machine lacks."""
    missing = [tool for tool in ("cmake", "make", "c++", "pkg-config", "protoc", "grpc_cpp_plugin")
               if shutil.which(tool) is None]
    if "pkg-config" not in missing:
        for module in ("grpc++", "protobuf"):
            if subprocess.run(["pkg-config", "--exists", module], check=False).returncode != 0:
                missing.append(f"{module} (pkg-config)")
    return missing


@pytest.fixture(scope="module")
def cpp_client() -> list[str]:
    """The built client (skips without the toolchain)."""
    missing = missing_toolchain()
    if missing:
        pytest.skip(f"C++ toolchain missing ({', '.join(missing)}); install it with: {APT_INSTALL}")
    build = subprocess.run(["make", "--no-print-directory", "cpp-client"], cwd=ROOT, capture_output=True,
                           text=True, timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL)
    assert build.returncode == 0, f"make cpp-client failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    return [str(BINARY)]


@pytest.mark.parametrize("seed", [0, 7])
def test_actions_and_errors_equal_the_python_clients(cpp_client, demo_server, seed):
    doc = run_json([*cpp_client, demo_server.address, "cartpole", "--seed", str(seed), "--batch", "16",
                    "--timeout", "20"])
    assert len(doc["batch"]["actions"]) == 16
    check_against_python(doc, demo_server.address, "cartpole")


def test_default_run_prints_policies_specs_episode_batch_and_errors(cpp_client, demo_server):
    out = run_client([*cpp_client, demo_server.address, "--timeout", "20"]).stdout
    for expected in ("  cartpole: version 0, backend tf_eager, stateless", "specs of 'cartpole' (version 0):",
                     "int64() 'action' in [0, 1]", "episode over ActionStream: ",
                     "answered with ActionResponse.error:", "unary Action with a batch of 8: actions [",
                     "fails with grpc-status-details-bin:", "field time_step.observation: ",
                     "reason SpecMismatchError (domain tfa-policy-grpc)"):
        assert expected in out


def test_an_unknown_policy_is_a_clear_error(cpp_client, demo_server):
    result = run_client([*cpp_client, demo_server.address, "nope", "--timeout", "20"], expect_ok=False)
    assert result.returncode == 1
    assert "error: NOT_FOUND: no policy named 'nope'" in result.stderr and "field policy: " in result.stderr
