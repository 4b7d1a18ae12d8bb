# Every install step lives here, so a fresh machine with Python 3.11+ and Node 20+ needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt

.PHONY: install lint typecheck unit test bench lock clean schema validate

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[infra,local,dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

test: lint typecheck
	$(BIN)/pytest

# Regenerate registry/*.schema.json after changing the registry models (a test fails while they are stale).
schema: $(STAMP)
	$(BIN)/python -m infra.registry schema

# Check the registry for one environment (ENV=dev|staging|prod), listing every error and warning.
ENV ?= prod
validate: $(STAMP)
	$(BIN)/python -m infra.registry validate --env $(ENV)

bench: $(STAMP)
	$(BIN)/python -m bench

# Re-pin after changing dependencies in pyproject.toml.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet '.[infra,local,dev]'
	.lock-venv/bin/pip freeze --exclude callback-dispatcher > $(CONSTRAINTS)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) cdk.out .pytest_cache .mypy_cache .ruff_cache
