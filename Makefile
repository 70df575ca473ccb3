# Reelforge: `make run` and `make test` each bootstrap .venv from nothing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= .data

.PHONY: run test lint bench package clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: the CPU wheel is on disk on the project's Linux machines
	$(BIN)/python -m pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/reelforge --data-dir $(DATA)

lint: $(STAMP)
	$(BIN)/ruff check app tests benchmarks packaging
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m benchmarks

package: $(STAMP)
	$(BIN)/pyinstaller --noconfirm --clean pyinstaller.spec
	$(BIN)/python -m pytest -q tests/test_packaging.py --run-package

clean:
	rm -rf build dist
