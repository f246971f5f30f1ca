#!/usr/bin/env bash
# Creates (or refreshes) .venv-torchrl at the repository root with the pinned
# TorchRL peer stack from bench/peers/requirements-torchrl.txt.
# Idempotent: does nothing when the venv's stamp matches the requirements file.
# Quiet on success; prints the pip log and exits non-zero on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REQ="$ROOT/bench/peers/requirements-torchrl.txt"
VENV="$ROOT/.venv-torchrl"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"

want="$(sha256sum "$REQ" | cut -d' ' -f1)"
# The stamp is written only after a successful install and import check.
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# Keep the venv out of git without touching the repository's .gitignore.
echo '*' > "$VENV/.gitignore"
log="$VENV/install.log"
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input \
      -r "$REQ" >"$log" 2>&1; then
  echo "setup_torchrl.sh: pip install failed; log: $log" >&2
  grep -v "^WARNING: Location 'file:" "$log" | tail -n 30 >&2
  exit 1
fi
if ! "$VENV/bin/python" - >>"$log" 2>&1 <<'PY'
import torch, tensordict, torchrl
from torchrl.modules.inference_server import InferenceServer, ProcessSlotTransport
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert not torch.version.cuda, "a CUDA build of torch was installed"
print("ok", torch.__version__, torchrl.__version__, tensordict.__version__)
PY
then
  echo "setup_torchrl.sh: import check failed; log: $log" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
echo "$want" > "$STAMP"
