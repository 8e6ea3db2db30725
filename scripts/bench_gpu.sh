#!/usr/bin/env bash
# GPU SFT benchmark: QLoRA (8 GB profile), LoRA and full (ZeRO-2) runs of a random-init Qwen3-1.7B-shaped model,
# 12 steps each on one GPU; prints tokens/s, MFU and peak memory as JSON (also bench_results/gpu_sft.json).
# Needs the tiny tokenizer (make tiny-model) and data/processed (make data); downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
test -f models/tiny-qwen3/config.json || "$PY" -m medqa tiny-model --out models/tiny-qwen3
test -f data/processed/train.jsonl || "$PY" -m medqa data prepare --input data/sample --out data/processed --tokenizer models/tiny-qwen3
exec timeout 480 "$PY" -m medqa.bench.gpu_sft "$@"
