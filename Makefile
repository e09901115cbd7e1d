# The two commands: `make run` (set up, then serve gRPC + REST on the demo fleet) and `make test`.
# Set-up is idempotent: a local venv (.venv) from pyproject.toml, the pinned Node tools from npm, the
# console's bundle (web/dist) and Debian's chromium for the browser tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
CONSOLE := web/dist/index.html
CHROMIUM := /usr/bin/chromium

.PHONY: setup hooks run run-postgres test protos lint check-protos clean bench console monitoring monitoring-tools \
	postgres-tools

$(STAMP): pyproject.toml package.json package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch first (it lies on disk here); an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

# The console: TypeScript bundled by esbuild from node_modules (offline once npm ci has run).
$(CONSOLE): $(STAMP) web/build.mjs web/tsconfig.json $(shell find web/src web/gen -type f 2>/dev/null)
	npm run --silent build

console: $(CONSOLE)

# Debian's browser for the console's Playwright tests (Playwright never downloads its own).
$(CHROMIUM):
	command -v apt-get >/dev/null || { echo "install chromium for the browser tests" >&2; exit 1; }
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

setup: $(STAMP) $(CONSOLE) $(CHROMIUM) monitoring-tools postgres-tools hooks

# The commit-msg hook (subjects of at most 72 characters); tests/test_commits.py checks the history too.
hooks:
	@sh .githooks/install

# Prometheus and Alertmanager (apt, only when missing): the alert tests and `make monitoring` run them.
monitoring-tools:
	bash deploy/setup.sh

# PostgreSQL (apt, only when missing) and its unprivileged user: the PostgreSQL tests and
# `make run-postgres` start their own server with initdb + pg_ctl (server/ops/pg_local.py).
postgres-tools:
	bash deploy/setup-postgres.sh

run: setup
	$(VENV)/bin/mining-health-server --with-envoy $(ARGS)

# The same demo on PostgreSQL: a local cluster kept in pgdata/ (initdb on first use, run as the
# unprivileged `postgres` user when root), the server on it through MFH_STORE; the cluster stops on exit.
run-postgres: setup
	$(PY) -m server.ops.pg_local --data-dir pgdata -- $(VENV)/bin/mining-health-server --with-envoy $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

protos: setup
	bash protos/generate.sh
	npm run --silent generate

lint: setup
	$(VENV)/bin/ruff check server clients tests bench deploy .githooks/commit-msg
	$(VENV)/bin/ruff format --check server clients tests bench deploy .githooks/commit-msg
	$(VENV)/bin/mypy server clients deploy
	$(VENV)/bin/lint-imports --no-logo
	npx buf lint
	npm run --silent typecheck

clean:
	rm -rf $(VENV) node_modules var pgdata web/dist

# Performance benchmark (numbers, not tests): installs h2load (apt) if missing, then writes
# bench/results/perf.md. ARGS passes options, e.g. ARGS="--fleet-sizes 1000,10000 --repeats 1".
bench: setup
	bash bench/setup.sh
	$(PY) -m bench.run --out bench/results/perf.md $(ARGS)

# Prometheus (:9090) and Alertmanager (:9093) against a running `make run` (metrics on :9464), alerts
# printed by a webhook receiver on :9095. FAST=1: 1 s scrapes and evaluations, 3 s alert periods.
monitoring: setup
	$(PY) -m deploy.monitoring $(if $(FAST),--fast) $(ARGS)
