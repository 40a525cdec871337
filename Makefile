# The Makefile is the contract: `make help` lists what you can run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
SAM_VENV  ?= .venv-sam
# The Lambda runtime's interpreter for the local runtime: python3.12 and the runtime's boto3 only.
LAMBDA_VENV ?= .venv-lambda
# Lambda runs python3.12: use it locally when pyenv (or the system) has it, else python3.
PYTHON    ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12) python3)
PY        := $(VENV)/bin/python
SCENARIO  ?= happy
APPROVAL  ?= auto
# The browser tier drives this Chromium (Debian's `chromium` package; `make install` installs it).
CHROMIUM  ?= /usr/bin/chromium
SUDO      := $(if $(filter 0,$(shell id -u)),,sudo)
export CHROMIUM
export PYTHONPATH := layers/common:.
# What `sam build` makes of template.yaml for this machine (the local runtime runs it): the template's
# Architecture parameter picks the wheels, everything else is the build that ships.
LOCAL_ARCH := $(if $(filter aarch64 arm64,$(shell uname -m)),arm64,x86_64)
export LOCAL_BUILD_DIR := $(CURDIR)/.aws-sam/build-local
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help install demo test lint unit integration statemachine e2e browser conformance bench build build-local deploy teardown clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt layers/common/requirements.txt | $(CHROMIUM)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

# The browser tier's Chromium, from Debian (playwright's own browser download is never used).
# Without apt-get, say what to do: the browser tier then fails with the same advice.
$(CHROMIUM):
	@if command -v apt-get >/dev/null; then \
	  set -x; $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	else \
	  echo "warning: $(CHROMIUM) is missing and apt-get is not available: install Chromium and run make with CHROMIUM=/path/to/chromium (the browser tier needs it)" >&2; \
	fi

# checkov and zizmor, in a virtualenv of their own as well.
LINT_VENV ?= .venv-lint
$(LINT_VENV)/.installed: requirements-lint.txt
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet --upgrade pip
	$(LINT_VENV)/bin/pip install --quiet -r requirements-lint.txt
	touch $@

# aws-sam-cli pins its own versions of shared libraries, so it lives in a venv of its own.
$(SAM_VENV)/.installed: requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet -r requirements-sam.txt
	touch $@

# Lambda's python3.12 runtime: its interpreter and its boto3, nothing else (see requirements-lambda-runtime.txt).
LAMBDA_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12))
$(LAMBDA_VENV)/.installed: requirements-lambda-runtime.txt
	@test -n "$(LAMBDA_PYTHON)" || { echo "error: the local runtime needs python3.12 (Lambda's runtime); install it (pyenv install 3.12) or pass LAMBDA_PYTHON=/path/to/python3.12" >&2; exit 1; }
	$(LAMBDA_PYTHON) -m venv $(LAMBDA_VENV)
	$(LAMBDA_VENV)/bin/pip install --quiet --upgrade pip
	$(LAMBDA_VENV)/bin/pip install --quiet -r requirements-lambda-runtime.txt
	touch $@

install: $(VENV)/.installed $(SAM_VENV)/.installed $(LINT_VENV)/.installed $(LAMBDA_VENV)/.installed ## create the virtualenvs and install Debian chromium if missing (done by demo and test too)

demo: $(VENV)/.installed build-local ## run a whole release locally: make demo [SCENARIO=happy|...|all] [APPROVAL=auto|manual]
	$(PY) -m local.demo --scenario $(SCENARIO) --approval $(APPROVAL)

# A local stack that stays up (local/serve.py): `podrelease --local` talks to it.
.PHONY: up down push
up: $(VENV)/.installed build-local ## start the local runtime in the background; prints its endpoints (state in .demo/up/state.json)
	$(PY) -m local.serve up

down: $(VENV)/.installed ## stop the local runtime `make up` started
	$(PY) -m local.serve down

push: $(VENV)/.installed ## push a signed demo image to the running local runtime (a release starts): make push [VERSION=6.9.3]
	$(PY) -m local.serve push $(if $(VERSION),--version $(VERSION))

