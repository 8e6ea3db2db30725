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
SAMPLE_INPUTS := data/sample/sft.jsonl data/sample/red_team.jsonl data/sample/formats

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
	$(MEDQA) data prepare $(SAMPLE_INPUTS:%=--input %) --out data/processed --seed $(SEED) --tokenizer $(TINY)

rl-prompts: data ## write data/rl/training_prompts.jsonl from the prepared data
	$(MEDQA) data rl-prompts --data data/processed --out data/rl/training_prompts.jsonl

# Each stage appends its demo step and its benchmark below.
DEMO_STEPS  :=
BENCH_STEPS :=

# ---------------------------------------------------------------- SFT (issue 3)
# Recipe: recipes/sft/[PROFILE/]MODE.yaml (PROFILE=gpu is recipes/sft/MODE.yaml), or RECIPE=path.
# Launcher: accelerate_configs/ACCEL.yaml; PROFILE=cpu runs 2 CPU processes: DDP (accelerate_configs/cpu.yaml, also
# ACCEL=ddp) or ACCEL=zero2|zero3 (cpu_zero2.yaml, cpu_zero3.yaml).
# MODEL=, OUT= and ARGS="--max_steps 3 …" override the recipe; RESUME=1 resumes (it is automatic when OUT has a
# checkpoint), RESUME=0 starts fresh; NPROC= sets the number of processes (GPUs).
PROFILE ?= gpu
ACCEL   ?=
RECIPE  ?=
MODEL   ?=
OUT     ?=
ARGS    ?=
RESUME  ?=
NPROC   ?=
ADAPTER ?=
ACCELERATE := $(BIN)/accelerate

sft_recipe = $(or $(RECIPE),recipes/sft/$(if $(filter gpu,$(PROFILE)),,$(PROFILE)/)$(1).yaml)
sft_accel = $(if $(filter %.yaml,$(ACCEL)),$(ACCEL),accelerate_configs/$(if $(filter cpu,$(PROFILE)),$(if $(filter-out cpu ddp,$(ACCEL)),cpu_$(ACCEL),cpu),$(or $(ACCEL),$(1))).yaml)
sft_flags = $(if $(MODEL),--model_name_or_path $(MODEL)) $(if $(OUT),--output_dir $(OUT)) \
	$(if $(filter 1 true yes,$(RESUME)),--resume_from_checkpoint true,$(if $(filter 0 false no,$(RESUME)),--auto_resume false)) $(ARGS)
sft_deps = setup $(if $(filter cpu,$(PROFILE)),tiny-model) $(if $(wildcard data/processed/train.jsonl),,data)

# $(call run_sft,MODE,DEFAULT_GPU_ACCEL)
define run_sft
	@test -f $(call sft_recipe,$(1)) || { echo "no recipe $(call sft_recipe,$(1)) for PROFILE=$(PROFILE); see recipes/sft/" >&2; exit 2; }
	@test -f $(call sft_accel,$(2)) || { echo "no accelerate config $(call sft_accel,$(2)) for ACCEL=$(ACCEL); see accelerate_configs/" >&2; exit 2; }
	$(ACCELERATE) launch --config_file $(call sft_accel,$(2)) $(if $(NPROC),--num_processes $(NPROC)) \
		scripts/sft.py --config $(call sft_recipe,$(1)) $(sft_flags)
endef

.PHONY: sft-lora sft-qlora sft-full merge bench-gpu demo-sft bench-p3

sft-lora: $(sft_deps) ## SFT with LoRA r=64 (PROFILE=gpu|cpu, ACCEL=, MODEL=, OUT=, ARGS=, RESUME=1)
	$(call run_sft,lora,single_gpu)

sft-qlora: $(sft_deps) ## SFT with QLoRA: 4-bit nf4 base + LoRA (PROFILE=8gb fits one 8 GB GPU)
	$(call run_sft,qlora,single_gpu)

sft-full: $(sft_deps) ## full fine-tuning with DeepSpeed ZeRO-2 (ACCEL=zero3 | zero3_offload | multi_gpu)
	$(call run_sft,full,zero2)

merge: setup ## merge a LoRA/QLoRA adapter into its full-precision base: ADAPTER=outputs/sft-lora [OUT=…]
	$(PY) -m medqa.merge --adapter $(or $(ADAPTER),outputs/sft-lora) --out $(or $(OUT),$(or $(ADAPTER),outputs/sft-lora)-merged) $(ARGS)

