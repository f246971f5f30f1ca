"""The shape of the code: import direction, the public wire layer, module sizes, demos outside packages."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_LINES = 400


def modules(package: str) -> list[pathlib.Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "generated" not in p.parts)


def imports(path: pathlib.Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import statement in a file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


@pytest.mark.parametrize("path", modules("policy_client"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_client_never_imports_the_server(path):
    assert not [m for m, _ in imports(path) if m.split(".")[0] in ("policy_server", "examples", "tests")]


@pytest.mark.parametrize("path", modules("policy_server"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_server_reaches_the_client_only_through_the_public_wire_layer(path):
    for module, names in imports(path):
        if module.split(".")[0] in ("examples", "tests"):
            pytest.fail(f"{path.name} imports {module}")
        if module.split(".")[0] != "policy_client":
            continue
        assert module == "policy_client.wire" or module.startswith("policy_client.wire."), \
            f"{path.name} imports {module}, outside the wire layer"
        assert not any(part.startswith("_") for part in module.split(".")), f"{path.name} imports {module}"
        assert not [n for n in names if n.startswith("_")], f"{path.name} imports private names {names}"


@pytest.mark.parametrize("path", modules("policy_client/wire"), ids=lambda p: p.name)
def test_the_wire_layer_imports_no_tensorflow_at_module_level(path):
    tree = ast.parse(path.read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in top if isinstance(n, ast.ImportFrom) and n.module]
    assert not [n for n in names if n.split(".")[0] in ("tensorflow", "tf_agents", "keras")]


@pytest.mark.parametrize("path", modules("policy_client") + modules("policy_server") + modules("policy_fleet")
                         + modules("examples"), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_are_small_and_documented(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{path.name} has more than {MAX_LINES} lines"
    assert ast.get_docstring(ast.parse(text)), f"{path.name} has no module docstring"


def test_generated_code_is_fenced_in_its_own_package():
    generated = ROOT / "policy_client" / "wire" / "generated"
    protos = {p.name for p in (ROOT / "protos").rglob("*.proto") if "google" not in p.parts}
    names = sorted(p.name for p in generated.iterdir() if p.suffix in (".py", ".pyi"))
    assert {"__init__.py", "policy_service_pb2.py", "policy_service_pb2.pyi", "policy_service_pb2_grpc.py",
            "types_pb2.py", "types_pb2.pyi", "types_pb2_grpc.py", "grpc_predict_v2_pb2.py",
            "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py", "triton_streaming_pb2.py"} <= set(names)
    # Nothing else: every file there is one that `make proto` writes.
    assert all(name == "__init__.py" or name.split("_pb2")[0] + ".proto" in protos for name in names), names
    assert not list((ROOT / "policy_client").glob("*_pb2*.py")) and not list((ROOT / "policy_server").glob("*_pb2*"))


def test_no_demo_lives_in_a_package():
    for package in ("policy_client", "policy_server"):
        assert not [p.name for p in (ROOT / package).rglob("*.py") if "demo" in p.name], package


# The top of policy_server holds only what ties the wings together; everything else lives in a wing.
SERVER_TOP = {"__init__.py", "server.py", "registry.py", "config.py", "security.py", "admission.py", "services.py",
              "py.typed"}
SERVER_WINGS = {"native", "shm", "oip", "engine", "backends", "weights", "telemetry", "cli"}
CLIENT_TOP = {"__init__.py", "client.py", "remote_policy.py", "loader.py", "py.typed"}
CLIENT_WINGS = {"transport", "learner", "cli", "wire"}


@pytest.mark.parametrize("package, top, wings", [("policy_server", SERVER_TOP, SERVER_WINGS),
                                                 ("policy_client", CLIENT_TOP, CLIENT_WINGS)])
def test_packages_are_wings_by_concept(package, top, wings):
    entries = [p for p in (ROOT / package).iterdir() if p.name != "__pycache__"]
    assert {p.name for p in entries if p.is_file()} == top
    assert {p.name for p in entries if p.is_dir()} == wings
    for wing in wings:
        assert ast.get_docstring(ast.parse((ROOT / package / wing / "__init__.py").read_text())), wing


@pytest.mark.parametrize("path", [p for p in modules("policy_server") if p.parent.name in ("native", "shm", "oip")],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_front_doors_reach_the_engine_only_through_the_admission_seam(path):
    """No door queues on a scheduler or steps a session itself: Admission.submit does, for every door."""
    text = path.read_text()
    assert "scheduler.submit(" not in text and "sessions.begin(" not in text and "sessions.step(" not in text
    assert "supports_seed" not in text or path.name == "messages.py"  # AS_LOCAL: the policy's own answer to a seed


def test_one_field_error_helper_and_one_status_mapping():
    for path in modules("policy_server") + modules("policy_client"):
        text = path.read_text()
        if path.name != "errors.py":
            assert "fields=((" not in text, f"{path.name}: build a one-field error with RemoteError.at"
        assert "def _invalid(" not in text, path.name
        if path.name != "status.py":
            assert "def as_remote_error(" not in text, path.name


@pytest.mark.parametrize("path", modules("policy_client") + modules("policy_server") + modules("bench")
                         + modules("examples") + modules("scripts"), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_outside_the_ray_extra_imports_ray(path):
    """Ray is the optional [ray] extra: only policy_fleet (and what runs on Ray: its example, its tests) imports it."""
    if path.name in ("ray_actor_learner.py",):  # the example of the extra itself
        return
    assert not [m for m, _ in imports(path) if m.split(".")[0] == "ray"]


@pytest.mark.parametrize("path", modules("policy_fleet"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_fleet_uses_the_public_names_of_both_packages(path):
    for module, names in imports(path):
        if module.split(".")[0] in ("policy_client", "policy_server"):
            assert not any(part.startswith("_") for part in module.split(".")), f"{path.name} imports {module}"
            assert not [n for n in names if n.startswith("_")], f"{path.name} imports private names {names}"
        assert module.split(".")[0] not in ("tests", "examples"), f"{path.name} imports {module}"