lint: $(VENV)/.installed $(SAM_VENV)/.installed $(LINT_VENV)/.installed ## static checks: ruff, mypy, import contracts, cfn-lint, sam validate --lint, checkov (raw and SAM-translated), zizmor
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy layers/common/podrelease workload/gate/secretgate.py
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_layering.py
	$(VENV)/bin/cfn-lint --append-rules scripts/preflight -- template.yaml
	$(SAM_VENV)/bin/sam validate --lint --template template.yaml --region $(AWS_DEFAULT_REGION)
	mkdir -p build/checkov
	$(PY) scripts/sam-translate.py > build/checkov/template.json
	BC_SKIP_MAPPING=TRUE $(LINT_VENV)/bin/checkov --quiet --compact --config-file .checkov.yaml -f template.yaml build/checkov/template.json
	$(LINT_VENV)/bin/zizmor --offline .github/workflows

test: lint build build-local ## static checks and sam build (for Lambda and for this machine), then every test tier
	$(PY) -m pytest

unit: $(VENV)/.installed ## unit tests only
	$(PY) -m pytest tests/unit

integration: $(VENV)/.installed ## handler tests against moto in process
	$(PY) -m pytest tests/integration

statemachine: $(VENV)/.installed build-local ## the shipped ASL through the local runtime
	$(PY) -m pytest tests/statemachine

e2e: $(VENV)/.installed build build-local ## the demo scenarios
	$(PY) -m pytest tests/e2e

browser: $(VENV)/.installed build-local ## the approval page in headless Chromium, on a real release of the local runtime
	$(PY) -m pytest tests/browser

conformance: $(VENV)/.installed ## the sigstore-conformance client on every shipped bundle vector; prints the suite cases covered (build/conformance/coverage.json)
	$(PY) -m pytest tests/conformance

bench: $(VENV)/.installed build-local ## the whole control plane on the local runtime (docs/bench.md): release overhead, transitions and cost before/after, a burst of 50 pushes, cold imports, the gates; writes build/bench.json and docs/bench.md
	$(PY) -m bench.control_plane

build: $(SAM_VENV)/.installed ## sam build for Lambda (python3.12, arm64): what `sam deploy` ships
	PATH="$(dir $(LAMBDA_PYTHON)):$$PATH" $(SAM_VENV)/bin/sam build --template template.yaml

build-local: $(SAM_VENV)/.installed $(LAMBDA_VENV)/.installed ## the same sam build for this machine's architecture, which the local runtime runs
	PATH="$(dir $(LAMBDA_PYTHON)):$$PATH" $(SAM_VENV)/bin/sam build --template template.yaml \
	  --parameter-overrides Architecture=$(LOCAL_ARCH) --build-dir $(LOCAL_BUILD_DIR) --cache-dir .aws-sam/cache-local

# make deploy/teardown: the knobs below are options of the scripts; every other variable given on
# make's command line (make deploy ENV=dev NotifyEmail=...) is a template parameter and reaches
# scripts/deploy.py as one Key=Value argument, read from the environment ("$$Name"), so the shell
# never splits or expands its value again.
DEPLOY_KNOBS := ENV POLICY KEYS DRY_RUN PURGE FORCE_DELETE_SECRETS CONFIRM VENV SAM_VENV LINT_VENV LAMBDA_VENV PYTHON LAMBDA_PYTHON CHROMIUM SCENARIO APPROVAL
DEPLOY_PARAMS = $(strip $(foreach v,$(sort $(filter-out $(DEPLOY_KNOBS),$(.VARIABLES))),$(if $(filter command line,$(origin $(v))),"$(v)=$$$(v)")))

deploy: $(VENV)/.installed $(SAM_VENV)/.installed ## deploy to AWS: make deploy ENV=dev|prod [Parameter=value ...] [POLICY=policy.json | KEYS=cosign.pub] [DRY_RUN=1]
	$(PY) scripts/deploy.py --env "$$ENV" $(if $(POLICY),--policy "$$POLICY") $(if $(KEYS),--keys "$$KEYS") $(if $(DRY_RUN),--dry-run) $(DEPLOY_PARAMS)

teardown: $(VENV)/.installed ## delete a stack: make teardown ENV=dev|prod [PURGE=1 [FORCE_DELETE_SECRETS=1]] [CONFIRM=<stack>] [DRY_RUN=1]
	$(PY) scripts/teardown.py --env "$$ENV" $(if $(PURGE),--purge) $(if $(FORCE_DELETE_SECRETS),--force-delete-secrets) $(if $(CONFIRM),--confirm "$$CONFIRM") $(if $(DRY_RUN),--dry-run) $(DEPLOY_PARAMS)

clean: ## remove virtualenvs, build output and demo state
	rm -rf $(VENV) $(SAM_VENV) $(LINT_VENV) $(LAMBDA_VENV) build .aws-sam .demo .pytest_cache .mypy_cache .ruff_cache
