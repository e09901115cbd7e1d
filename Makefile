# The two commands: `make run` (set up, then serve gRPC + REST on the demo fleet) and `make test`.
# Set-up is idempotent: a local venv (.venv) from pyproject.toml and the pinned buf CLI from npm.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup hooks run test protos lint check-protos clean bench

$(STAMP): pyproject.toml package.json package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch first (it lies on disk here); an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

setup: $(STAMP) hooks

# The commit-msg hook (subjects of at most 72 characters); tests/test_commits.py checks the history too.
hooks:
	@sh .githooks/install

run: setup
	$(VENV)/bin/mining-health-server --with-envoy $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

protos: setup
	bash protos/generate.sh

lint: setup
	$(VENV)/bin/ruff check server clients tests bench .githooks/commit-msg
	$(VENV)/bin/ruff format --check server clients tests bench .githooks/commit-msg
	$(VENV)/bin/mypy server clients
	npx buf lint

clean:
	rm -rf $(VENV) node_modules var

# Performance benchmark (numbers, not tests): installs h2load (apt) if missing, then writes
# bench/results/perf.md. ARGS passes options, e.g. ARGS="--fleet-sizes 1000,10000 --repeats 1".
bench: setup
	bash bench/setup.sh
	$(PY) -m bench.run --out bench/results/perf.md $(ARGS)