bench-gpu: setup tiny-model ## GPU only: tokens/s, MFU, peak memory of Qwen3-1.7B-shaped SFT per mode (JSON)
	bash scripts/bench_gpu.sh

demo-sft: setup tiny-model data ## demo step: SFT-LoRA of the tiny model on data/processed, CPU, into outputs/demo/sft-lora
	rm -rf outputs/demo/sft-lora
	$(ACCELERATE) launch --config_file accelerate_configs/cpu.yaml scripts/sft.py \
		--config recipes/sft/cpu/lora.yaml --output_dir outputs/demo/sft-lora

bench-p3: setup tiny-model data ## P3: padding share of the SFT batches vs naive pad-to-longest, CPU tokens/s
	$(MEDQA) bench --only p3

DEMO_STEPS  += demo-sft
BENCH_STEPS += bench-p3



# ---------------------------------------------------------------- rewards / teacher (issue 4)
PORT ?= 8765
TEACHER_N ?= 5
RED_TEAM_SAMPLES ?= data/sample/red_team.jsonl
.PHONY: teacher-serve teacher-check teacher-demo teacher-rules-doc bench-p1

teacher-serve: setup ## run the offline OpenAI-compatible judge on 127.0.0.1:PORT (default 8765; heuristic rubric, no API key)
	$(MEDQA) teacher serve --host 127.0.0.1 --port $(PORT)

teacher-check: setup ## judge 5 samples with the configured teacher (BASE_URL=, TEACHER_MODEL=; offline judge, said loudly, without a key)
	$(MEDQA) teacher check --n $(TEACHER_N) --input $(RED_TEAM_SAMPLES) $(if $(BASE_URL),--base-url $(BASE_URL)) $(if $(TEACHER_MODEL),--model $(TEACHER_MODEL))

teacher-demo: setup ## the demo's teacher step: 5 samples through the offline judge (never a paid API)
	$(MEDQA) teacher check --offline --n $(TEACHER_N) --input $(RED_TEAM_SAMPLES)

teacher-rules-doc: setup ## regenerate data/rl/reward_rules.md from the rule registry
	$(MEDQA) teacher rules-doc --path data/rl/reward_rules.md

bench-p1: setup ## P1: teacher throughput vs concurrency/latency (512 judgements, 200 ms, concurrency 64) and vs sequential
	$(MEDQA) bench --only p1

DEMO_STEPS  += teacher-demo
BENCH_STEPS += bench-p1


# ---------------------------------------------------------------- eval / predict / serve (issue 5)
# MODEL= base/merged model dir or adapter dir (default: the tiny model); ADAPTER= PEFT adapter on top of MODEL.
EVAL_MODEL      = $(or $(MODEL),$(TINY))
EVAL_ADAPTER    = $(ADAPTER)
EVAL_NAME      ?= $(notdir $(patsubst %/,%,$(or $(EVAL_ADAPTER),$(EVAL_MODEL))))
EVAL_SETS      ?= gold_set red_team test
EVAL_EXAM      ?= data/sample/exam/cmb_sample.jsonl
EVAL_ROOT      ?= outputs/eval
EVAL_MAX_NEW   ?= 512
EVAL_BATCH     ?= 8
SERVE_PORT     ?= 7860
SERVE_HOST     ?= 127.0.0.1
EVAL_ARGS       = --model $(EVAL_MODEL) $(if $(EVAL_ADAPTER),--adapter $(EVAL_ADAPTER))
DEMO_EVAL_DIR  ?= outputs/demo/eval
DEMO_SFT       ?= outputs/demo/sft-lora
.PHONY: eval predict compare serve demo-eval bench-p4

eval: setup ## predict + score MODEL=… [ADAPTER=…] [LIMIT=…] on gold, red team, test, exam sample -> outputs/eval/<name>/; SFT vs RL report if both exist
	@test -f data/processed/gold_set.jsonl || $(MAKE) --no-print-directory data
	$(MEDQA) eval run $(EVAL_ARGS) $(foreach s,$(EVAL_SETS),--set $(s)=data/processed/$(s).jsonl) --set exam=$(EVAL_EXAM) \
	  --out $(EVAL_ROOT)/$(EVAL_NAME) --batch-size $(EVAL_BATCH) --max-new-tokens $(EVAL_MAX_NEW) $(if $(LIMIT),--limit $(LIMIT))
	$(MEDQA) eval auto-compare $(EVAL_ROOT)

