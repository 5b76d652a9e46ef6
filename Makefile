# Two set-up commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is installed with pip on purpose (a local wheel store serves it here)
# the lab (CLI, experiments, figures) is an extra: the probes alone need less
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[lab]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[lab,dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/dlprobe run hw1 --profile quick

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

bench: $(VENV)/.installed
	$(BIN)/dlprobe bench

# API reference of the probes, generated from their docstrings (pdoc), under docs/api
docs: $(VENV)/.installed-dev
	rm -rf docs/api
	$(BIN)/pdoc dlprobe.measure --docformat google --no-show-source --no-search -o docs/api

clean:
	rm -rf runs bench-results.json .pytest_cache .ruff_cache
