"""buf keeps the wire contract clean and stable: lint (buf.yaml) and breaking checks against the v1 baseline.

The baseline (protos/baseline/tfa_policy_grpc.v1.binpb) is a buf image of the
published v1 protos. Each deliberate breaking edit below, made on a copy of
protos/, must fail `buf breaking`; additions must pass.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUF = pathlib.Path(sys.executable).parent / "buf"
BASELINE = ROOT / "protos" / "baseline" / "tfa_policy_grpc.v1.binpb"
SERVICE = "tfa_policy_grpc/v1/policy_service.proto"
TYPES = "tfa_policy_grpc/v1/types.proto"
STATUS = "google/rpc/status.proto"

pytestmark = pytest.mark.timeout(120)


def buf(*args: str, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
    if not BUF.exists():
        pytest.fail(f"{BUF} is missing: `make install` installs buf-bin (the dev extra)")
    return subprocess.run([str(BUF), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def lint(cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
    return buf("lint", cwd=cwd)


def breaking(cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
    return buf("breaking", "--against", str(BASELINE), cwd=cwd)


@pytest.fixture
def workspace(tmp_path: pathlib.Path):
    """A copy of buf.yaml and protos/ (without the baseline); returns edit(path, old, new)."""
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(ROOT / "protos", tmp_path / "protos", ignore=shutil.ignore_patterns("baseline"))

    def edit(path: str, old: str, new: str) -> pathlib.Path:
        file = tmp_path / "protos" / path
        text = file.read_text()
        assert text.count(old) == 1, f"{old!r} is not in {path} exactly once"
        file.write_text(text.replace(old, new))
        return tmp_path

    edit.root = tmp_path
    return edit


def test_the_protos_pass_lint():
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_protos_keep_the_v1_baseline():
    result = breaking()
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_baseline_holds_the_v1_files():
    files = buf("ls-files", str(BASELINE)).stdout.split()
    assert files == [STATUS.replace("status", "error_details"), STATUS, SERVICE, TYPES]


@pytest.mark.parametrize("path, old, new, message", [
    (SERVICE, "uint64 request_id = 6;", "uint64 request_id = 16;", 'field "6" with name "request_id"'),
    (SERVICE, "uint32 batch_size = 4;", "uint64 batch_size = 4;", 'changed type from "uint32" to "uint64"'),
    (TYPES, "string type_name = 1;", "string type = 1;", 'changed name from "type_name" to "type"'),
    (TYPES, "DTYPE_FLOAT32 = 12;", "DTYPE_FLOAT32 = 15;", 'enum value "12"'),
    (SERVICE, "  rpc GetStats(GetStatsRequest) returns (GetStatsResponse);\n", "", '"GetStats" on service'),
    (SERVICE, "rpc ActionStream(stream ActionRequest)", "rpc ActionStream(ActionRequest)", "client streaming"),
    (SERVICE, "optional int64 seed = 5;", "int64 seed = 5;", "changed cardinality"),
    (STATUS, "int32 code = 1;", "int64 code = 1;", 'changed type from "int32" to "int64"'),  # vendored, on the wire
], ids=["renumbered-field", "field-type", "renamed-field", "renumbered-enum-value", "removed-rpc",
        "streaming-changed", "seed-presence", "vendored-status-field-type"])
def test_a_breaking_edit_fails_the_check(workspace, path, old, new, message):
    result = breaking(workspace(path, old, new))
    assert result.returncode != 0, f"buf breaking accepted: {old!r} -> {new!r}"
    assert message in result.stdout, result.stdout + result.stderr


def test_additions_pass_both_checks(workspace):
    # Field number and names that no real edit of the protos will take (the largest number protobuf allows).
    workspace(SERVICE, "  uint64 request_id = 6;\n",
              "  uint64 request_id = 6;\n  // A new field takes a new number.\n  uint32 buf_probe = 536870911;\n")
    workspace(TYPES, "message NoneValue {}", "message NoneValue {}\n\n// New.\nmessage BufProbe {\n  string note = 1;\n}")
    for result in (lint(workspace.root), breaking(workspace.root)):
        assert result.returncode == 0, result.stdout + result.stderr


def test_lint_checks_our_files_and_skips_the_vendored_ones(workspace):
    workspace(STATUS, "message Status {", "message badly_named {}\n\nmessage Status {")
    assert lint(workspace.root).returncode == 0  # protos/google is third-party: not linted
    workspace(TYPES, "message NoneValue {}", "message NoneValue {}\n\nmessage badly_named {}")
    result = lint(workspace.root)
    assert result.returncode != 0 and "types.proto" in result.stdout and "badly_named" in result.stdout
    assert "status.proto" not in result.stdout
