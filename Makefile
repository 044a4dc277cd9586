# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both install what they need: Debian packages (haproxy, prometheus, git) when
# missing, and a virtualenv in .venv with the Python dependencies.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup system-deps venv test lint unit integration chaos bench demo crds clean

setup: system-deps venv

system-deps:
	@hack/install-system-deps.sh

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[sim,dev]'
	@touch $(STAMP)

lint: venv
	$(BIN)/ruff check operator tests bench hack
	$(BIN)/mypy
	$(BIN)/lint-imports

# Three at a time what does not measure shares, latencies or timings (the machine has 2 cores, but these
# tests mostly wait on the world's timers: two workers kept one core busy), then the tests with a world and
# the operator as processes that do, one after the other, so their measured shares and latencies are not
# squeezed. Meanwhile the emulated API servers write down every call the operator made (API_USAGE); last,
# the chart's roles are checked against them (tests/rbac).
# worksteal: xdist's default hands each worker a long run of tests in collection order up front, so one got
# most world tests and ran ~200 s after the other had finished; an idle worker now takes half of another's.
# The serial tests all live in tests/integration (tests/conftest.py refuses `alone` anywhere else), so the
# second run collects only there.
API_USAGE := $(CURDIR)/build/api-usage
test: setup lint
	rm -rf $(API_USAGE)
	BLUEGREEN_API_USAGE_DIR=$(API_USAGE) $(BIN)/pytest -n 3 --dist worksteal -m "not serial and not rbac_usage" $(PYTEST_ARGS)
	BLUEGREEN_API_USAGE_DIR=$(API_USAGE) $(BIN)/pytest -m "serial and not rbac_usage" tests/integration $(PYTEST_ARGS)
	BLUEGREEN_API_USAGE_DIR=$(API_USAGE) $(BIN)/pytest -m rbac_usage tests/rbac

unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

# Longer than the suite runs them: more chaos runs (a new seed each time unless SEED is given) and more
# generated bad specs. The seed is printed; the same seed gives the same kill schedule.
RUNS ?= 12
EXAMPLES ?= 5000
chaos: setup
	BLUEGREEN_CHAOS_SEED=$${SEED:-$$(date +%s)} BLUEGREEN_CHAOS_RUNS=$(RUNS) \
		$(BIN)/pytest -s -m reliability tests/integration/test_chaos.py
	BLUEGREEN_BAD_INPUT_EXAMPLES=$(EXAMPLES) $(BIN)/pytest -s -m reliability tests/unit/api/test_bad_input_properties.py

# How fast the operator reacts, what a step costs it, and how it scales to 1,000 upgrades (bench/fleet_bench.py):
# writes bench/results.json and bench/results.md and prints the table. BENCH_ARGS=--quick for a small run.
BENCH_ARGS ?=
bench: setup
	$(BIN)/python bench/fleet_bench.py $(BENCH_ARGS)

crds: venv
	$(BIN)/python -m bluegreen.api.crd --write

DEMO ?= capi
demo: setup
	$(BIN)/python hack/demo.py --provider $(DEMO) $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
