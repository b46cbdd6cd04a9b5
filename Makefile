# Two entry points that work on a fresh machine with Python 3.11+ and make:
#   make demo   creates .venv, installs seqvg, runs the flagship comparison
#   make test   creates .venv, installs seqvg, lints, runs the test suite
#   make lint   ruff check (the rules are in pyproject.toml)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "seqvg needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

# Two pytest processes, each test file in one of them (its module fixtures
# built once), except the long independent cases tests/conftest.py splits
# off (xdist groups): most of a test is single-threaded graph building, so
# two cores halve the wall time.
test: lint
	MPLBACKEND=Agg $(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder

# The flagship (tasks/demo.toml): vanilla RNN vs LSTM vs GRU on the adding
# problem, T=100. Finished runs are kept in runs/demo, so a second
# `make demo` only re-reports; an interrupted one resumes.
demo: $(STAMP)
	MPLBACKEND=Agg $(BIN)/seqvg run tasks/demo.toml

# train_speed runs its whole comparison three times (each run its own process
# and matmul peak) and ends with the README's table of ranges over the runs;
# torch (pip install torch into .venv) adds the PyTorch columns.
bench: $(STAMP)
	$(BIN)/python benchmarks/train_speed.py --runs 3
	$(BIN)/python benchmarks/probe.py
	$(BIN)/python benchmarks/lstm_loop.py
	$(BIN)/python benchmarks/custom_cell.py
	$(BIN)/python benchmarks/xla_payoff.py

clean:
	rm -rf $(VENV) runs
