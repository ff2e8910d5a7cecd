# The README's commands. Each target does its own set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
# CPU build of torch first, so that no dependency pulls a multi-GB CUDA build. GPU users: make TORCH_SPEC="torch" ...
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

# ruff, and the import layers of pyproject.toml's [tool.importlinter] (docs/ARCHITECTURE.md)
lint: $(STAMP)
	$(VENV)/bin/ruff check lit_offmeta tests benchmarks
	$(VENV)/bin/lint-imports

test: $(STAMP) lint
	$(VENV)/bin/pytest -q

demo: $(STAMP)
	$(PY) -m lit_offmeta.demo --out runs/demo

clean:
	rm -rf $(VENV) runs lightning_logs .pytest_cache
