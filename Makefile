# House prices: notebook-first research-to-production template.
# `make train` and `make test` are the quick start; both build the project's virtual environment first.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
KERNEL := house-prices
STAMP  := $(VENV)/.installed
# Parameters for the training job, e.g. `make train P="-p seed 1 -p gbm_n_estimators 800"`
P ?=
# Options for the service, e.g. `make serve ARGS="--port 9000 --run 20261122T063200Z-7a3d88"`
ARGS ?=

.PHONY: help install runtime train test test-nbs test-py test-template lint template serve lab export clean-nbs lock bench clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements/dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 is needed, {sys.executable} is {sys.version.split()[0]}: run make PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --editable .
	$(BIN)/python -m pip check
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python ($(KERNEL))" >/dev/null
	@touch $(STAMP)
	@echo "environment ready: $(VENV) (kernel '$(KERNEL)')"

install: $(STAMP) ## Build .venv from requirements/dev.lock and register the project's Jupyter kernel

runtime: ## Build .venv-runtime from requirements/runtime.lock only (what predicting needs)
	$(PYTHON) -m venv .venv-runtime
	.venv-runtime/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/runtime.lock
	.venv-runtime/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation --editable .
	.venv-runtime/bin/python -m pip check

train: $(STAMP) ## Train: run nbs/jobs/train.ipynb through papermill into runs/<run id>/
	$(BIN)/house-prices train $(P)

test: $(STAMP) ## Run every test: the notebooks (nbdev-test), then tests/ (pytest)
	$(MAKE) --no-print-directory test-nbs test-py

test-nbs: $(STAMP)
	$(BIN)/nbdev-test --n-workers 2

test-py: $(STAMP)
	$(BIN)/python -m pytest

test-template: $(STAMP) ## Generate projects from the template (copier) on other data sets; run their make train / make test; copier update
	$(BIN)/python -m pytest template_tests

template: $(STAMP) ## Regenerate template/'s machinery from nbs/core, tests and locks (run after changing them)
	$(BIN)/python tools/template.py

serve: $(STAMP) ## Serve the newest run over HTTP on 127.0.0.1:8000 (house-prices serve --help for options)
	$(BIN)/house-prices serve $(ARGS)

lab: $(STAMP) ## Start JupyterLab on the project kernel
	$(BIN)/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root)  # as root (a container, a CI machine) JupyterLab wants --allow-root

lint: $(STAMP) ## Check notebooks, package, tests and tools with ruff (pyproject.toml); fix a notebook with `.venv/bin/ruff check --fix nbs`, then make export
	$(BIN)/ruff check .

export: $(STAMP) ## Export nbs/ to the house_prices package (run after editing a notebook)
	$(BIN)/nbdev-export

clean-nbs: $(STAMP) ## Strip execution counts and metadata from notebooks (keeps the `parameters` tag)
	$(BIN)/nbdev-clean

lock: ## Re-resolve requirements/*.lock from pyproject.toml (needs network)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
	$(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes --extra dev \
	  pyproject.toml requirements/build.in -o requirements/dev.lock
	$(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	  pyproject.toml requirements/build.in -c requirements/dev.lock -o requirements/runtime.lock
	$(BIN)/python -m pip uninstall --quiet --yes uv

bench: $(STAMP) ## Run the benchmarks in bench/ (prediction speed; Dask; data loading from Parquet and PostgreSQL)
	$(BIN)/python bench/predict_speed.py
	$(BIN)/python bench/dask_speed.py
	$(BIN)/python bench/data_load.py

clean: ## Remove the virtual environments (runs/ is kept)
	rm -rf $(VENV) .venv-runtime
