# tfa-policy-grpc: every task a developer or CI runs.
#   make demo   run the main job (actor-learner CartPole through the policy server)
#   make test   run the fast test suite and the strict docs build (installs .venv first when needed)
#   make docs   build the manual (docs/) into build/site, warnings as errors

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install proto check-proto test test-all docs bench bench-quick bench-scaleout bench-fleet demo demo-ray clean

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

# EQUIVALENCE: the equivalence suites, run with every client forced onto each data plane in turn (gRPC, what
# actors on other hosts use; shared memory, what same-host actors take by themselves); tests/conftest.py checks
# that the calls took the forced plane. The rest of the suite runs once, in two halves (TEST_SPLIT and the
# others): on this host the default "auto" plane is the shared memory that a forced pass covers (make test-all
# runs everything on it too). scripts/test_passes.py runs the four passes two at a time.
EQUIVALENCE := tests/policy_client/test_equivalence.py tests/policy_client/test_as_local.py \
	tests/policy_client/test_equivalence_matrix.py tests/policy_client/test_remote_policy.py \
	tests/policy_client/test_wrappers.py tests/policy_client/test_equivalence_saved_model.py \
	tests/policy_client/test_equivalence_graph.py tests/compat
TEST_SPLIT := tests/fleet tests/light_client tests/policy_server
test: $(STAMP) check-proto buf-check docs node-client triton-client light-client
	$(PY) scripts/test_passes.py --pytest-args "$(PYTEST_ARGS)" --equivalence $(EQUIVALENCE) --split $(TEST_SPLIT)

# The manual: MkDocs (mkdocs.yml), strict: a broken link or anchor, or an API symbol that is gone, fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# Everything, slow tests included.
test-all: $(STAMP) check-proto buf-check docs node-client triton-client light-client
	$(PY) -m pytest -m "" $(PYTEST_ARGS)

# The TF-free client distribution (client/, tfa-policy-grpc-client) installed alone in virtualenvs of its own,
# at the ends of its ranges (tests/light_client/requirements-*.txt): Python 3.10 with numpy 1.22 and protobuf 4.25,
# 3.13 with numpy 2 and protobuf 6, 3.12 with protobuf 7. Each CPython comes from pyenv
# ($(PYENV_ROOT)/versions/3.X.*), else from python3.X on the PATH.
PYENV_ROOT ?= $(HOME)/.pyenv
python_of = $(or $(lastword $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1))),$(shell command -v python$(1)),\
	$(error no CPython $(1): install it (pyenv install $(1)) or put python$(1) on the PATH))
LIGHT_PY_oldest := 3.10
LIGHT_PY_protobuf6 := 3.13
LIGHT_PY_newest := 3.12
LIGHT_VENVS := $(foreach end,oldest protobuf6 newest,.venv-client-$(end))
CLIENT_SOURCES := $(shell find policy_client -name '*.py' -o -name py.typed)
.PHONY: light-client
.PRECIOUS: .venv-client-%/.installed .venv-client-%/.client  # not intermediate: kept, not rebuilt every run
light-client: $(addsuffix /.client,$(LIGHT_VENVS))

# The venv: pip resolves the client's ranges with the pins (pip check: they agree).
.venv-client-%/.installed: tests/light_client/requirements-%.txt client/pyproject.toml
	rm -rf .venv-client-$*
	$(call python_of,$(LIGHT_PY_$*)) -m venv .venv-client-$*
	.venv-client-$*/bin/python -m pip install --quiet --upgrade "pip>=24"
	.venv-client-$*/bin/python -m pip install --quiet -r tests/light_client/requirements-$*.txt ./client
	.venv-client-$*/bin/python -m pip check
	rm -rf client/build client/*.egg-info
	touch $@

# The client again (not editable, as users get it) whenever policy_client/ changed.
.venv-client-%/.client: .venv-client-%/.installed $(CLIENT_SOURCES)
	.venv-client-$*/bin/python -m pip install --quiet --no-deps --force-reinstall ./client
	rm -rf client/build client/*.egg-info
	touch $@

# Clients in other languages, from protos/ alone (examples/clients/*/README.md).
#   make node-client  installs the Node client's packages from its lock file
#   make cpp-client   generates the C++ code from protos/ and builds the C++ client in $(CPP_BUILD) (make test-all
#                     builds and runs it where its toolchain is installed)
#   make buf-check    buf lint, and buf breaking against the latest and the oldest published v1
.PHONY: node-client cpp-client buf-check triton-client
# The Open Inference Protocol tests (tests/oip) drive the server with tritonclient from PyPI, in its
# own venv: its grpcio/protobuf pins (>= 1.81 / 6) clash with TF 2.15's stack.
TRITON_VENV := .venv-triton
TRITON_REQ := tests/oip/requirements-triton.txt

