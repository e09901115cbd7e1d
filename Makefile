# The two commands: `make run` (set up, then serve gRPC + REST on the demo fleet) and `make test`.
# Set-up is idempotent: a local venv (.venv) from pyproject.toml and the pinned buf CLI from npm.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test protos lint check-protos clean bench monitoring monitoring-tools

$(STAMP): pyproject.toml package.json package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch first (it lies on disk here); an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

setup: $(STAMP) monitoring-tools

# Prometheus and Alertmanager (apt, only when missing): the alert tests and `make monitoring` run them.
monitoring-tools:
	bash deploy/setup.sh

run: setup
	$(VENV)/bin/mining-health-server --with-envoy $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

protos: setup
	bash protos/generate.sh

lint: setup
	$(VENV)/bin/ruff check server clients tests bench deploy
	$(VENV)/bin/ruff format --check server clients tests bench deploy
	$(VENV)/bin/mypy server clients deploy
	npx buf lint

clean:
	rm -rf $(VENV) node_modules var

# Performance benchmark (numbers, not tests): installs h2load (apt) if missing, then writes
# bench/results/perf.md. ARGS passes options, e.g. ARGS="--fleet-sizes 1000,10000 --repeats 1".
bench: setup
	bash bench/setup.sh
	$(PY) -m bench.run --out bench/results/perf.md $(ARGS)

# Prometheus (:9090) and Alertmanager (:9093) against a running `make run` (metrics on :9464), alerts
# printed by a webhook receiver on :9095. FAST=1: 1 s scrapes and evaluations, 3 s alert periods.
monitoring: setup
	$(PY) -m deploy.monitoring $(if $(FAST),--fast) $(ARGS)
