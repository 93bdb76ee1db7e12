# pubdata — the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DATE ?= 2026-11-01
export PUBDATA_PROJECT := $(CURDIR)

.PHONY: install demo demo-distributed test test-fast lint check bench lock clean airflow catalog-screenshot

install: $(STAMP)

# Reinstall only when the lock or the package metadata changed.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

demo: $(STAMP)
	$(BIN)/pubdata synth
	$(BIN)/pubdata check --all
	$(BIN)/pubdata run --date $(DEMO_DATE)

# The same datasets on a real multi-worker Airflow: CeleryExecutor, PostgreSQL, Redis (Debian
# packages, installed if missing), two workers; everything under var/distributed/, stopped at the end.
demo-distributed: $(STAMP)
	$(BIN)/python -m pubdata.orchestration.distributed $(DEMO_DATE)

check: $(STAMP)
	$(BIN)/pubdata check

# Lint and type checks fail the build like any other test.
test: lint
	$(BIN)/python -m pytest

test-fast: lint
	$(BIN)/python -m pytest -m "not airflow"

lint: $(STAMP)
	$(BIN)/ruff check plugins tests bench dags docs
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

lock:
	$(BIN)/uv pip compile --quiet --no-header --python-version 3.11 requirements.in -o requirements.lock

airflow: $(STAMP)
	$(BIN)/pubdata airflow

# The README's picture of the public catalog, rendered by headless Chromium (Debian's chromium).
catalog-screenshot: $(STAMP)
	$(BIN)/python docs/catalog_screenshot.py docs/catalog.png

clean:
	rm -rf var
