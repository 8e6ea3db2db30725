"""GPU training benchmark (`make bench-gpu`): short SFT and PPO runs of a Qwen3-1.7B-shaped model per mode -> JSON.

Needs no download and no network: the model is random-init with Qwen3-1.7B's real config
(medqa.models.tiny.QWEN3_1_7B, full 151,936-token vocabulary) and the tiny tokenizer, which is enough for
throughput and memory; the LoRA/QLoRA PPO runs start from an untrained adapter of `make sft-lora`'s shape on it,
and their teacher is the offline judge in-process on a loopback port. Each mode runs in its own `accelerate
launch` process (peak memory is per process) with the mode's GPU recipe and a few steps. Reported per mode
(docs/gpu.md explains each number):

- SFT: tokens/s per GPU after the warm-up window, from the end of the first step to the end of the last
  (medqa/runs/throughput.py), so one-time start-up costs are not averaged in; MFU: TRL's convention (6·N FLOPs per
  token + attention, `compute_flops_per_token`) against the device's dense bf16 peak (`get_peak_flops`), also for
  LoRA, whose real work is about 2/3 of that; gradient-checkpointing recomputation is not counted;
- PPO: the step split, mean seconds per step after the first (warm-up) step in generation, the no-grad
  policy/value/reference forwards, the teacher wait, scoring and the policy update, and rollout tokens/s;
- peak memory: `torch.cuda.max_memory_allocated` of the training process (excludes the CUDA context).

`--smoke` runs the same code path on CPU: a tiny Qwen3-shaped model (medqa.models.tiny.TINY with the tokenizer's
vocabulary), 2 steps per mode, 256-token SFT sequences, small PPO batches with 8 new tokens, the CPU accelerate
configs. Peak memory and MFU are CUDA-only and reported as null there; its timings only show that the
measurement works.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from medqa.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]
SMOKE_STEPS, SMOKE_MAX_LENGTH, GPU_MAX_LENGTH = 2, 256, 2048
SFT_ADAPTER_RECIPE = "recipes/sft/lora.yaml"  # the shape of the adapter the LoRA/QLoRA PPO runs start from


@dataclass(frozen=True)
class Inputs:
    """What the modes start from, built once per benchmark run (absolute paths; None when no selected mode needs it)."""

    model: Path  # the random-init model + tokenizer
    adapter: Path | None = None  # an untrained LoRA adapter of the SFT recipe's shape on `model`
    data: Path | None = None  # SFT rows (train.jsonl, dev.jsonl)
    prompts: Path | None = None  # RL prompts (`make rl-prompts`)


def sft_flags(inputs: Inputs, out: Path, steps: int) -> list[str]:
    return ["--model_name_or_path", str(inputs.model), "--data_dir", str(inputs.data), "--output_dir", str(out),
            "--max_steps", str(steps)]


def ppo_flags(inputs: Inputs, out: Path, steps: int, start: str = "model") -> list[str]:
    """PPO from `inputs.<start>`: the model itself (full) or the SFT-shaped adapter (LoRA, QLoRA)."""
    return ["--model_name_or_path", str(getattr(inputs, start)), "--prompts_file", str(inputs.prompts),
            "--output_dir", str(out), "--total_steps", str(steps)]


def sft_numbers(summary: dict) -> dict:
    """What an SFT run reports: medqa/train/sft.py's sft_summary.json, reduced to the benchmark's fields."""
    keys = ("global_step", "num_processes", "train_tokens", "train_runtime_s", "tokens_per_s_after_warmup",
            "warmup_steps", "measured_steps", "measured_tokens", "measured_s", "peak_memory_gib", "peak_rss_gib",
            "train_loss_first", "train_loss_last")
    return {k: summary.get(k) for k in keys}


def ppo_numbers(summary: dict) -> dict:
    """What a PPO run reports: medqa/train/ppo/trainer.py's ppo_summary.json, reduced to the benchmark's fields."""
    curve = summary.get("curve") or [{}]
    return {"global_step": summary.get("steps"), "num_processes": summary.get("num_processes"),
            "train_runtime_s": summary.get("wall_s"),
            **{k: summary.get(k) for k in ("warmup_steps", "measured_steps", "step_split_s", "rollout_tokens_per_s",
                                           "peak_memory_gib", "peak_rss_gib")},
            "reward_first": curve[0].get("reward"), "reward_last": curve[-1].get("reward")}


SFT_ARGS = ("--logging_steps", "1", "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end",
            "false", "--report_to", "none", "--disable_tqdm", "true", "--auto_resume", "false")
# The offline judge in-process (loopback only, no key), no judgement cache (every judgement is requested), no
# checkpoints (a ZeRO-3 full checkpoint would write ~24 GB); the final policy is still saved, after the timed steps.
PPO_ARGS = ("--teacher_offline", "true", "--teacher_cache", "", "--save_steps", "0", "--auto_resume", "false",
            "--report_to", "none", "--progress_bar", "false")
PPO_SMOKE_ARGS = ("--batch_size", "2", "--mini_batch_size", "1", "--forward_batch_size", "2", "--ppo_epochs", "1",
                  "--max_new_tokens", "8", "--max_prompt_length", "256", "--cpu_threads", "1")
SFT_HEADLINE = ("tokens_per_s_per_gpu", "mfu_percent", "peak_memory_gib", "wall_s", "error")
PPO_HEADLINE = ("step_split_s", "rollout_tokens_per_s", "peak_memory_gib", "wall_s", "error")


@dataclass(frozen=True)
class Mode:
    """One benchmarked run: the script `accelerate launch` starts with a recipe, the accelerate config on a GPU and
    in the CPU smoke run, the flags naming its inputs (`needs`), its steps on a GPU, extra flags (always, and only in
    the smoke run), and how the numbers are read from what the script writes into --output_dir."""

    name: str
    recipe: str
    accel: str
    cpu_accel: str
    script: str = "scripts/sft.py"
    needs: tuple[str, ...] = ("data",)
    flags: Callable[[Inputs, Path, int], list[str]] = sft_flags
    gpu_steps: int = 12
    args: tuple[str, ...] = SFT_ARGS
    smoke_args: tuple[str, ...] = ("--max_length", str(SMOKE_MAX_LENGTH))
    summary_file: str = "sft_summary.json"
    read: Callable[[dict], dict] = sft_numbers
    headline: tuple[str, ...] = SFT_HEADLINE  # the fields of the one-line progress print


def ppo_mode(name: str, recipe: str, accel: str, cpu_accel: str, start: str) -> Mode:
    """A PPO run: the recipe's batch and lengths on a GPU (4 steps: warm-up + 3 measured), small ones in the smoke."""
    return Mode(name, recipe=recipe, accel=accel, cpu_accel=cpu_accel, script="scripts/ppo.py",
                needs=("prompts", start), flags=partial(ppo_flags, start=start), gpu_steps=4, args=PPO_ARGS,
                smoke_args=PPO_SMOKE_ARGS, summary_file="ppo_summary.json", read=ppo_numbers, headline=PPO_HEADLINE)


