# Two commands on a fresh machine: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: demo test test-oldest dist-check bench bench-smoke bench-peers lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_QUIET) --upgrade pip

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_QUIET) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_QUIET) -e ".[dev]"
	touch $@ $(VENV)/.installed-demo

## Serve the demo app on http://127.0.0.1:5000 (prints curl lines to try); another port:
## make demo PORT=5001 (or PORT in the environment).
PORT ?= 5000
demo: $(VENV)/.installed-demo
	PORT=$(PORT) $(BIN)/python examples/demo.py

## The whole suite, then ruff and mypy strict.
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## The suite against the oldest supported Flask and Werkzeug, in their own venv.
test-oldest:
	$(MAKE) VENV=.venv-oldest .venv-oldest/.installed-dev
	.venv-oldest/bin/pip install $(PIP_QUIET) "flask==2.3.*" "werkzeug==2.3.*"
	.venv-oldest/bin/python -m pytest -p no:cacheprovider -q

## Build wheel and sdist, install the wheel alone in a clean venv, serve the demo from it.
dist-check: $(VENV)/.installed-dev
	rm -rf dist .venv-dist
	$(BIN)/python -m build --quiet --outdir dist .
	$(PYTHON) -m venv .venv-dist
	.venv-dist/bin/pip install $(PIP_QUIET) dist/*.whl
	cd dist && ../.venv-dist/bin/python ../tests/check_installed_demo.py ../examples/demo.py

## Benchmarks (not tests; numbers go to stdout): overhead, Redis round trip (with and without
## hiredis, which gets its own venv in benchmarks/.venvs/), strategies, flood, peers, and
## load (behind gunicorn, with wrk when installed; written to benchmarks/LOAD.md).
bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/redis_roundtrip.py --hiredis
	$(BIN)/python benchmarks/strategies.py
	$(BIN)/python benchmarks/flood.py
	$(BIN)/python benchmarks/load.py
	$(BIN)/python benchmarks/peers.py
	$(BIN)/python benchmarks/instructions.py

bench-smoke: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/overhead.py --smoke
	$(BIN)/python benchmarks/redis_roundtrip.py --smoke
	$(BIN)/python benchmarks/strategies.py --smoke
	$(BIN)/python benchmarks/flood.py --smoke
	$(BIN)/python benchmarks/peers.py --smoke
	$(BIN)/python benchmarks/instructions.py --smoke
	$(BIN)/python benchmarks/load.py --smoke

## Side by side with Flask-Limiter and flask-gatekeeper 1.0 (own venvs in benchmarks/.venvs/);
## the report also goes to benchmarks/RESULTS.md.
bench-peers: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/peers.py

clean:
	rm -rf $(VENV) .venv-oldest .venv-dist dist .pytest_cache .mypy_cache .ruff_cache
