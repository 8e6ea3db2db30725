#!/usr/bin/env bash
# The GPU training benchmark, medqa/bench/gpu_sft.py (see docs/gpu.md): `make bench-gpu` prepares its inputs
# (tiny tokenizer, data/processed and the RL prompts as `make data rl-prompts` write them) and runs this. Arguments
# go to the module: --smoke is the CPU smoke run, --modes/--steps/--out narrow or redirect it. The whole run is
# capped at BENCH_GPU_TIMEOUT seconds (default 1200) so that a borrowed GPU is never held by a hung run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-.venv/bin/python}
status=0
timeout "${BENCH_GPU_TIMEOUT:-1200}" "$PY" -m medqa.bench.gpu_sft "$@" || status=$?
# P9 (docs/gpu.md, "vLLM rollouts"): a vLLM server vs generate on the same Qwen3-1.7B-shaped model, where
# .venv-vllm exists (`make vllm-setup`); into bench_results/bench.json beside the other benchmarks.
if [[ " $* " != *" --smoke "* ]] && [ -x .venv-vllm/bin/python ] && [ -f outputs/bench-gpu/model/config.json ]; then
  MEDQA_P9_MODEL=outputs/bench-gpu/model timeout 900 "$PY" -m medqa bench --only p9 || status=$?
fi
exit $status
