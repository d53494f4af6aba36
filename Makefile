# The verbs a newcomer needs. Every target installs what it uses on first run.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
MERMAID := scripts/mermaid
PY       := $(VENV)/bin/python
SAM      := $(SAM_VENV)/bin/sam
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1
# The template linters and `sam validate` need a region, never credentials.
export AWS_DEFAULT_REGION ?= us-east-1
# CI sets CI=true: hypothesis then runs its derandomised "ci" profile (tests/conftest.py).


# Universal (markers for every platform, hashes of every file of each release), so that one lock
# serves Linux, macOS and Windows, and the build's arm64 wheels are among its hashes.
UV_COMPILE = $(VENV)/bin/uv pip compile --universal --python-version 3.13 --generate-hashes \
	--custom-compile-command "make lock" --quiet

.PHONY: help setup hooks scan run demo send load test lint fmt typecheck events lock bench bench-moto clean sam-build deploy

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements/dev.txt pyproject.toml
	@PY313=$$(scripts/find-python313) && "$$PY313" -m venv --clear $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	@# functions/ is on the path as Lambda puts it there; the repo root holds tools/ and bench/.
	@printf '%s\n%s\n' "$(CURDIR)/functions" "$(CURDIR)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/ebbot-pipeline.pth"
	@# The command line, .venv/bin/ebbot-webhooks (pyproject's [project.scripts]); nothing else is installed.
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

$(SAM_VENV)/.installed: requirements/sam.txt
	@PY313=$$(scripts/find-python313) && "$$PY313" -m venv --clear $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/sam.txt
	@touch $@

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	@PY313=$$(scripts/find-python313) && "$$PY313" -m venv --clear $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements/checkov.txt
	@touch $@

# Mermaid's own parser, for the diagrams in README.md and docs/ (needs node 18+ and npm).
$(MERMAID)/node_modules/.installed: $(MERMAID)/package-lock.json
	npm ci --prefix $(MERMAID) --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed $(MERMAID)/node_modules/.installed ## create the venvs (project, SAM CLI, checkov) and the diagram checker

hooks: $(VENV)/.installed ## install the git hooks: ruff, ruff format and mypy before each commit (.pre-commit-config.yaml)
	$(VENV)/bin/pre-commit install

run: $(VENV)/.installed $(SAM_VENV)/.installed ## the main job: the whole pipeline on localhost, until Ctrl-C
	$(PY) -m tools run

demo: $(VENV)/.installed $(SAM_VENV)/.installed ## start the local stack, post every sample, show what was stored, stop
	$(PY) -m tools demo

send: $(VENV)/.installed ## post every sample to the running local stack and show what was stored
	$(PY) -m tools send

load: $(VENV)/.installed ## several thousand generated webhooks against the running local stack (make run)
	$(PY) -m tools.load --chats $${CHATS:-400} --concurrency $${CONCURRENCY:-32}

test: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed $(MERMAID)/node_modules/.installed ## lint, type-check, scan the template and run every test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m tools.events --check
	$(SAM_VENV)/bin/cfn-lint --append-rules cfn_lint_serverless.rules -- template.yaml examples/low-rating-alert/template.yaml
	$(SAM) validate --lint --template-file template.yaml
	$(CHECKOV_VENV)/bin/checkov --skip-download --quiet --compact --framework cloudformation -f template.yaml
	node $(MERMAID)/check.mjs README.md docs/*.md
	$(PY) -m pytest

scan: $(CHECKOV_VENV)/.installed ## checkov on template.yaml (each waiver is next to its resource, with its reason)
	$(CHECKOV_VENV)/bin/checkov --skip-download --compact --framework cloudformation -f template.yaml

lint: $(VENV)/.installed ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(VENV)/.installed ## format and auto-fix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(VENV)/.installed ## mypy (strict, pydantic plugin)
	$(VENV)/bin/mypy

events: $(VENV)/.installed ## regenerate events/apigw from events/webhooks
	$(PY) -m tools.events

lock: ## re-pin requirements/dev.txt and the layer's requirements from pyproject.toml, with hashes (needs the registry)
	@# uv keeps the versions already pinned where pyproject.toml allows them (add --upgrade to move).
	@test -x $(VENV)/bin/uv || { PY313=$$(scripts/find-python313) && "$$PY313" -m venv $(VENV) && $(VENV)/bin/pip install --quiet uv; }
	$(UV_COMPILE) pyproject.toml --extra dev -o requirements/dev.txt
	@# The layer: the runtime dependencies' closure, at the lock's versions and with its hashes.
	$(UV_COMPILE) pyproject.toml --constraint requirements/dev.txt -o layers/dependencies/requirements.txt
	@# The SAM CLI's venv: its own closure (it pins boto3 and pydantic apart from ours), hashed too.
	$(UV_COMPILE) requirements/sam.in -o requirements/sam.txt
	$(UV_COMPILE) requirements/checkov.in -o requirements/checkov.txt

sam-build: $(SAM_VENV)/.installed $(VENV)/.installed ## sam build (python3.13, arm64, no container), then bytecode
	PATH="$$(dirname $$(scripts/find-python313)):$$PATH" $(SAM) build
	$(PY) -m tools.precompile .aws-sam/build

deploy: sam-build ## sam deploy to your AWS account (STAGE=dev|prod, see samconfig.toml)
	$(SAM) deploy --config-env $${STAGE:-default}

bench: $(VENV)/.installed ## benchmarks, as ratios to baselines measured in the same run (bench/results/latest.json)
	$(PY) bench/run.py
	$(PY) bench/consumers.py
	$(PY) bench/cost.py
	$(PY) bench/e2e.py

bench-moto: $(VENV)/.installed $(SAM_VENV)/.installed ## what each of moto's speed patches is worth to the local stack (about 15 minutes)
	$(PY) bench/speedups.py

clean: ## remove venvs, build output and local state
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) $(MERMAID)/node_modules .aws-sam .local .pytest_cache .mypy_cache .ruff_cache .hypothesis
