# House prices: notebook-first research-to-production template.
# `make train` and `make test` are the quick start; both build the project's virtual environment first.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# Python: the newest supported one found that runs (a pyenv shim of a version not enabled does not), or PYTHON=/path/to/python
SUPPORTED := 3.13 3.12 3.11
ifndef PYTHON
PYTHON := $(firstword $(foreach v,$(SUPPORTED),$(shell python$(v) -c 'import sys; print(sys.executable)' 2>/dev/null)) $(shell command -v python3))
endif
PYVER  := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
LOCKS  := requirements/$(PYVER)
VENV   := .venv
BIN    := $(VENV)/bin
KERNEL := house-prices
STAMP  := $(VENV)/.installed
# The machinery: the nbprod library, from where requirements/nbprod.txt says (here: lib/, editable)
LIBRARY := requirements/nbprod.txt
# Parameters for the training job, e.g. `make train P="-p seed 1 -p gbm_n_estimators 800"`
P ?=
# Options for the service, e.g. `make serve ARGS="--port 9000 --run 20261122T063200Z-7a3d88"`
ARGS ?=

.PHONY: help which-python install runtime train test test-nbs test-py test-template lint template image serve lab export clean-nbs lock bench clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): $(wildcard $(LOCKS)/dev.lock) pyproject.toml $(LIBRARY) lib/pyproject.toml
	@test -f "$(LOCKS)/dev.lock" || { echo "Python 3.11, 3.12 or 3.13 is needed; $(PYTHON) is $(or $(PYVER),not runnable): run make PYTHON=/path/to/python3.13" >&2; exit 1; }
	@[ ! -e $(BIN)/python ] || [ "$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$(PYVER)" ] \
	  || { echo "$(VENV) was built with another Python: rebuilding it with $(PYVER)"; rm -rf $(VENV); }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(LOCKS)/dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -r $(LIBRARY)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --editable .
	$(BIN)/python -m pip check
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python ($(KERNEL))" >/dev/null
	@touch $(STAMP)
	@echo "environment ready: $(VENV), Python $(PYVER), $(LOCKS)/dev.lock (kernel '$(KERNEL)')"

which-python: # The Python make uses (.ci/run prints it)
	@echo "$(PYTHON) (Python $(or $(PYVER),not runnable))"

install: $(STAMP) ## Build .venv from requirements/<python>/dev.lock (3.13, 3.12 or 3.11: the newest found; PYTHON= to choose) and register the kernel

runtime: ## Build .venv-runtime from requirements/<python>/runtime.lock only (what predicting needs)
	@test -f "$(LOCKS)/runtime.lock" || { echo "Python 3.11, 3.12 or 3.13 is needed; $(PYTHON) is $(or $(PYVER),not runnable)" >&2; exit 1; }
	$(PYTHON) -m venv .venv-runtime
	.venv-runtime/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(LOCKS)/runtime.lock
	.venv-runtime/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -r $(LIBRARY)
	.venv-runtime/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --editable .
	.venv-runtime/bin/python -m pip check

train: $(STAMP) ## Train: run nbs/jobs/train.ipynb through papermill into runs/<run id>/
	$(BIN)/house-prices train $(P)

test: $(STAMP) ## Run every test: the example's notebooks (nbdev-test), then lib/tests (the library, its notebooks too) and tests/ (pytest)
	$(MAKE) --no-print-directory test-nbs test-py

# The example's notebooks; the library's run in lib/tests, with no project installed (they use its toy project)
test-nbs: $(STAMP)
	$(BIN)/nbdev-test --n-workers 2

# On every core (pytest-xdist), a test module to a worker: a module's fixtures (a trained run, a server) are made once
test-py: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile

test-template: $(STAMP) ## Generate projects from the template (copier) on other data sets; run their make train / make test; copier update
	$(BIN)/python -m pytest template_tests -n 2 --dist loadgroup  # the two generated projects side by side

template: $(STAMP) ## Regenerate template/'s generated files (locks, shared tests, the pin of nbprod) from this repository
	$(BIN)/python tools/template.py

image: $(STAMP) ## Build the service's container image from a run (podman or docker): make image [RUN=id|alias] [BASE=image]
	$(BIN)/house-prices image build $(if $(RUN),--run "$(RUN)") $(if $(BASE),--base "$(BASE)") $(if $(ENGINE),--engine "$(ENGINE)")

serve: $(STAMP) ## Serve the newest run over HTTP on 127.0.0.1:8000 (house-prices serve --help for options)
	$(BIN)/house-prices serve $(ARGS)

lab: $(STAMP) ## Start JupyterLab on the project kernel
	$(BIN)/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root)  # as root (a container, a CI machine) JupyterLab wants --allow-root

lint: $(STAMP) ## Check notebooks, package, tests and tools with ruff (pyproject.toml), and the library's layers (import-linter); fix a notebook with `.venv/bin/ruff check --fix nbs`, then make export
	$(BIN)/ruff check .
	cd lib && ../$(BIN)/lint-imports --no-cache pyproject.toml

export: $(STAMP) ## Export the notebooks to their packages: lib/nbs/ to nbprod, nbs/ to house_prices (run after editing a notebook)
	cd lib && ../$(BIN)/nbdev-export
	$(BIN)/nbdev-export

clean-nbs: $(STAMP) ## Strip execution counts and metadata from notebooks (keeps the `parameters` tag)
	cd lib && ../$(BIN)/nbdev-clean
	$(BIN)/nbdev-clean

lock: ## Re-resolve requirements/<python>/*.lock for every supported Python from pyproject.toml and the library's dependencies, keeping pins that still resolve (needs network)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	for v in $(SUPPORTED); do \
	  $(BIN)/uv pip compile --quiet --universal --python-version $$v --generate-hashes --extra dev --no-emit-package nbprod \
	    pyproject.toml requirements/build.in $(LIBRARY) -o requirements/$$v/dev.lock && \
	  $(BIN)/uv pip compile --quiet --universal --python-version $$v --generate-hashes --no-emit-package nbprod \
	    pyproject.toml requirements/build.in $(LIBRARY) -c requirements/$$v/dev.lock -o requirements/$$v/runtime.lock || exit 1; \
	done
	$(BIN)/python -m pip uninstall --quiet --yes uv

bench: $(STAMP) ## Run the benchmarks in bench/ (prediction speed; the command's start-up; Dask; data loading from Parquet and PostgreSQL)
	$(BIN)/python bench/predict_speed.py
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/dask_speed.py
	$(BIN)/python bench/data_load.py

clean: ## Remove the virtual environments (runs/ is kept)
	rm -rf $(VENV) .venv-runtime
