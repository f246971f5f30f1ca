"""The README is a true front page: short, its links resolve, its two commands and its examples work."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MAX_LINES = 250


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


def test_the_readme_is_a_front_page():
    assert len(README.splitlines()) <= MAX_LINES
    assert "make demo" in README and "make test" in README


def test_every_relative_link_of_the_readme_resolves():
    links = [target for _, target in re.findall(r"\[([^\]]*)\]\(([^)]+)\)", README) if "://" not in target]
    assert links, "the README links to the manual"
    for target in links:
        path = ROOT / target.split("#", 1)[0]
        assert path.exists(), f"README links to {target}, which does not exist"


def test_every_manual_page_is_linked_from_the_readme():
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")} - {"docs/index.md"}
    assert pages <= set(re.findall(r"\((docs/[\w-]+\.md)\)", README))


def test_the_policy_client_example_runs_against_a_server():
    """The README's TF-free example, against the demo's CartPole policy: it builds its own time step."""
    from examples.cartpole import cartpole_q_policy  # pylint: disable=import-outside-toplevel
    from policy_server.server import BackgroundServer  # pylint: disable=import-outside-toplevel

    (example,) = [block for block in python_blocks() if "PolicyClient(" in block]
    with BackgroundServer({"cartpole": cartpole_q_policy(seed=0)}) as server:
        code = example.replace("127.0.0.1:50051", server.address)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), {})  # pylint: disable=exec-used
    assert re.fullmatch(r"action [01] from policy version 0\n", out.getvalue())


@pytest.mark.parametrize("command", ["policy-server --demo --port 50051", "policy-server --config serving.toml"])
def test_the_serving_commands_use_real_flags(command):
    from policy_server.cli import command as cli  # pylint: disable=import-outside-toplevel

    assert command in README
    flags = command.split()[1:]
    names = {a for action in cli._parser()._actions for a in action.option_strings}  # pylint: disable=protected-access
    assert {f for f in flags if f.startswith("--")} <= names