# ---------------------------------------------------------------- the benchmarked modes
# One entry per run, in the order they run; the JSON report, the CPU smoke test and the table in docs/gpu.md follow
# this list.
MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("qlora", recipe="recipes/sft/8gb/qlora.yaml", accel="single_gpu", cpu_accel="cpu"),
    Mode("lora", recipe="recipes/sft/lora.yaml", accel="single_gpu", cpu_accel="cpu"),
    Mode("full", recipe="recipes/sft/full.yaml", accel="zero2", cpu_accel="cpu_zero2"),
    ppo_mode("ppo-qlora", "recipes/ppo/8gb/qlora.yaml", "single_gpu", "cpu", start="adapter"),
    ppo_mode("ppo-lora", "recipes/ppo/lora.yaml", "single_gpu", "cpu", start="adapter"),
    ppo_mode("ppo-full", "recipes/ppo/full.yaml", "zero3", "cpu_zero3", start="model"),
)}


def model_config(smoke: bool, vocab_size: int) -> dict:
    """Qwen3-1.7B's shapes, or for the smoke run the tiny model's with the tokenizer's vocabulary."""
    from medqa.models.tiny import QWEN3_1_7B, TINY

    return {**TINY, "vocab_size": vocab_size} if smoke else dict(QWEN3_1_7B)


