# tfa-policy-grpc: every task a developer or CI runs.
#   make demo   run the main job (actor-learner CartPole through the policy server)
#   make test   run the fast test suite (installs .venv first when needed)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install proto check-proto test test-all bench bench-quick demo clean

install: $(STAMP)

# Re-installs whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Regenerates policy_client/wire/generated/ from protos/.
proto: $(STAMP)
	$(PY) scripts/gen_protos.py

# Fails when policy_client/wire/generated/ does not match protos/.
check-proto: $(STAMP)
	$(PY) scripts/gen_protos.py --check

test: $(STAMP) check-proto
	$(PY) -m pytest $(PYTEST_ARGS)

# Everything, slow tests included.
test-all: $(STAMP) check-proto
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

# The TorchRL peer runs from its own venv (.venv-torchrl, torch CPU build); without it
# the benchmark marks the peer rows "not available".
bench: $(STAMP)
	bash bench/peers/setup_torchrl.sh || echo "bench: TorchRL peer unavailable (setup failed); its rows are skipped"
	$(PY) -m bench

bench-quick: $(STAMP)
	bash bench/peers/setup_torchrl.sh || echo "bench: TorchRL peer unavailable (setup failed); its rows are skipped"
	$(PY) -m bench --quick

demo: $(STAMP)
	$(PY) -m examples.demo

clean:
	rm -rf $(VENV) .venv-torchrl build *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
