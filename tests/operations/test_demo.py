"""`make demo` shows only its progress and result lines, and leaves no temporary directory behind.

The actor-learner run itself is tested in tests/policy_server/test_actor_learner.py;
here its training is replaced, so nothing loads TensorFlow.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from examples import actor_learner, demo

ROOT = Path(__file__).resolve().parents[2]


def test_make_demo_does_not_echo_its_command():
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "no demo target in the Makefile"
    commands = recipe.group(1).splitlines()
    assert commands and all(line.startswith("\t@") for line in commands), commands


@pytest.fixture
def runs(monkeypatch):
    """Replaces the training: records each run's directory and what it held while it ran."""
    seen = []

    def fake_run(config, root_dir, log, temporary):
        assert os.path.isdir(root_dir) or not temporary  # the Learner makes a directory it is given
        os.makedirs(root_dir, exist_ok=True)
        Path(root_dir, "summary").write_text("written by the learner")
        seen.append((root_dir, temporary))
        return {"server_exit_code": 0, "train_steps": 1}

    monkeypatch.setattr(actor_learner, "_run", fake_run)
    return seen


def test_a_temporary_learner_directory_is_removed(runs, monkeypatch):
    assert actor_learner.run()["train_steps"] == 1
    ((root_dir, temporary),) = runs
    assert temporary and os.path.basename(root_dir).startswith("actor_learner_")
    assert not os.path.exists(root_dir)

    def failing(*args):
        runs.append((args[1], args[3]))
        raise RuntimeError("an actor process died")

    monkeypatch.setattr(actor_learner, "_run", failing)
    with pytest.raises(RuntimeError):
        actor_learner.run()
    assert not os.path.exists(runs[-1][0])  # removed when the run fails too


def test_a_directory_given_is_kept(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TFA_POLICY_DEMO_VERBOSE", "1")  # restored afterwards (--verbose sets it)
    # --verbose: the demo leaves this process's stderr and the libraries' log levels as they are.
    assert demo.main(["--root-dir", str(tmp_path / "learner"), "--seconds", "1", "--verbose"]) == 0
    ((root_dir, temporary),) = runs
    assert root_dir == str(tmp_path / "learner") and not temporary
    assert (tmp_path / "learner" / "summary").exists()
    assert "Training DQN on CartPole-v0" in capsys.readouterr().out
