# Every target creates (or reuses) the project's own virtual environment in .venv first.
# Nothing needs to be installed by hand beyond Python 3.11 and make.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= $(or $(HELLO_DL_PROFILE),conference)

.PHONY: run test lab bench venv clean-venv help

help:
	@echo "make run    - set up .venv, fetch + verify data, run the whole tutorial headless (PROFILE=$(PROFILE))"
	@echo "make test   - set up .venv and run the test suite"
	@echo "make lab    - set up .venv and start JupyterLab on the notebooks (token protected)"
	@echo "make bench  - set up .venv and run the benchmarks (benchmarks/run.py)"

venv: $(STAMP)

# Reinstall only when the pinned requirements or the package metadata change.
$(STAMP): requirements.txt pyproject.toml scripts/install_kernel.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python scripts/install_kernel.py
	@touch $(STAMP)

run: $(STAMP)
	HELLO_DL_PROFILE=$(PROFILE) $(BIN)/hello-dl env
	HELLO_DL_PROFILE=$(PROFILE) $(BIN)/hello-dl fetch
	HELLO_DL_PROFILE=$(PROFILE) $(BIN)/hello-dl data-summary
	HELLO_DL_PROFILE=$(PROFILE) $(BIN)/hello-dl run

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lab: $(STAMP)
	$(BIN)/python scripts/lab.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
