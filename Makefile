# `make serve` and `make test` work on a fresh machine with Python 3.11+ and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PYTEST_ARGS ?=
# `make serve PORT=8013 HOST=0.0.0.0 DATA_DIR=/tmp/files`; the OPENAI_FILES_* variables work too.
HOST ?= $(or $(OPENAI_FILES_HOST),127.0.0.1)
PORT ?= $(or $(OPENAI_FILES_PORT),8000)
DATA_DIR ?= $(or $(OPENAI_FILES_DATA_DIR),./data)

.PHONY: serve quickstart examples test lint typecheck unit docs docs-serve bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-examples: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[examples]'
	touch $@ $(VENV)/.installed-base

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-base $(VENV)/.installed-examples

serve: $(VENV)/.installed-base
	$(BIN)/openai-files serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

# The SDKs the examples use (openai, fastapi), in the same environment.
examples: $(VENV)/.installed-examples

# With `make serve` running in another terminal: the quickstart with the openai SDK.
quickstart: $(VENV)/.installed-examples
	OPENAI_BASE_URL=$${OPENAI_BASE_URL:-http://$(HOST):$(PORT)/v1} $(BIN)/python examples/quickstart.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

# The soak scripts import one another as top-level modules (they run as scripts), and the
# harness of benchmarks/: they are checked on their own, as such.
typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy src tests examples benchmarks --exclude '^tests/soak/'
	MYPYPATH=src:benchmarks $(BIN)/mypy --no-namespace-packages tests/soak

# Four workers, more than the cores of a small machine: much of the suite waits on servers and
# subprocesses it starts, and the waits overlap (on 2 cores, the same tests: 5.5 min against 6.8).
unit: $(VENV)/.installed-dev
	$(BIN)/pytest -n 4 $(PYTEST_ARGS)

docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

# The docs site on http://127.0.0.1:8001 (8000 is the server's), rebuilt as pages change.
docs-serve: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

test: lint typecheck docs unit

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build site