triton-client: $(TRITON_VENV)/.installed

$(TRITON_VENV)/.installed: $(TRITON_REQ)
	rm -rf $(TRITON_VENV)
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(TRITON_REQ)
	$(TRITON_VENV)/bin/python -c "import tritonclient.grpc"
	touch $@
NODE_CLIENT := examples/clients/node
CPP_CLIENT := examples/clients/cpp
CPP_BUILD ?= $(CPP_CLIENT)/build
BUF := $(VENV)/bin/buf
BUF_BASELINE := protos/baseline/tfa_policy_grpc.v1.binpb
# The oldest published v1, verbatim (tests/clients/oldest_v1/README.md): a second baseline.
BUF_OLDEST := tests/clients/oldest_v1

node-client: $(NODE_CLIENT)/node_modules/.installed

# npm ci: exactly the versions of package-lock.json (again whenever it changes); no install scripts.
$(NODE_CLIENT)/node_modules/.installed: $(NODE_CLIENT)/package.json $(NODE_CLIENT)/package-lock.json
	cd $(NODE_CLIENT) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

cpp-client:
	cmake -S $(CPP_CLIENT) -B $(CPP_BUILD)
	cmake --build $(CPP_BUILD) -j2

buf-check: $(STAMP)
	$(BUF) lint
	$(BUF) breaking --against $(BUF_BASELINE)
	$(BUF) breaking --against $(BUF_OLDEST)

# The TorchRL peer runs from its own venv (.venv-torchrl, torch CPU build); without it
# the benchmark marks the peer rows "not available".
bench: $(STAMP)
	bash bench/peers/setup_torchrl.sh || echo "bench: TorchRL peer unavailable (setup failed); its rows are skipped"
	$(PY) -m bench

bench-quick: $(STAMP)
	bash bench/peers/setup_torchrl.sh || echo "bench: TorchRL peer unavailable (setup failed); its rows are skipped"
	$(PY) -m bench --quick --peer-in-quick

# 16 CartPole actors against 1 vs 3 replicas and --workers 1 vs 2 (bench/results/scaleout.{json,md}; ~1 minute).
bench-scaleout: $(STAMP)
	$(PY) -m bench.scaleout

# Replicas placed by Ray vs the same servers started by hand (1 and 2 replicas, interleaved), and the start-up
# of a whole fleet, on a simulated 3-node cluster (bench/results/fleet.{json,md}; about 3 minutes).
bench-fleet: $(STAMP)
	$(PY) -m bench.fleet

demo: $(STAMP)
	@$(PY) -m examples.demo

# The actor-learner run across a simulated 3-node Ray cluster on 127.0.0.1 (examples/ray_actor_learner.py:
# 2 replicas, 4 collect actors and an eval actor placed by Ray; --address HOST:PORT for a real cluster).
demo-ray: $(STAMP)
	@$(PY) -m examples.ray_actor_learner

clean:
	rm -rf $(VENV) .venv-torchrl $(TRITON_VENV) .venv-client-* build *.egg-info .pytest_cache .hypothesis
	rm -rf examples/clients/node/node_modules examples/clients/cpp/build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# TF-Agents' own tests (tests/compat) without the RemotePolicy swap: the local baseline.
.PHONY: compat-local
compat-local: $(STAMP)
	TFA_COMPAT_LOCAL=1 $(PY) -m pytest tests/compat -m "" $(PYTEST_ARGS)

# The fault suite's full run (tests/reliability; its fast subset runs in make test): fuzzing, overload,
# SIGKILL/SIGTERM restarts, large messages, idle streams. Prints the figures table and writes it beside the JSON.
.PHONY: reliability
reliability: $(STAMP)
	$(PY) -m tests.reliability --out bench/results/reliability.json