def build_model(tokenizer_dir: Path, out: Path, smoke: bool = False, adapter: Path | None = None) -> int:
    """Save the random-init model + tokenizer into `out`, and with `adapter` an untrained LoRA adapter of the SFT
    recipe's shape (rank, alpha, dropout, target modules) on it, as `make sft-lora` writes one; returns the model's
    number of parameters."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen3Config(**model_config(smoke, len(tokenizer)), bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu"):
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    parameters = model.num_parameters()
    if adapter is not None:
        from peft import LoraConfig, get_peft_model

        from medqa.runs.recipes import load_recipe

        recipe = load_recipe(ROOT / SFT_ADAPTER_RECIPE)
        targets = recipe["lora_target_modules"]
        peft_model = get_peft_model(model, LoraConfig(
            r=recipe["lora_r"], lora_alpha=recipe["lora_alpha"], lora_dropout=recipe["lora_dropout"],
            target_modules=targets[0] if targets == ["all-linear"] else targets, task_type="CAUSAL_LM"))
        peft_model.peft_config["default"].base_model_name_or_path = str(out.resolve())
        peft_model.save_pretrained(adapter)
        tokenizer.save_pretrained(adapter)
    return parameters


def build_data(source: Path, out: Path, tokens_wanted: int, tokenizer_dir: Path) -> int:
    """The prepared training rows, cycled until they hold at least `tokens_wanted` tokens (a throughput test
    only: no more rows than the run can use, so the trainer's tokenization stays short); returns the row count."""
    from itertools import cycle

    from transformers import AutoTokenizer

    from medqa.runs.io import read_jsonl, write_jsonl

    rows = [{"messages": r["messages"]} for r in read_jsonl(source / "train.jsonl")]
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    lengths = [len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=False)) for r in rows]
    picked, tokens = [], 0
    for row, length in cycle(zip(rows, lengths, strict=True)):
        if tokens >= tokens_wanted:
            break
        picked.append(row)
        tokens += length
    write_jsonl(out / "dev.jsonl", rows[:8])
    return write_jsonl(out / "train.jsonl", picked)


def launch_command(mode: Mode, inputs: Inputs, out: Path, steps: int, cpu: bool, extra: tuple[str, ...] = ()
                   ) -> list[str]:
    """One process under the mode's accelerate config (its CPU one with `cpu`), the recipe, the inputs' flags, the
    mode's fixed flags, then `extra` (the smoke run's small shapes, or medqa.bench.shape's)."""
    accel = mode.cpu_accel if cpu else mode.accel
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"accelerate_configs/{accel}.yaml",
            "--num_processes", "1", mode.script, "--config", mode.recipe, *mode.flags(inputs, out, steps),
            *mode.args, *extra]


def run_mode(mode: Mode, inputs: Inputs, out: Path, steps: int, cpu: bool, extra: tuple[str, ...] = ()) -> dict:
    from medqa.runs.checkpoints import discard_run

    discard_run(out)  # the previous measurement's run, not kept beside the new one
    started = time.perf_counter()
    cmd = launch_command(mode, inputs, out, steps, cpu, extra)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = round(time.perf_counter() - started, 1)
    base = {"recipe": mode.recipe, "accelerate_config": cmd[cmd.index("--config_file") + 1], "steps": steps,
            "wall_s": wall}
    if proc.returncode != 0:
        return {**base, "error": f"exit {proc.returncode}: {proc.stderr[-3000:]}"}
    return {**base, **mode.read(json.loads((out / mode.summary_file).read_text(encoding="utf-8")))}


