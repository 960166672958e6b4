# Two commands do all the set-up: `make demo` (the main job on built-in data) and
# `make test`. Each creates or refreshes .venv with the extras it needs.
PYTHON ?= python3
VENV   ?= .venv
# The PyTorch release CI tests against; override with TORCH=torch for the newest.
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin

.PHONY: venv demo test lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"

# The whole chain on built-in data: render a SynthFace clip, track it with the bundled
# models, print NME, PyTorch-vs-ONNX parity and latency; outputs in demo_out/.
demo: venv
	$(BIN)/lmk demo --overwrite

test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache demo_out
