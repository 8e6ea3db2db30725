# medqa — every stage is one target. `make help` lists them.
# Hardware is chosen by files, not code: ACCEL=<accelerate_configs/NAME.yaml>, PROFILE=<recipes/*/NAME.yaml>.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# The stamp's name is a hash of what is installed, so `make setup` is a no-op until the lock changes.
LOCK_HASH := $(shell cat requirements.lock pyproject.toml | sha1sum | cut -c1-12)
STAMP  := $(VENV)/.installed-$(LOCK_HASH)

# Run the code of *this* checkout, offline (no hub access at run time).
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYTHONUNBUFFERED := 1

MEDQA  := $(PY) -m medqa
TINY   := models/tiny-qwen3
SEED   ?= 42

.PHONY: help setup test test-fast lint browser-deps demo tiny-model data rl-prompts bench clean

help: ## list every target with one line each
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:[^#]*## /\t/' | awk -F'\t' '{printf "  %-16s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install the pinned stack (idempotent; no-op when nothing changed)
$(STAMP): requirements.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo ">> installing the pinned stack into $(VENV) (first time: a few minutes)"
	DS_BUILD_OPS=0 $(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

test: setup browser-deps ## run the whole test suite on CPU (creates the environment from nothing)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: setup ## unit tests only (skips slow, distributed and browser tests)
	$(PY) -m pytest -q -m "not slow and not distributed and not browser" $(PYTEST_ARGS)

lint: setup ## ruff over the package, scripts and tests
	$(BIN)/ruff check medqa scripts tests

browser-deps: ## install Debian's headless Chromium for the browser test (root + apt only; else a note)
	@bash scripts/ensure_chromium.sh

tiny-model: setup $(TINY)/config.json ## build the tiny random-init Qwen3 + tokenizer (offline, seconds)
$(TINY)/config.json:
	$(MEDQA) tiny-model --out $(TINY) --seed $(SEED)

data: setup tiny-model ## prepare data/sample/ into data/processed/ (splits, gold, red team, stats, data card)
	$(MEDQA) data prepare --input data/sample --out data/processed --seed $(SEED) --tokenizer $(TINY)

rl-prompts: data ## write data/rl/training_prompts.jsonl from the prepared data
	$(MEDQA) data rl-prompts --data data/processed --out data/rl/training_prompts.jsonl

# Each stage appends its demo step and its benchmark below.
DEMO_STEPS  :=
BENCH_STEPS :=

# ---------------------------------------------------------------- SFT (issue 3)


# ---------------------------------------------------------------- rewards / teacher (issue 4)


# ---------------------------------------------------------------- eval / predict / serve (issue 5)


# ---------------------------------------------------------------- umbrella targets

demo: setup tiny-model data $(DEMO_STEPS) ## the whole pipeline on the tiny model, CPU only, no downloads, no API key
	@echo ">> demo finished"

bench: setup $(BENCH_STEPS) ## performance benchmarks, reported as ratios measured in one run
	@echo ">> benchmark results in bench_results/"

clean: ## remove generated models, data and run outputs (keeps .venv)
	rm -rf models outputs runs data/processed data/rl/training_prompts.jsonl bench_results
