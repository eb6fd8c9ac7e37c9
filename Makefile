# The quick start: `make run` and `make test` on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# pip builds the compiled fold (core/store/native_fold.c) with the package:
# a change to either installs again.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml core/store/native_fold.c core/store/msgpack_read.h | sha256sum | cut -c1-12)

.PHONY: run test check lint typecheck bench clean

$(STAMP): pyproject.toml core/store/native_fold.c core/store/msgpack_read.h
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(VENV)/bin/vidda

# Two workers, each test file on one worker (module fixtures stay in order).
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.bench-installed
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
	rm -f core/store/*.so
