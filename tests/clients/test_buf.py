"""buf keeps the wire contract clean and stable: lint (buf.yaml) and breaking checks against the v1 baseline.

The baseline (protos/baseline/tfa_policy_grpc.v1.binpb, see its README) is a
buf image of the published protos: the tfa_policy_grpc.v1 package, the
vendored google/rpc files it uses and the vendored Open Inference Protocol.
Each deliberate breaking edit below, made on a copy of protos/, must fail
`buf breaking`; additions must pass it. And the baseline must be current: an
addition to protos/ that the baseline lacks fails here until it is refreshed.
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
OLDEST = ROOT / "tests" / "clients" / "oldest_v1"  # the first published v1, verbatim (its README)
SERVICE = "tfa_policy_grpc/v1/policy_service.proto"
TYPES = "tfa_policy_grpc/v1/types.proto"
SHARED_MEMORY = "tfa_policy_grpc/v1/shared_memory.proto"
STATUS = "google/rpc/status.proto"
ERROR_DETAILS = "google/rpc/error_details.proto"
OIP = "inference/grpc_predict_v2.proto"
TRITON = "inference/triton_streaming.proto"
# What the baseline holds (the --path arguments of its build), and the one command that builds it.
SCOPE = ("protos/tfa_policy_grpc/v1", "protos/google/rpc", "protos/inference")
BUILD = ("build", "--exclude-source-info", *(arg for path in SCOPE for arg in ("--path", path)), "-o")
REFRESH = " ".join((".venv/bin/buf", *BUILD, str(BASELINE.relative_to(ROOT))))

pytestmark = pytest.mark.timeout(120)


def buf(*args: str, cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
    if not BUF.exists():
        pytest.fail(f"{BUF} is missing: `make install` installs buf-bin (the dev extra)")
    return subprocess.run([str(BUF), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


def lint(cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
    return buf("lint", cwd=cwd)


def breaking(cwd: pathlib.Path = ROOT) -> subprocess.CompletedProcess:
    return buf("breaking", "--against", str(BASELINE), cwd=cwd)


def additions(cwd: pathlib.Path, image: pathlib.Path) -> subprocess.CompletedProcess:
    """What protos/ (at cwd) has and the baseline lacks: buf breaking the other way round.

    The protos are built into `image` with the baseline's own command; checked
    against it, the baseline "deletes" every file, message, field, enum value
    and RPC added since it was taken, and each deletion is reported.
    """
    built = buf(*BUILD, str(image), cwd=cwd)
    assert built.returncode == 0, built.stdout + built.stderr
    return buf("breaking", str(BASELINE), "--against", str(image), cwd=cwd)


def stale_baseline_message(result: subprocess.CompletedProcess) -> str:
    return (f"protos/ has additions that {BASELINE.relative_to(ROOT)} lacks (each is listed below as "
            "'deleted': the check runs from the baseline to the current protos).\n"
            "Additions are published by the change that makes them: refresh the baseline in that change, "
            "from the repository root, with\n"
            f"    {REFRESH}\n"
            "(see protos/baseline/README.md). Never refresh to accept an edit that `buf breaking` refuses: "
            "that edit belongs in a new v2 package.\n\n"
            + result.stdout + result.stderr)


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


def add_a_field_and_a_message(edit) -> None:
    """Additions to the workspace's v1 protos: a field ActionRequest.buf_probe and a message BufProbe.

    A field number and names that no real edit of the protos will take (the largest number protobuf allows).
    """
    edit(SERVICE, "  uint64 request_id = 6;\n",
         "  uint64 request_id = 6;\n  // A new field takes a new number.\n  uint32 buf_probe = 536870911;\n")
    edit(TYPES, "message NoneValue {}", "message NoneValue {}\n\n// New.\nmessage BufProbe {\n  string note = 1;\n}")


def test_the_protos_pass_lint():
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_protos_keep_the_v1_baseline():
    result = breaking()
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_protos_keep_the_oldest_published_v1():
    """The second baseline: the first published v1, verbatim (tests/clients/oldest_v1), with the FILE rules."""
    result = buf("breaking", "--against", str(OLDEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "breaking --against $(BUF_OLDEST)" in (ROOT / "Makefile").read_text()
    assert "BUF_OLDEST := tests/clients/oldest_v1" in (ROOT / "Makefile").read_text()


def test_the_oldest_baseline_catches_a_change_the_latest_would_also_refuse(workspace):
    """A field of the first v1 retyped: refused against the oldest baseline as well."""
    workspace(SERVICE, "uint64 request_id = 6;", "string request_id = 6;")  # ActionRequest's, in v1 since the first
    result = buf("breaking", "--against", str(OLDEST), cwd=workspace.root)
    assert result.returncode != 0 and "request_id" in result.stdout + result.stderr, result.stdout + result.stderr


def test_the_baseline_holds_the_v1_files_and_the_vendored_protocols():
    files = buf("ls-files", str(BASELINE)).stdout.split()
    assert files == [ERROR_DETAILS, STATUS, OIP, TRITON, SERVICE, SHARED_MEMORY, TYPES]


def test_the_baseline_is_current(tmp_path):
    result = additions(ROOT, tmp_path / "current.binpb")
    assert result.returncode == 0, stale_baseline_message(result)


def test_an_addition_without_a_refresh_fails_the_currency_check(workspace, tmp_path):
    add_a_field_and_a_message(workspace)
    result = additions(workspace.root, tmp_path / "current.binpb")
    assert result.returncode != 0
    assert 'field "536870911" with name "buf_probe" on message "ActionRequest" was deleted' in result.stdout
    assert 'message "BufProbe" was deleted' in result.stdout
    assert REFRESH in stale_baseline_message(result)


def test_the_readme_gives_the_refresh_command():
    assert REFRESH in (ROOT / "protos" / "baseline" / "README.md").read_text()


@pytest.mark.parametrize("path, old, new, message", [
    (SERVICE, "uint64 request_id = 6;", "uint64 request_id = 16;", 'field "6" with name "request_id"'),
    (SERVICE, "uint32 batch_size = 4;", "uint64 batch_size = 4;", 'changed type from "uint32" to "uint64"'),
    (TYPES, "string type_name = 1;", "string type = 1;", 'changed name from "type_name" to "type"'),
    (TYPES, "DTYPE_FLOAT32 = 12;", "DTYPE_FLOAT32 = 15;", 'enum value "12"'),
    (SERVICE, "  rpc GetStats(GetStatsRequest) returns (GetStatsResponse);\n", "", '"GetStats" on service'),
    (SERVICE, "rpc ActionStream(stream ActionRequest)", "rpc ActionStream(ActionRequest)", "client streaming"),
    (SERVICE, "optional int64 seed = 5;", "int64 seed = 5;", "changed cardinality"),
    (STATUS, "int32 code = 1;", "int64 code = 1;", 'changed type from "int32" to "int64"'),  # vendored, on the wire
    (SHARED_MEMORY, "uint32 max_rows = 2;", "uint64 max_rows = 2;", 'changed type from "uint32" to "uint64"'),
    (SERVICE, "Session session = 10;", "Session session = 99;", 'field "10" with name "session"'),
    (OIP, "  rpc ModelInfer(ModelInferRequest) returns (ModelInferResponse) {}\n", "",
     '"ModelInfer" on service "GRPCInferenceService"'),  # vendored: OIP clients generate code from it
], ids=["renumbered-field", "field-type", "renamed-field", "renumbered-enum-value", "removed-rpc",
        "streaming-changed", "seed-presence", "vendored-status-field-type", "shared-memory-field-type",
        "renumbered-session", "vendored-oip-removed-rpc"])
def test_a_breaking_edit_fails_the_check(workspace, path, old, new, message):
    result = breaking(workspace(path, old, new))
    assert result.returncode != 0, f"buf breaking accepted: {old!r} -> {new!r}"
    assert message in result.stdout, result.stdout + result.stderr


def test_additions_pass_both_checks(workspace):
    add_a_field_and_a_message(workspace)
    for result in (lint(workspace.root), breaking(workspace.root)):
        assert result.returncode == 0, result.stdout + result.stderr


def test_lint_checks_our_files_and_skips_the_vendored_ones(workspace):
    workspace(STATUS, "message Status {", "message badly_named {}\n\nmessage Status {")
    assert lint(workspace.root).returncode == 0  # protos/google is third-party: not linted
    workspace(TYPES, "message NoneValue {}", "message NoneValue {}\n\nmessage badly_named {}")
    result = lint(workspace.root)
    assert result.returncode != 0 and "types.proto" in result.stdout and "badly_named" in result.stdout
    assert "status.proto" not in result.stdout
