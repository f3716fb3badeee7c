# Two commands on a fresh machine: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_QUIET := --quiet --disable-pip-version-check

# Every development tool and library is pinned in PINS (see `make pins`): a release upstream
# cannot change what `make test` installs. PIP_CONSTRAINT reaches the build backend that pip
# installs for the editable install too. Users of the package still get pyproject.toml's ranges.
LOCK := constraints.txt
PINS ?= $(LOCK)
PIN := PIP_CONSTRAINT="$(abspath $(PINS))"
PIP := $(PIN) $(BIN)/pip install $(PIP_QUIET)
# The oldest Flask and Werkzeug the project supports, for `make test-oldest`.
OLDEST := flask==2.3.3 werkzeug==2.3.8

.PHONY: demo test checks test-oldest test-latest pins dist-check bench bench-smoke bench-peers lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-demo: pyproject.toml $(PINS) | $(BIN)/python
	$(PIP) --upgrade pip
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(PINS) | $(BIN)/python
	$(PIP) --upgrade pip
	$(PIP) -e ".[dev]"
	touch $@ $(VENV)/.installed-demo

## Serve the demo app on http://127.0.0.1:5000 (prints curl lines to try); another port:
## make demo PORT=5001 (or PORT in the environment).
PORT ?= 5000
demo: $(VENV)/.installed-demo
	PORT=$(PORT) $(BIN)/python examples/demo.py

## The whole suite, then ruff and mypy strict, with the pinned toolchain.
test: $(VENV)/.installed-dev
	@$(MAKE) --no-print-directory checks

## What `test` runs, in whichever venv VENV names (already installed).
checks:
	$(BIN)/python -m pytest
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## The suite against the oldest supported Flask and Werkzeug, in their own venv: the pins,
## with those two replaced by OLDEST.
.venv-oldest/constraints.txt: $(LOCK) Makefile
	mkdir -p .venv-oldest
	grep -viE '^(flask|werkzeug)==' $(LOCK) > $@
	printf '%s\n' $(OLDEST) >> $@

test-oldest: .venv-oldest/constraints.txt
	$(MAKE) VENV=.venv-oldest PINS=.venv-oldest/constraints.txt .venv-oldest/.installed-dev
	.venv-oldest/bin/python -m pytest -p no:cacheprovider -q

## The suite, ruff and mypy against the newest release of everything, in a venv rebuilt
## each time: run it before moving the pins (it may fail; that is its job).
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install $(PIP_QUIET) --upgrade pip
	.venv-latest/bin/pip install $(PIP_QUIET) --upgrade --upgrade-strategy eager -e ".[dev]"
	.venv-latest/bin/pip list --format=freeze --exclude-editable
	@$(MAKE) --no-print-directory VENV=.venv-latest checks

## Rewrite PINS from the newest releases: the dev extras, the hiredis extra, the build
## backend and the benchmarks' Flask-Limiter. Then `make test` and commit the file.
pins:
	rm -rf .venv-pins
	$(PYTHON) -m venv .venv-pins
	.venv-pins/bin/pip install $(PIP_QUIET) --upgrade pip
	.venv-pins/bin/pip install $(PIP_QUIET) -e ".[dev,hiredis]" hatchling "flask-limiter>=4,<5"
	{ echo "# The development toolchain, pinned: every make target installs through this file."; \
	  echo "# Rewritten by 'make pins' (newest releases; try them first with 'make test-latest')."; \
	  echo "# Made with Python $$(.venv-pins/bin/python -c 'import platform; print(platform.python_version())')."; \
	  .venv-pins/bin/pip freeze --all --exclude-editable | grep -viE '^(setuptools|wheel)=='; \
	} > $(LOCK)
	rm -rf .venv-pins

## Build wheel and sdist, install the wheel alone in a clean venv, serve the demo from it.
dist-check: $(VENV)/.installed-dev
	rm -rf dist .venv-dist
	$(BIN)/python -m build --quiet --no-isolation --outdir dist .
	$(PYTHON) -m venv .venv-dist
	$(PIN) .venv-dist/bin/pip install $(PIP_QUIET) dist/*.whl
	cd dist && ../.venv-dist/bin/python ../tests/check_installed_demo.py ../examples/demo.py

## Benchmarks (not tests; numbers go to stdout): overhead, Redis round trip (with and without
## hiredis, which gets its own venv in benchmarks/.venvs/), strategies, flood, load (behind
## gunicorn, under wrk, skipped without it; written to benchmarks/LOAD.md), peers, and
## instructions (under valgrind, skipped without it; written to benchmarks/INSTRUCTIONS.md).
## The benchmarks' own venvs install through PINS too.
bench: $(VENV)/.installed-dev
	$(PIN) $(BIN)/python benchmarks/peers.py --overhead
	$(PIN) $(BIN)/python benchmarks/peers.py --redis-parts --hiredis
	$(PIN) $(BIN)/python benchmarks/flood.py --strategies
	$(PIN) $(BIN)/python benchmarks/flood.py
	$(PIN) $(BIN)/python benchmarks/load.py
	$(PIN) $(BIN)/python benchmarks/peers.py
	$(PIN) $(BIN)/python benchmarks/peers.py --instructions

bench-smoke: $(VENV)/.installed-dev
	$(PIN) $(BIN)/python benchmarks/peers.py --overhead --smoke
	$(PIN) $(BIN)/python benchmarks/peers.py --redis-parts --smoke
	$(PIN) $(BIN)/python benchmarks/flood.py --strategies --smoke
	$(PIN) $(BIN)/python benchmarks/flood.py --smoke
	$(PIN) $(BIN)/python benchmarks/peers.py --smoke
	$(PIN) $(BIN)/python benchmarks/peers.py --instructions --smoke
	$(PIN) $(BIN)/python benchmarks/load.py --smoke

## Side by side with Flask-Limiter and flask-gatekeeper 1.0 (own venvs in benchmarks/.venvs/);
## the report also goes to benchmarks/RESULTS.md.
bench-peers: $(VENV)/.installed-dev
	$(PIN) $(BIN)/python benchmarks/peers.py

clean:
	rm -rf $(VENV) .venv-oldest .venv-latest .venv-pins .venv-dist dist .pytest_cache .mypy_cache .ruff_cache
