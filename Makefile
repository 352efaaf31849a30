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
	$(BIN)/ruff format src tests migrations
	$(BIN)/ruff check --fix src tests migrations

lint: install-dev
	$(BIN)/ruff format --check src tests migrations
	$(BIN)/ruff check src tests migrations

typecheck: install-dev
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -n auto $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .pytest_cache .ruff_cache

screenshots: install
	scripts/screenshots.sh