predict: setup ## batched generation: MODEL=… [ADAPTER=…] INPUT=file.jsonl OUTPUT=preds.jsonl [LIMIT=…] (resumable)
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make predict MODEL=… [ADAPTER=…] INPUT=in.jsonl OUTPUT=out.jsonl"; exit 2; }
	$(MEDQA) predict $(EVAL_ARGS) --input $(INPUT) --output $(OUTPUT) --batch-size $(EVAL_BATCH) \
	  --max-new-tokens $(EVAL_MAX_NEW) $(if $(LIMIT),--limit $(LIMIT))

compare: setup ## report (markdown + HTML + plots) of run A vs run B: A=outputs/eval/x B=outputs/eval/y [OUT=…]
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make compare A=outputs/eval/<run> B=outputs/eval/<run> [OUT=dir]"; exit 2; }
	$(MEDQA) eval compare $(A) $(B) --out $(or $(OUT),$(EVAL_ROOT)/compare-$(notdir $(A))-vs-$(notdir $(B)))

serve: setup ## Gradio chat demo on SERVE_HOST:SERVE_PORT (127.0.0.1:7860): MODEL=… [ADAPTER=…]
	$(MEDQA) serve $(EVAL_ARGS) --host $(SERVE_HOST) --port $(SERVE_PORT)

demo-eval: setup tiny-model data ## the demo's eval step: base tiny model vs the demo SFT output on gold + red team (LIMIT 8), with report
	$(MEDQA) eval run --model $(TINY) --set gold_set=data/processed/gold_set.jsonl --set red_team=data/processed/red_team.jsonl \
	  --out $(DEMO_EVAL_DIR)/base --limit $(or $(LIMIT),8) --max-new-tokens 64 --no-progress
	@if [ -f $(DEMO_SFT)/adapter_config.json ] || [ -f $(DEMO_SFT)/config.json ]; then \
	  $(MEDQA) eval run --model $(DEMO_SFT) --set gold_set=data/processed/gold_set.jsonl \
	    --set red_team=data/processed/red_team.jsonl --out $(DEMO_EVAL_DIR)/sft --limit $(or $(LIMIT),8) \
	    --max-new-tokens 64 --no-progress && \
	  $(MEDQA) eval compare $(DEMO_EVAL_DIR)/base $(DEMO_EVAL_DIR)/sft --out $(DEMO_EVAL_DIR)/report; \
	else \
	  echo ">> no SFT output in $(DEMO_SFT): base model only (report of base vs itself)"; \
	  $(MEDQA) eval compare $(DEMO_EVAL_DIR)/base $(DEMO_EVAL_DIR)/base --out $(DEMO_EVAL_DIR)/report; \
	fi
	@echo ">> demo eval report: $(DEMO_EVAL_DIR)/report/report.html"

bench-p4: setup ## P4: batched vs one-by-one greedy generation throughput on the tiny model, same prompts (goal >= 5x)
	$(MEDQA) bench --only p4

DEMO_STEPS  += demo-eval
BENCH_STEPS += bench-p4

# ---------------------------------------------------------------- PPO (issue 10)
# Recipe: recipes/ppo/[PROFILE/]MODE.yaml (PROFILE=gpu is recipes/ppo/MODE.yaml; PROFILE=8gb is QLoRA), or RECIPE=.
# Launcher as for SFT: ACCEL=ddp|zero2|zero3 with PROFILE=cpu (2 CPU processes), single_gpu | multi_gpu | zero2 |
# zero3 on GPUs. SFT= (or ADAPTER=/MODEL=) is the SFT output to start from; OUT= the run folder; RESUME=0 starts
# fresh (resuming from OUT's newest checkpoint is automatic); ARGS="--total_steps 3 …" overrides the recipe.
# Teacher: BASE_URL= and TEACHER_MODEL=, or the API with DEEPSEEK_API_KEY; without either the offline judge runs.
ppo_mode    = $(if $(filter 8gb,$(PROFILE)),qlora,$(1))
ppo_recipe  = $(or $(RECIPE),recipes/ppo/$(if $(filter gpu,$(PROFILE)),,$(PROFILE)/)$(call ppo_mode,$(1)).yaml)
ppo_default_sft = $(if $(filter cpu,$(PROFILE)),outputs/cpu/sft-lora,$(if $(filter 8gb,$(PROFILE)),outputs/sft-qlora-8gb,outputs/sft-lora))
ppo_start   = $(or $(SFT),$(ADAPTER),$(MODEL),$(if $(RECIPE),,$(2)))
ppo_flags   = $(if $(call ppo_start,$(1),$(2)),--model_name_or_path $(call ppo_start,$(1),$(2))) $(if $(OUT),--output_dir $(OUT)) \
	$(if $(filter 0 false no,$(RESUME)),--auto_resume false) $(ARGS)
