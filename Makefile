# Every target creates the virtual environment it needs, so each works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch; a newer or unpinned torch would pull a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
OUT ?= dsasim-out

.PHONY: curves test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.base-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev,validate]'
	touch $@

curves: $(VENV)/.base-installed
	$(BIN)/dsasim curves --out $(OUT)

test: $(VENV)/.dev-installed
	$(BIN)/pytest -q

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check dsasim tests benchmarks
	$(BIN)/mypy dsasim

bench: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/bench_costmodel.py
	$(BIN)/python benchmarks/bench_cli.py

clean:
	rm -rf $(VENV) $(OUT)
