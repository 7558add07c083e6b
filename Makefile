# The two commands of the README:
#   make demo   -> a virtualenv with the server extra, then `drip demo` on the embedded local server
#   make test   -> a virtualenv with the dev extra, then the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed-%: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$*]"
	touch $@

demo: $(BIN)/.installed-demo
	DRIP_BASE_URL=local:.drip/demo.db $(BIN)/drip demo

test: $(BIN)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check drip integrations tests examples benchmarks
	$(BIN)/ruff format --check drip integrations tests examples benchmarks
	$(BIN)/mypy --strict drip integrations
	$(BIN)/lint-imports --no-cache

bench: $(BIN)/.installed-bench
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .drip build dist *.egg-info
