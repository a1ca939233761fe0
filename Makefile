# The two commands the README opens with:
#   make run    serve the gateway on 127.0.0.1:8000 with the fake provider (no keys, no network)
#   make test   lint, type-check and run the whole test suite
# Each creates .venv and installs what it needs on first use, from the hashed locks in
# requirements/ (run.txt for the gateway, dev.txt for it and its tests), so that a fresh machine
# gets exactly the versions the suite passed with. pyproject.toml keeps open ranges for people
# who install the package as a library; `make test-latest` tries the newest releases on purpose
# and `make lock-upgrade` refreshes the locks (a commit of its own that says what moved).

SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=
LOCK_RUN := requirements/run.txt
LOCK_DEV := requirements/dev.txt
# The one way the locks are written: every platform's markers, hashes for every file.
COMPILE   = $(BIN)/uv pip compile pyproject.toml requirements/build.in --universal \
            --generate-hashes --python-version 3.11 --quiet

.PHONY: run test lint typecheck pytest bench bench-quick bench-peers bench-node soak clean tools lock lock-upgrade \
        test-latest test-lowest agents

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Hash-checked and without resolving anything: the lock is the whole list. The project itself is
# built with the locked setuptools (no build isolation, which would fetch the newest one).
$(VENV)/.run-installed: $(LOCK_RUN) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK_RUN)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev-installed: $(LOCK_DEV) pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK_DEV)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@ $(VENV)/.run-installed

# Write both locks from pyproject.toml. `make lock` keeps every pin it can (after adding or
# changing a dependency: only what must move, moves); `make lock-upgrade` takes the newest
# releases the ranges allow (a commit of its own that says what moved). The run lock is
# constrained by the dev lock, so the gateway runs with the versions its tests ran with.
UPGRADE ?=
lock: $(VENV)/.dev-installed
	$(COMPILE) $(UPGRADE) --extra dev -o $(LOCK_DEV)
	$(COMPILE) -c $(LOCK_DEV) -o $(LOCK_RUN)
	@git diff --stat -- requirements/ || true

lock-upgrade:
	$(MAKE) lock UPGRADE=--upgrade

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

# Claude Code and Codex (tests/e2e/test_claude_code.py, test_codex.py), pinned in
# tests/agents/package-lock.json, are native binaries of ~200 MB each: installed outside the
# clone, in a cache keyed by the lock's hash that every checkout and CI run on this machine
# shares. Without it the tests fail (never skip).
AGENTS := tests/agents
GATEWAY_AGENTS_CACHE ?= /var/cache/llm-gateway-agents
export GATEWAY_AGENTS_CACHE
AGENTS_DIR = $(GATEWAY_AGENTS_CACHE)/$(shell sha256sum $(AGENTS)/package-lock.json | cut -c1-64)

agents:
	@test -f $(AGENTS_DIR)/.installed || { \
	  command -v npm >/dev/null 2>&1 || { echo "error: the agent tests need Node.js and npm" >&2; exit 1; }; \
	  rm -rf $(AGENTS_DIR).tmp && mkdir -p $(AGENTS_DIR).tmp && \
	  cp $(AGENTS)/package.json $(AGENTS)/package-lock.json $(AGENTS_DIR).tmp/ && \
	  npm ci --prefix $(AGENTS_DIR).tmp --no-audit --no-fund --loglevel=error && \
	  touch $(AGENTS_DIR).tmp/.installed && rm -rf $(AGENTS_DIR) && mv $(AGENTS_DIR).tmp $(AGENTS_DIR); }

# The suite runs on pytest-xdist workers, a test file each at a time (--dist loadfile: a module's
# shared fixtures, one Chromium or one Node process, are set up once). Much of its time is
# waiting on sockets and programs: on 2 cores two workers took a third off the wall time.
# Coverage follows them (its subprocess patch, pyproject.toml) and `coverage combine` joins
# them. `make test PYTEST_WORKERS=0` runs the suite in one process.
PYTEST_WORKERS ?= 2

pytest: $(VENV)/.dev-installed tools $(UI_SDK)/node_modules/.installed agents
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(ARGS)
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

test: tools lint typecheck pytest

# Drift found on purpose, in venvs of their own (.venv keeps the lock): `make test-latest` takes
# the newest releases of everything, `make test-lowest` the lowest that pyproject.toml allows for
# each direct dependency (so its lower bounds are tested bounds). Each prints what moved against
# the lock, then runs the whole suite and reports what breaks; `make lock-upgrade` takes the
# newest releases in a commit of its own. Lint and type-check run on the newest tools only.
RESOLVE_latest := --upgrade
RESOLVE_lowest := --resolution lowest-direct
CHECKS_latest   = $(ENV_BIN)/ruff check gateway tests bench && $(ENV_BIN)/mypy gateway
CHECKS_lowest   = true
test-latest test-lowest: test-%: $(VENV)/.dev-installed tools $(UI_SDK)/node_modules/.installed agents
	$(eval ENV_DIR := .venv-$*)
	$(eval ENV_BIN := $(ENV_DIR)/bin)
	rm -rf $(ENV_DIR) && $(PYTHON) -m venv $(ENV_DIR)
	$(COMPILE) $(RESOLVE_$*) --extra dev -o $(ENV_DIR)/requirements.txt
	@echo "what moves against $(LOCK_DEV):"
	@diff <(grep -E '^[A-Za-z0-9]' $(LOCK_DEV)) <(grep -E '^[A-Za-z0-9]' $(ENV_DIR)/requirements.txt) \
	  | grep -E '^[<>]' || echo "  nothing: the lock has exactly these versions"
	$(ENV_BIN)/pip install --quiet --require-hashes --no-deps -r $(ENV_DIR)/requirements.txt
	$(ENV_BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(CHECKS_$*)
	PATH="$(CURDIR)/$(ENV_BIN):$$PATH" $(ENV_BIN)/python -m pytest $(ARGS)

bench: $(VENV)/.dev-installed
	$(BIN)/python -m bench.run $(ARGS)

bench-quick: $(VENV)/.dev-installed
	$(BIN)/python -m bench.run --quick $(ARGS)

# Sustained mixed traffic with faults, checking that memory, descriptors, tasks and Redis
# level off and that every stream is accounted for (bench/soak.py; docs/PERFORMANCE.md):
#   make soak ARGS="--duration 600 [--redis] [--svg]"
soak: $(VENV)/.dev-installed
	$(BIN)/python -m bench.soak $(ARGS)

# The same phases against a naive FastAPI relay and Portkey's gateway (pinned, from npm).
bench/peers/node_modules/.installed: bench/peers/package.json bench/peers/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "bench-peers needs Node.js and npm (apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix bench/peers --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

bench-peers: $(VENV)/.dev-installed bench/peers/node_modules/.installed
	$(BIN)/python -m bench.run --peers $(ARGS)

# The same servers under an independent harness, a Node mock upstream and a Node load client
# (bench/node/), to compare with bench-peers (docs/PERFORMANCE.md, "Two harnesses"):
#   make bench-node ARGS="[--quick] [--cross]"
bench-node: $(VENV)/.dev-installed bench/peers/node_modules/.installed
	$(BIN)/python -m bench.node_harness --peers $(ARGS)

clean:
	rm -rf $(VENV) .venv-latest .venv-lowest .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.* *.egg-info
	rm -rf $(UI_SDK)/node_modules
