"""The C++ client (examples/clients/cpp) built with `make cpp-client` and run against a live server.

Slow (the build takes a minute on two cores): `make test-all`. Skipped, with
the command that installs it, where the toolchain (CMake, a C++ compiler,
pkg-config, the system gRPC and protobuf) is missing.

The build goes to a temporary directory, not into the source tree; with
CPP_BUILD set (`make test-all CPP_BUILD=/some/dir`, as `make cpp-client`
reads it) it goes there instead, and a second run rebuilds only what changed.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from tests.clients.balancing import BALANCING
from tests.clients.checks import (
    ROOT,
    check_against_python,
    check_both_actions,
    run_client,
    run_json,
)

pytestmark = pytest.mark.timeout(900)
slow = pytest.mark.slow

README = ROOT / "examples" / "clients" / "cpp" / "README.md"
BUILD_TIMEOUT = 600.0


def apt_install() -> str:
    """The README's command that installs the toolchain (without its trailing comment)."""
    lines = [line for line in README.read_text().splitlines() if line.startswith("apt-get update && apt-get install")]
    assert len(lines) == 1, f"{README} should give the install command on one line, starting with `apt-get update &&`"
    return lines[0].split("#", 1)[0].strip()


def missing_toolchain() -> list[str]:
    """What of the C++ client's toolchain this machine lacks."""
    missing = [tool for tool in ("cmake", "make", "c++", "pkg-config", "protoc", "grpc_cpp_plugin")
               if shutil.which(tool) is None]
    if "pkg-config" not in missing:
        for module in ("grpc++", "protobuf"):
            if subprocess.run(["pkg-config", "--exists", module], check=False).returncode != 0:
                missing.append(f"{module} (pkg-config)")
    return missing


def test_the_skip_message_installs_what_the_build_needs():
    command = apt_install()
    assert command.startswith("apt-get update && apt-get install -y ")
    packages = set(command.split("install -y ", 1)[1].split())
    assert {"cmake", "g++", "make", "pkg-config", "libgrpc++-dev", "protobuf-compiler-grpc", "libprotobuf-dev",
            "protobuf-compiler"} <= packages


@pytest.fixture(scope="module")
def cpp_client(tmp_path_factory) -> list[str]:
    """The built client (skips without the toolchain)."""
    missing = missing_toolchain()
    if missing:
        pytest.skip(f"C++ toolchain missing ({', '.join(missing)}); install it with: {apt_install()}")
    build_dir = ROOT / os.environ["CPP_BUILD"] if os.environ.get("CPP_BUILD") else tmp_path_factory.mktemp("cpp")
    build = subprocess.run(["make", "--no-print-directory", "cpp-client", f"CPP_BUILD={build_dir}"], cwd=ROOT,
                           capture_output=True, text=True, timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    assert build.returncode == 0, f"make cpp-client failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
    return [str(pathlib.Path(build_dir) / "client")]


@slow
@pytest.mark.parametrize("seed", [0, 7])
def test_actions_and_errors_equal_the_python_clients(cpp_client, demo_server, seed):
    doc = run_json([*cpp_client, demo_server.address, "cartpole", "--seed", str(seed), "--batch", "16",
                    "--timeout", "20"])
    assert len(doc["batch"]["actions"]) == 16
    check_against_python(doc, demo_server.address, "cartpole")


@slow
@pytest.mark.parametrize("seed", [0, 7])
def test_stream_actions_of_both_values_equal_the_python_clients(cpp_client, demo_server, seed):
    doc = run_json([*cpp_client, demo_server.address, BALANCING, "--seed", str(seed), "--batch", "16",
                    "--timeout", "20"])
    check_both_actions(doc)
    check_against_python(doc, demo_server.address, BALANCING)


@slow
def test_default_run_prints_policies_specs_episode_batch_and_errors(cpp_client, demo_server):
    out = run_client([*cpp_client, demo_server.address, "--timeout", "20"]).stdout
    for expected in ("  cartpole: version 0, backend tf_eager, stateless", "specs of 'cartpole' (version 0):",
                     "int64() 'action' in [0, 1]", "episode over ActionStream: ",
                     "answered with ActionResponse.error:", "unary Action with a batch of 8: actions [",
                     "fails with grpc-status-details-bin:", "field time_step.observation: ",
                     "reason SpecMismatchError (domain tfa-policy-grpc)"):
        assert expected in out


@slow
def test_an_unknown_policy_is_a_clear_error(cpp_client, demo_server):
    result = run_client([*cpp_client, demo_server.address, "nope", "--timeout", "20"], expect_ok=False)
    assert result.returncode == 1
    assert "error: NOT_FOUND: no policy named 'nope'" in result.stderr and "field policy: " in result.stderr
