"""GPU SFT benchmark (`make bench-gpu`): short runs of a Qwen3-1.7B-shaped model in each mode -> JSON.

Needs no download: the model is random-init with Qwen3-1.7B's real config (medqa.tiny_model.QWEN3_1_7B, full
151,936-token vocabulary) and the tiny tokenizer, which is enough for throughput and memory. Each mode runs in
its own `accelerate launch` process (peak memory is per process) with the mode's GPU recipe, 2048-token packs,
`--max_steps` steps; tokens/s is measured after the first (warm-up) logging window. MFU follows TRL's
convention (6·N FLOPs per token + attention, bf16 dense peak of the device), also for LoRA, whose real work is
about 2/3 of that; gradient-checkpointing recomputation is not counted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build_model(tokenizer_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from medqa.tiny_model import QWEN3_1_7B

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen3Config(**QWEN3_1_7B, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_data(source: Path, out: Path, tokens_wanted: int, tokenizer_dir: Path) -> Path:
    """Repeat the prepared training rows until they hold about `tokens_wanted` tokens (a throughput test only)."""
    from transformers import AutoTokenizer

    from medqa.io import read_jsonl, write_jsonl

    rows = [{"messages": r["messages"]} for r in read_jsonl(source / "train.jsonl")]
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    per_pass = sum(len(tok.apply_chat_template(r["messages"], tokenize=True)) for r in rows)
    repeats = max(1, -(-tokens_wanted // per_pass))
    write_jsonl(out / "train.jsonl", [r for _ in range(repeats) for r in rows])
    write_jsonl(out / "dev.jsonl", rows[:8])
    return out


def run_mode(mode: str, model: Path, data: Path, out: Path, steps: int, accel: str, profile_recipe: str) -> dict:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"accelerate_configs/{accel}.yaml",
           "--num_processes", "1", "scripts/sft.py", "--config", profile_recipe, "--model_name_or_path", str(model),
           "--data_dir", str(data), "--output_dir", str(out), "--max_steps", str(steps), "--logging_steps", "1",
           "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
           "--report_to", "none", "--disable_tqdm", "true", "--auto_resume", "false"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"mode": mode, "error": proc.stderr[-3000:], "wall_s": round(time.perf_counter() - started, 1)}
    summary = json.loads((out / "sft_summary.json").read_text())
    return {**summary, "recipe": profile_recipe, "accelerate_config": accel, "wall_s": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medqa.bench.gpu_sft", description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", type=Path, default=ROOT / "models" / "tiny-qwen3")
    p.add_argument("--data", type=Path, default=ROOT / "data" / "processed")
    p.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench-gpu")
    p.add_argument("--out", type=Path, default=ROOT / "bench_results" / "gpu_sft.json")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--modes", nargs="+", default=["qlora", "lora", "full"])
    args = p.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("bench-gpu: no CUDA device here; this benchmark only runs on a GPU", file=sys.stderr)
        return 2
    from trl.trainer.utils import compute_flops_per_token, compute_mfu, get_peak_flops

    from medqa.io import atomic_write

    model = build_model(args.tokenizer, args.work / "qwen3-1.7b-random")
    data = build_data(args.data, args.work / "data", tokens_wanted=2048 * 16 * (args.steps + 2), tokenizer_dir=args.tokenizer)
    device = torch.cuda.get_device_name(0)
    peak = get_peak_flops(device, "bfloat16")
    from transformers import AutoConfig

    flops_per_token = compute_flops_per_token(AutoConfig.from_pretrained(model), 2048)
    recipes = {"lora": ("recipes/sft/lora.yaml", "single_gpu"), "qlora": ("recipes/sft/8gb/qlora.yaml", "single_gpu"),
               "full": ("recipes/sft/full.yaml", "zero2")}
    results = {"device": device, "peak_bf16_flops": peak, "flops_per_token": flops_per_token, "runs": {}}
    for mode in args.modes:
        recipe, accel = recipes[mode]
        r = run_mode(mode, model, data, args.work / f"run-{mode}", args.steps, accel, recipe)
        if "error" not in r and r.get("train_runtime_s"):
            tps = r["train_tokens"] / r["train_runtime_s"]
            r["tokens_per_s_per_gpu"] = round(tps, 1)
            r["mfu_percent"] = round(compute_mfu(flops_per_token, tps, 1, peak), 2) if peak else None
        results["runs"][mode] = r
        print(json.dumps({mode: {k: r.get(k) for k in ("tokens_per_s_per_gpu", "mfu_percent", "peak_memory_gib",
                                                        "wall_s", "error")}}), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(args.out) as fh:
            json.dump(results, fh, indent=2)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
