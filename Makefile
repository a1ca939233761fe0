# The two commands the README opens with:
#   make run    serve the gateway on 127.0.0.1:8000 with the fake provider (no keys, no network)
#   make test   lint, type-check and run the whole test suite
# Each creates .venv and installs what it needs on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test lint typecheck pytest bench bench-quick bench-peers clean tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/gateway serve $(ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy gateway

# The programs the tests run for real (redis-server, Chromium, Node.js), listed once in
# .ci/required-tools: installed when missing (as root, with apt-get). With CI set, one that is
# still missing fails the run here, before any test could skip for want of it.
tools:
	@.ci/tools install
	@.ci/tools check

# The AI SDK tests run the `ai` package's own client code in Node, with the versions pinned in
# tests/ui_sdk/package-lock.json. Without Node they fail (never skip): install it first.
UI_SDK := tests/ui_sdk

$(UI_SDK)/node_modules/.installed: $(UI_SDK)/package.json $(UI_SDK)/package-lock.json
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { \
	  echo "error: the AI SDK tests need Node.js and npm (apt-get install nodejs npm)" >&2; \
	  exit 1; }
	npm ci --prefix $(UI_SDK) --no-audit --no-fund --loglevel=error
	touch $@

pytest: $(VENV)/.dev-installed tools $(UI_SDK)/node_modules/.installed
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest $(ARGS)
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

test: tools lint typecheck pytest

bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench.run $(ARGS)

bench-quick: $(VENV)/.dev-installed
	$(BIN)/python -m bench.run --quick $(ARGS)

# The same phases against a naive FastAPI relay and Portkey's gateway (pinned, from npm).
bench/peers/node_modules/.installed: bench/peers/package.json bench/peers/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "bench-peers needs Node.js and npm (apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix bench/peers --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

bench-peers: $(VENV)/.dev-installed bench/peers/node_modules/.installed
	$(BIN)/python -m bench.run --peers $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* *.egg-info
	rm -rf $(UI_SDK)/node_modules