ppo_deps    = setup $(if $(filter cpu,$(PROFILE)),tiny-model) $(if $(wildcard data/rl/training_prompts.jsonl),,rl-prompts)

# $(call run_ppo,MODE,DEFAULT_GPU_ACCEL,DEFAULT_SFT_OR_EMPTY)
define run_ppo
	@test -f $(call ppo_recipe,$(1)) || { echo "no recipe $(call ppo_recipe,$(1)) for PROFILE=$(PROFILE); see recipes/ppo/" >&2; exit 2; }
	@test -f $(call sft_accel,$(2)) || { echo "no accelerate config $(call sft_accel,$(2)) for ACCEL=$(ACCEL); see accelerate_configs/" >&2; exit 2; }
	bash scripts/with_teacher.sh $(PY) $(ACCELERATE) launch --config_file $(call sft_accel,$(2)) $(if $(NPROC),--num_processes $(NPROC)) \
		scripts/ppo.py --config $(call ppo_recipe,$(1)) $(call ppo_flags,$(1),$(3))
endef

.PHONY: ppo ppo-full bench-p2

ppo: $(ppo_deps) ## PPO from an SFT adapter (SFT=outputs/[cpu/]sft-lora, OUT=, PROFILE=gpu|cpu|8gb, ACCEL=, ARGS=, RESUME=0)
	@test -e "$(call ppo_start,lora,$(ppo_default_sft))" || { echo "no SFT output $(call ppo_start,lora,$(ppo_default_sft)): run make sft-lora$(if $(filter cpu,$(PROFILE)), PROFILE=cpu) first, or pass SFT=dir" >&2; exit 2; }
	$(call run_ppo,lora,single_gpu,$(ppo_default_sft))

ppo-full: $(ppo_deps) ## full-parameter PPO with a frozen reference copy (ACCEL=zero3 shards both; SFT=merged model)
	$(call run_ppo,full,zero3,)

bench-p2: setup tiny-model rl-prompts ## P2: teacher-wait share of PPO step time, overlapped submit vs blocking (goal <= 5 %)
	$(MEDQA) bench --only p2

BENCH_STEPS += bench-p2

# ---------------------------------------------------------------- demo: tiny base -> SFT -> PPO -> report (issue 13)
# `make demo` runs medqa/demo.py: every stage through the targets above, skipping finished ones (FORCE=1 reruns),
# then outputs/demo/report/report.html and outputs/demo/summary.json. DEMO_LIMIT= items per eval set (default all),
# DEMO_ARGS= more `medqa demo` options (e.g. "--sft-args '--max_steps 10'").
TINY_BASE  := models/tiny-base
DEMO_LIMIT ?=
DEMO_ARGS  ?=
.PHONY: tiny-base

tiny-base: setup data ## pretrain the demo's small Qwen3 base on the training split's text (~2 min; cached by recipe key)
	$(MEDQA) tiny-model --pretrain --out $(TINY_BASE) --seed $(SEED) $(if $(filter 1 true yes,$(FORCE)),--force)

# ---------------------------------------------------------------- umbrella targets

demo: setup ## tiny base -> data -> SFT -> PPO -> eval -> report, CPU only, no downloads (FORCE=1 reruns all stages)
	$(MEDQA) demo --out outputs/demo --base $(TINY_BASE) --seed $(SEED) $(if $(filter 1 true yes,$(FORCE)),--force) \
	  $(if $(DEMO_LIMIT),--limit $(DEMO_LIMIT)) $(DEMO_ARGS)

bench: setup $(BENCH_STEPS) ## performance benchmarks, reported as ratios measured in one run
	@echo ">> benchmark results in bench_results/"

clean: ## remove generated models, data and run outputs (keeps .venv)
	rm -rf models outputs runs data/processed data/rl/training_prompts.jsonl bench_results
