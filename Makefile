# The two commands a new user needs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test install install-dev lint fmt typecheck migrate bench clean screenshots openapi clients client-tools

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

install: $(UV)
	$(UV) sync --frozen --no-dev --inexact --quiet

install-dev: $(UV)
	$(UV) sync --frozen --quiet

run: install
	$(BIN)/kassa serve --host $(HOST) --port $(PORT)

migrate: install
	$(BIN)/kassa migrate

fmt: install-dev
	$(BIN)/ruff format src tests migrations bench scripts deploy/localstripe
	$(BIN)/ruff check --fix src tests migrations bench scripts deploy/localstripe

lint: install-dev
	$(BIN)/ruff format --check src tests migrations bench scripts deploy/localstripe
	$(BIN)/ruff check src tests migrations bench scripts deploy/localstripe

# mypy strict on src/, the scripts, the benchmark, and the client walks in tests/clients (so
# they are checked against the generated client's types).
typecheck: install-dev
	$(BIN)/mypy
	$(BIN)/mypy scripts/render_dashboard.py scripts/image_check.py scripts/check_migrations.py scripts/generate_clients.py scripts/export_openapi.py bench
	$(BIN)/mypy tests/clients

# The delivery files, checked statically (no Docker engine needed): the Dockerfiles with
# hadolint, the GitHub workflows and compose files against their JSON schemas (vendored in
# check-jsonschema, so offline), and the Prometheus config and alert rules with promtool
# (Debian's `prometheus` package; .ci/run installs it, and CI=true makes it required).
.PHONY: check-deploy
check-deploy: install-dev
	$(BIN)/hadolint Dockerfile deploy/localstripe/Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml compose.sandbox.yaml
	@for script in deploy/docker/entrypoint.sh deploy/make-env.sh; do sh -n "$$script" || exit 1; done
	@for script in .ci/run scripts/sandbox.sh scripts/screenshots.sh; do bash -n "$$script" || exit 1; done
	@rules="$(wildcard deploy/observability/*rules*.yml)"; [ -n "$$rules" ] || exit 0; \
	if ! command -v promtool >/dev/null 2>&1; then \
	  case "$${CI:-}" in 1|true|TRUE|True|yes) \
	    echo "check-deploy: promtool is missing (apt-get install prometheus)" >&2; exit 1;; esac; \
	  echo "check-deploy: promtool is not installed; alert rules not checked (apt-get install prometheus)"; \
	  exit 0; \
	fi; \
	set -e; echo "promtool check rules $$rules"; promtool check rules $$rules; \
	for config in $(wildcard deploy/observability/prometheus*.yml); do \
	  echo "promtool check config $$config"; promtool check config "$$config"; done; \
	for tests in $(wildcard deploy/observability/*test*.yml); do \
	  echo "promtool test rules $$tests"; promtool test rules "$$tests"; done

# The OpenAPI document kassa serves, committed as docs/openapi.json (tests/test_openapi.py
# fails when the two differ, and validates it with openapi-spec-validator and prance).
openapi: install-dev
	$(BIN)/python scripts/export_openapi.py

# The client libraries generated from docs/openapi.json (scripts/generate_clients.py): a typed
# Python package (openapi-python-client, in a locked environment of its own because it pins
# an older typer than kassa) and a TypeScript one (openapi-typescript types for openapi-fetch,
# packages from clients/typescript/package-lock.json). tests/clients/ fails when they are stale
# and walks a payment's life with each against `kassa serve`.
PYTHON_GENERATOR := $(TOOLS)/python-generator
NODE_MODULES := clients/typescript/node_modules/.package-lock.json

$(PYTHON_GENERATOR)/bin/openapi-python-client: clients/python-generator/uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CURDIR)/$(PYTHON_GENERATOR) $(UV) sync --frozen --quiet --project clients/python-generator
	touch $@

$(NODE_MODULES): clients/typescript/package-lock.json
	cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error

client-tools: $(PYTHON_GENERATOR)/bin/openapi-python-client $(NODE_MODULES)

# playwright-core for the browser tests (tests/browserkit.py): it drives Debian's chromium
# (/usr/bin/chromium), so it never downloads a browser of its own.
BROWSER_MODULES := tests/browser/node_modules/.package-lock.json

$(BROWSER_MODULES): tests/browser/package-lock.json
	cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error

.PHONY: browser-tools
browser-tools: $(BROWSER_MODULES)

clients: openapi client-tools
	$(BIN)/python scripts/generate_clients.py

test: lint typecheck check-deploy test-suite

# The test suite alone (CI runs lint, typecheck and check-deploy as steps of their own, once).
.PHONY: test-suite
test-suite: install-dev client-tools browser-tools
	$(BIN)/pytest -n auto $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .pytest_cache .ruff_cache clients/typescript/node_modules tests/browser/node_modules

# Migrations added since the newest release tag (or BASE=<ref>) must leave that release
# working while they run: expand before contract (scripts/check_migrations.py).
.PHONY: check-migrations
check-migrations:
	$(PYTHON) scripts/check_migrations.py $(if $(BASE),--base $(BASE))

# The Stripe-shaped sandbox without containers: localstripe on 127.0.0.1:$(LOCALSTRIPE_PORT)
# (deploy/localstripe/kassa_localstripe.py) and kassa on $(HOST):$(PORT) with
# KASSA_PROCESSOR=stripe pointed at it, on SQLite (kassa-sandbox.db). See README, Stripe.
LOCALSTRIPE_PORT ?= 8420
.PHONY: sandbox
sandbox: install-dev
	HOST=$(HOST) PORT=$(PORT) LOCALSTRIPE_PORT=$(LOCALSTRIPE_PORT) BIN=$(BIN) scripts/sandbox.sh

# The image built with podman and run as production runs it (scripts/image_check.py): a
# local stand-in for python:3.11-slim (debootstrap, cached in .cache/image/), kassa's image
# from the Dockerfile, then migrate, serve, health check, a payment's life, a webhook from
# the worker and SIGTERM against this machine's PostgreSQL and Redis; then the tests that
# show its checks fail on broken variants of the image. Needs root, podman, runc and
# debootstrap (apt-get install podman runc debootstrap; .ci/run installs them).
.PHONY: image-check
image-check: install-dev
	$(BIN)/python scripts/image_check.py
	$(BIN)/pytest -p no:randomly -q -n 0 -m image tests/deploy/test_image_check.py

# The dashboard renderer uses plotly, a development dependency.
screenshots: install-dev browser-tools
	scripts/screenshots.sh

# The benchmark (never part of `make test`): kassa on PostgreSQL + Redis with --workers 2,
# interleaved with the lean reference in bench/reference, closed loop (wrk) and open loop,
# round trips counted on the wire, pgbench of each one's SQL; needs wrk and pgbench
# (apt-get install wrk postgresql-client). BENCH_ARGS="--duration 10" shortens each run;
# BENCH_ARGS="--profile" adds a py-spy profile; see `.venv/bin/python -m bench.run --help`.
BENCH_ARGS ?=
bench: install-dev
	$(BIN)/python -m bench.run $(BENCH_ARGS)
