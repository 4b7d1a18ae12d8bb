# Every install step lives here, so a fresh machine with Python 3.11+ and Node 20+ needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt

.PHONY: install demo lint typecheck unit test bench lock clean schema validate asset synth

$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e '.[infra,local,dev]'
	touch $(STAMP)

install: $(STAMP)

# The main job: the whole dispatcher on this machine (embedded AWS, pollers, functions, a demo receiver),
# 2,000 events, and an account of every one. `.venv/bin/dispatcher demo --help` lists the fault knobs.
demo: $(STAMP)
	$(BIN)/dispatcher demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

test: lint typecheck
	$(BIN)/pytest

# Regenerate registry/*.schema.json and the field reference in docs/registry.md after changing the
# registry models (a test fails while they are stale).
schema: $(STAMP)
	$(BIN)/python -m infra.registry schema

# Check the registry for one environment (ENV=dev|staging|prod), listing every error and warning.
ENV ?= prod
validate: $(STAMP)
	$(BIN)/python -m infra.registry validate --env $(ENV)

# The Lambda asset, built without Docker: pinned wheels for Lambda's platform plus functions/.
ASSET_DIR := build/lambda-asset
ASSET_STAMP := build/lambda-asset.stamp
FUNCTION_SOURCES := $(shell find functions -name '*.py' -not -path '*/__pycache__/*')
$(ASSET_STAMP): $(STAMP) pyproject.toml $(CONSTRAINTS) infra/lambda_asset.py $(FUNCTION_SOURCES)
	$(BIN)/python -m infra.lambda_asset build $(ASSET_DIR)
	touch $(ASSET_STAMP)

asset: $(ASSET_STAMP)

# The CDK CLI, pinned in package.json / package-lock.json.
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# `cdk synth` for every environment (cdk-nag fails it on any unacknowledged finding), then cfn-lint.
# The stacks are environment-agnostic and nothing is looked up, so no AWS credentials are needed.
# cfn-lint skips W3005: the CDK pairs a function's GetAtt on its role with an explicit DependsOn
# (redundant, harmless).
ENVIRONMENTS := dev staging prod
CDK := AWS_EC2_METADATA_DISABLED=true node_modules/.bin/cdk
synth: $(STAMP) $(NODE_STAMP) $(ASSET_STAMP)
	rm -rf cdk.out
	for env in $(ENVIRONMENTS); do \
		$(CDK) synth --quiet --no-notices --no-version-reporting -c env=$$env -c lambda_asset=$(ASSET_DIR) \
			--output cdk.out/$$env || exit 1; \
	done
	$(BIN)/cfn-lint --ignore-checks W3005 -- cdk.out/*/*.template.json
	$(BIN)/python -m infra.lambda_asset size $(ASSET_DIR)

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
	rm -rf $(VENV) cdk.out .pytest_cache .mypy_cache .ruff_cache build node_modules
