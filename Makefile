# Two entry points that work on a fresh machine with Python 3.11+ and make:
#   make demo   creates .venv, installs seqvg, runs the flagship comparison
#   make test   creates .venv, installs seqvg, runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install clean bench

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "seqvg needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest

demo: $(STAMP)
	MPLBACKEND=Agg $(BIN)/seqvg demo

bench: $(STAMP)
	$(BIN)/python benchmarks/probe.py

clean:
	rm -rf $(VENV) runs
