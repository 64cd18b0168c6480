# The two entry points of the README. Both create .venv on first use.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint setup bench clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "need $(PY) on PATH (or make PY=python3 ...)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pipeline.build --graphs string12 --dataset essentiality --dataset kuzmin2018 \
		--dataset costanzo2016 --dataset synlethdb_sl --precompute masks,khop,adjacency-rows

# The linter and dead code (vulture: pyproject [tool.vulture]; exits non-zero on findings): a second or two.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/vulture

# lint first, then the tests and the library's doctests (pyproject: testpaths, --doctest-modules).
test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks build

clean:
	rm -rf $(VENV) data/processed/*
