# Two commands do all the set-up: `make demo` (the main job on built-in data) and
# `make test`. Each creates or refreshes .venv with the extras it needs; `make test` also
# makes .venv-ov, where onnxruntime-openvino replaces onnxruntime (the same module, so the
# two cannot share a venv), and runs the OpenVINO EP's tests there.
PYTHON ?= python3
VENV   ?= .venv
# The PyTorch release CI tests against; override with TORCH=torch for the newest.
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
OV_VENV ?= .venv-ov
OV_BIN := $(OV_VENV)/bin
# The tests that run in .venv-ov (no torch there): the ones marked `openvino`, in these files.
OV_TESTS := tests/test_runtime_openvino.py tests/hostile/test_runtime_ep_flags.py tests/test_int8_openvino.py

# The page's onnxruntime-web (web/package.json pins it, web/package-lock.json locks it).
WEB_DEPS := web/node_modules/.package-lock.json

.PHONY: venv venv-ov web-deps demo test lint format clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"

$(OV_BIN)/python:
	$(PYTHON) -m venv $(OV_VENV)
	$(OV_BIN)/python -m pip install -q --upgrade pip

# The runtime with the OpenVINO EP, as a deployment box has it: no torch, no plain onnxruntime.
venv-ov: $(OV_BIN)/python
	$(OV_BIN)/python -m pip install -q -e ".[openvino]" "pytest>=8" "onnx>=1.15"

# `lmk web` serves onnxruntime-web from web/node_modules: npm ci installs exactly the lockfile.
$(WEB_DEPS): web/package.json web/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix web --no-audit --no-fund --loglevel=error; \
	else \
		echo "warning: npm not found: lmk web needs onnxruntime-web (install Node.js, then make web-deps)"; \
	fi

web-deps: $(WEB_DEPS)

# The whole chain on built-in data: render a SynthFace clip, track it with the bundled
# models, print NME, PyTorch-vs-ONNX parity and latency; outputs in demo_out/.
demo: venv web-deps
	$(BIN)/lmk demo --overwrite

# The browser tests (tests/web) also need Chromium from the OS packages (.ci/run installs it).
test: venv venv-ov web-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q --cov --cov-report=term
	$(OV_BIN)/python -m pytest -q -m openvino $(OV_TESTS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) $(OV_VENV) build *.egg-info .pytest_cache .ruff_cache demo_out web/node_modules
