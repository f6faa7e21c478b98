# Every target creates (or reuses) the project's own virtual environment in .venv first.
# Nothing needs to be installed by hand beyond Python 3.11 and make.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= $(or $(HELLO_DL_PROFILE),conference)

# The oldest supported TensorFlow/Keras pair (the low end of pyproject.toml's range) lives in a
# second virtual environment; its wheels stay in $(COMPAT_WHEELS), so the cloud test builds its
# fresh "platform" environment from them without downloading again.
COMPAT_VENV   := .venv-compat
COMPAT_BIN    := $(COMPAT_VENV)/bin
COMPAT_STAMP  := $(COMPAT_VENV)/.installed
COMPAT_WHEELS := $(COMPAT_VENV)/wheels

.PHONY: run test lab bench hub venv compat-venv clean-venv help compat badges editions materials

help:
	@echo "make run    - set up .venv, fetch + verify data, run the whole tutorial headless (PROFILE=$(PROFILE))"
	@echo "make test   - set up .venv and run the test suite"
	@echo "make lab    - set up .venv and start JupyterLab on the notebooks (token protected)"
	@echo "make bench  - set up .venv and run the benchmarks (benchmarks/run.py)"
	@echo "make compat - the unit tests, notebook 04 and the Colab route on the OLDEST supported TensorFlow/Keras"
	@echo "make badges - stamp the Colab/Kaggle badges and install cells (after changing the repository address)"
	@echo "make hub    - build and start the room server (JupyterHub, docker/hub/README.md): SEATS=40 URL=... ROOM_KIT=cpu|gpu"
	@echo "make editions - write the student and instructor editions of the notebooks (after editing notebooks/)"
	@echo "make materials - build the instructor's slides, printable glossary and pre/post quiz into materials/build/"

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

# Tests run in parallel processes (pytest-xdist): `auto` is one per core, capped by memory
# (tests/conftest.py says how); TEST_WORKERS=0 runs them in this one process. A test file stays
# in one process (--dist loadfile), so its module-level set-up runs once.
TEST_WORKERS ?= auto
XDIST = -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# EDITION=student (default: what participants open) | instructor (with the answers) | source (notebooks/)
lab: $(STAMP)
	$(BIN)/python scripts/lab.py $(if $(EDITION),--edition $(EDITION))

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

compat-venv: $(COMPAT_STAMP)

$(COMPAT_STAMP): .ci/requirements-oldest.txt pyproject.toml scripts/install_kernel.py
	@test -x $(COMPAT_BIN)/python || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_BIN)/python -m pip install --quiet --upgrade pip
	$(COMPAT_BIN)/python -m pip download --quiet --dest $(COMPAT_WHEELS) -r .ci/requirements-oldest.txt
	$(COMPAT_BIN)/python -m pip install --quiet --no-index --find-links $(COMPAT_WHEELS) -r .ci/requirements-oldest.txt
	$(COMPAT_BIN)/python -m pip install --quiet --no-deps -e .
	$(COMPAT_BIN)/python scripts/install_kernel.py
	@touch $(COMPAT_STAMP)

# Slow-marked tests ran already with the pinned pair (make test); here the unit tests run again,
# plus the tests marked compat (notebook 04 headless, the Colab route from a fresh environment).
compat: $(COMPAT_STAMP)
	HELLO_DL_COMPAT=1 HELLO_DL_COMPAT_WHEELS=$(abspath $(COMPAT_WHEELS)) \
	  $(COMPAT_BIN)/python -m pytest $(XDIST) -m "compat or (not slow and not browser)" $(PYTEST_ARGS)

badges: $(STAMP)
	$(BIN)/python scripts/stamp_badges.py
	$(BIN)/python scripts/make_editions.py

editions: $(STAMP)
	$(BIN)/python scripts/make_editions.py

# Slides (reveal.js, offline), glossary and quiz; OUT=folder to build elsewhere.
materials: $(STAMP)
	$(BIN)/python scripts/build_materials.py $(if $(OUT),--out $(OUT))

clean-venv:
	rm -rf $(VENV) $(COMPAT_VENV)

# The room server (docker/hub/README.md): the participants' image, the hub image, seat cards in
# room/ (only if there are none yet, made inside the hub image), then proxy + hub in the background.
ROOM_KIT ?= cpu
SEATS ?= 40
hub:
	docker compose -f docker/compose.yaml build $(ROOM_KIT)
	docker compose -f docker/hub/compose.yaml build
	@mkdir -p room
	@if [ ! -e room/seats.json ]; then \
	    HELLO_DL_ROOM_UID=$$(id -u) HELLO_DL_ROOM_GID=$$(id -g) docker compose -f docker/hub/compose.yaml \
	        run --rm cards --seats $(SEATS) $(if $(URL),--url $(URL)); \
	else echo "Keeping the seat cards in room/ (hello-dl room cards --force makes new ones)."; fi
	HELLO_DL_ROOM_IMAGE=hello-dl:$(ROOM_KIT) HELLO_DL_ROOM_GPU=$(if $(filter gpu,$(ROOM_KIT)),1,0) \
	    docker compose -f docker/hub/compose.yaml up -d
	@echo "The room is up. Print room/cards.html; stop with: docker compose -f docker/hub/compose.yaml down"
