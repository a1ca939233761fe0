# The two commands the README opens with:
#   make run    serve the gateway on 127.0.0.1:8000 with the fake provider (no keys, no network)
#   make test   lint, type-check and run the whole test suite
# Each creates .venv and installs what it needs on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test lint typecheck pytest bench bench-quick bench-peers clean redis-server

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

# The Redis tests use a real, throwaway redis-server that the test suite starts itself.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server (Debian package) for the Redis tests"; \
	    (apt-get update -qq || true) >/dev/null 2>&1; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
	      || echo "note: could not install redis-server: Redis tests will skip"; \
	  else \
	    echo "note: redis-server is missing (apt-get install redis-server): Redis tests will skip"; \
	  fi; }

pytest: $(VENV)/.dev-installed redis-server
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest $(ARGS)
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

test: lint typecheck pytest

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