def add_rates(run: dict, flops_per_token: int, peak_flops: float | None) -> dict:
    """tokens/s per GPU and MFU (null without a known device peak) from an SFT run's after-warm-up rate."""
    from trl.trainer.utils import compute_mfu

    if "tokens_per_s_after_warmup" not in run:  # PPO: rollout tokens/s and the step split instead
        return run
    rate, procs = run.get("tokens_per_s_after_warmup"), run.get("num_processes") or 1
    run["tokens_per_s_per_gpu"] = round(rate / procs, 1) if rate else None
    run["mfu_percent"] = round(compute_mfu(flops_per_token, rate, procs, peak_flops), 2) if rate and peak_flops else None
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medqa.bench.gpu_sft", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU smoke run: tiny Qwen3-shaped model, 2 steps per mode")
    p.add_argument("--tokenizer", type=Path, default=ROOT / "models" / "tiny-qwen3")
    p.add_argument("--data", type=Path, default=ROOT / "data" / "processed", help="SFT data (`make data`)")
    p.add_argument("--prompts", type=Path, default=ROOT / "data" / "rl" / "training_prompts.jsonl",
                   help="RL prompts (`make rl-prompts`)")
    p.add_argument("--work", type=Path, help="scratch folder (default outputs/bench-gpu[-smoke])")
    p.add_argument("--out", type=Path, help="JSON report (default bench_results/gpu_sft[_smoke].json)")
    p.add_argument("--steps", type=int, help=f"steps of every mode, the first one warm-up (default: SFT 12, PPO 4; "
                                             f"smoke {SMOKE_STEPS})")
    p.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    args = p.parse_args(argv)
    suffix = "-smoke" if args.smoke else ""
    work = (args.work or ROOT / "outputs" / f"bench-gpu{suffix}").resolve()
    out = args.out or ROOT / "bench_results" / f"gpu_sft{suffix.replace('-', '_')}.json"
    if args.steps is not None and args.steps < 2:
        p.error("--steps must be >= 2: the first step is the warm-up window")
    modes = [MODES[name] for name in args.modes]
    steps = {m.name: args.steps or (SMOKE_STEPS if args.smoke else m.gpu_steps) for m in modes}
    needs = {need for m in modes for need in m.needs}
    for need, hint in ((args.tokenizer / "config.json", "make tiny-model"),
                       (args.data / "train.jsonl" if "data" in needs else None, "make data"),
                       (args.prompts if "prompts" in needs else None, "make rl-prompts")):
        if need is not None and not need.is_file():
            print(f"bench-gpu: {need} not found: run `{hint}` (`make bench-gpu` does)", file=sys.stderr)
            return ExitCode.BAD_INPUT

    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("bench-gpu: no CUDA device here; this benchmark needs a GPU (`make bench-gpu SMOKE=1` runs its CPU "
              "smoke version)", file=sys.stderr)
        return ExitCode.BAD_INPUT
    from transformers import AutoConfig
    from trl.trainer.utils import compute_flops_per_token, get_peak_flops

    from medqa.runs.io import atomic_write

    max_length = SMOKE_MAX_LENGTH if args.smoke else GPU_MAX_LENGTH
    inputs = Inputs(model=work / "model", adapter=work / "sft-adapter" if "adapter" in needs else None,
                    data=work / "data" if "data" in needs else None,
                    prompts=args.prompts.resolve() if "prompts" in needs else None)
    parameters = build_model(args.tokenizer, inputs.model, smoke=args.smoke, adapter=inputs.adapter)
    train_rows = None
    if inputs.data is not None:
        # 16 sequences per optimizer step is the most any recipe takes (full: micro-batch 1 x accumulation 8, 2 spare).
        sft_steps = max(steps[m.name] for m in modes if "data" in m.needs)
        train_rows = build_data(args.data, inputs.data, tokens_wanted=max_length * 16 * (sft_steps + 2),
                                tokenizer_dir=args.tokenizer)
    device = "cpu" if args.smoke else torch.cuda.get_device_name(0)
    peak = None if args.smoke else get_peak_flops(device, "bfloat16")
    flops_per_token = compute_flops_per_token(AutoConfig.from_pretrained(inputs.model), max_length)
    results = {"smoke": args.smoke, "device": device, "model": "tiny Qwen3-shaped" if args.smoke else "Qwen3-1.7B-shaped",
               "parameters": parameters, "train_rows": train_rows, "max_length": max_length,
               "peak_bf16_flops": peak, "flops_per_token": flops_per_token, "runs": {}}
    for mode in modes:
        run = run_mode(mode, inputs, work / f"run-{mode.name}", steps[mode.name], cpu=args.smoke,
                       extra=mode.smoke_args if args.smoke else ())
        results["runs"][mode.name] = run = add_rates(run, flops_per_token, peak)
        print(json.dumps({mode.name: {k: run.get(k) for k in mode.headline}}), flush=True)
        with atomic_write(out) as fh:  # after each mode, so a run cut short keeps what it measured
            json.dump(results, fh, indent=2)
    print(json.dumps(results, indent=2))
    print(f"results in {out}")
    return ExitCode.FAILED if any("error" in r for r in results["runs"].values()) else ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
