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

.PHONY: run test install install-dev lint fmt typecheck migrate bench clean screenshots

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
	$(BIN)/ruff format src tests migrations bench scripts
	$(BIN)/ruff check --fix src tests migrations bench scripts

lint: install-dev
	$(BIN)/ruff format --check src tests migrations bench scripts
	$(BIN)/ruff check src tests migrations bench scripts

typecheck: install-dev
	$(BIN)/mypy
	$(BIN)/mypy scripts/render_dashboard.py bench

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

test: lint typecheck check-deploy
	$(BIN)/pytest -n auto $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .pytest_cache .ruff_cache

# The dashboard renderer uses plotly, a development dependency.
screenshots: install-dev
	scripts/screenshots.sh

# The benchmark (never part of `make test`): kassa on PostgreSQL + Redis with --workers 2,
# interleaved with the lean reference in bench/reference, closed loop (wrk) and open loop,
# round trips counted on the wire, pgbench of each one's SQL; needs wrk and pgbench
# (apt-get install wrk postgresql-client). BENCH_ARGS="--duration 10" shortens each run;
# BENCH_ARGS="--profile" adds a py-spy profile; see `.venv/bin/python -m bench.run --help`.
BENCH_ARGS ?=
bench: install-dev
	$(BIN)/python -m bench.run $(BENCH_ARGS)
