"""The exact matrix on the graph backend (tests/policy_client/graph_matrix.py), run in a process of its own.

Building the matrix's Keras networks inside TF1 graphs invalidates the Keras
models that other tests of this process built outside one ("Your Layer or
Model is in an invalid state"), so the cases run in a child process (the
data plane forced by TFA_POLICY_DATA_PLANE, if any, is inherited) and each
case's outcome is one test here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import equivalence_matrix_cases as cases

ROOT = Path(__file__).resolve().parents[2]
TF_CASES = [c.name for c in cases.CASES if not c.py]


@pytest.fixture(scope="module")
def outcomes() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-m", "tests.policy_client.graph_matrix"], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(660)
@pytest.mark.parametrize("case", TF_CASES)
def test_the_graph_backend_answers_as_the_local_py_tf_policy(case, outcomes):
    assert outcomes.get(case) == "ok", outcomes.get(case)
