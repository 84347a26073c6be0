# Both main targets build .venv themselves on a fresh clone.
# TORCH_SPEC pins the CPU wheel for this virtualenv; on a GPU machine bring your own:
#   make test TORCH_SPEC=          (keep whatever torch pip resolves / is installed)
#   make test TORCH_SPEC='torch==2.5.1'
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_SPEC),$(BIN)/pip install -q "$(TORCH_SPEC)")
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/complexo mhsa --seq 4096 --dim 1024

lint: venv
	$(BIN)/ruff check complexo tests scripts
	$(BIN)/ruff format --check complexo tests scripts

test: lint
	$(BIN)/pytest

bench: venv
	$(BIN)/python scripts/bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
