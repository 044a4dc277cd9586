# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both install what they need: Debian packages (haproxy, prometheus, git) when
# missing, and a virtualenv in .venv with the Python dependencies.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup system-deps venv test lint unit integration demo crds clean

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

# Two at a time what needs no whole world (the machine has 2 cores), then the tests with a world and
# the operator as processes one after the other, so their measured shares and latencies are not squeezed.
test: setup lint
	$(BIN)/pytest -n 2 -m "not serial" $(PYTEST_ARGS)
	$(BIN)/pytest -m serial $(PYTEST_ARGS)

unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest -m integration $(PYTEST_ARGS)

crds: venv
	$(BIN)/python -m bluegreen.api.crd --write

DEMO ?= capi
demo: setup
	$(BIN)/python hack/demo.py --provider $(DEMO) $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
