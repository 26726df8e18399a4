# Set-up on a fresh machine needs only Python 3 (with venv) and make.
PYTHON ?= python3
VENV := .venv
UPSTREAM := .venv-upstream
BIN := $(VENV)/bin

.PHONY: demo test check upstream-tests bench bench-quick clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# The published package, in its own virtualenv (same import name): the reference that
# the differential tests and the benchmarks compare against.
# The stamp names the version and what else is installed: changing either reinstalls. redis:
# the scale benchmark's queue apps broadcast across worker processes through it; granian:
# `bench/run.py --server granian`.
UPSTREAM_VERSION := 3.7.1
UPSTREAM_STAMP := $(UPSTREAM)/.installed-$(UPSTREAM_VERSION)-redis-granian
$(UPSTREAM_STAMP):
	$(PYTHON) -m venv $(UPSTREAM)
	$(UPSTREAM)/bin/pip install -q 'sse-starlette==$(UPSTREAM_VERSION)' 'uvicorn[standard]' 'redis[hiredis]' granian
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m sse_starlette demo

test: $(VENV)/.installed $(UPSTREAM_STAMP)
	$(BIN)/python -m pytest

# The published package's own public tests (3.0.2, 3.7.0, 3.7.1), downloaded from PyPI at run
# time and run against this project in a virtualenv of their own: one line per version.
upstream-tests:
	$(PYTHON) upstream/run.py

check: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(VENV)/.installed $(UPSTREAM_STAMP)
	$(BIN)/python bench/run.py --out bench/results/full.json  # full profile, ~30 min; also docs/bench.png, docs/scale.png

bench-quick: $(VENV)/.installed $(UPSTREAM_STAMP)
	$(BIN)/python bench/run.py --quick    # ~2 min

clean:
	rm -rf $(VENV) $(UPSTREAM) .venv-upstream-tests
