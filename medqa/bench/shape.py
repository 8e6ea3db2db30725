"""Real-shape benchmark on CPU (`make bench-shape`): every training stage once at Qwen3-1.7B's shape.

No GPU and no download: the model is random-init with Qwen3-1.7B's config (medqa.models.tiny.QWEN3_1_7B: 28
layers, hidden 2048, the full 151,936-token vocabulary, bf16), seeded, built once into `--model-dir` and reused
while its key (config, seed, dtype) matches; the tokenizer is the tiny one, whose ids all fit. Then:

1. The stages, each its own `accelerate launch` process on one CPU process, with its GPU recipe and 2 steps (one
   warm-up): SFT LoRA and SFT QLoRA (bitsandbytes' CPU path, the 8 GB recipe) over 512-token rows; PPO LoRA and
   PPO QLoRA with the recipes' batch shapes (8 GB: batch 4, mini-batch 1, forwards of 2) but short rollouts; GRPO
   LoRA with 2 completions of 2 prompts. Per stage: seconds per step after the warm-up (PPO: the step split),
   the process's peak resident memory (`ru_maxrss`), wall time.
2. The log-prob path alone, in this process, at the 8 GB PPO recipe's full sequence length (1,024 prompt + 384
   new tokens) and the real vocabulary: the rollout forwards (2 sequences, no grad) and the update (1 sequence,
   log-probs + entropy, forward and backward), each with the plain formula (an fp32 copy and a full log-softmax)
   and with medqa.train.ppo.core's block-wise one: peak resident memory above the start (medqa.bench.memory) and the
   largest tensors each allocates.

Writes `--out` (bench_results/shape.json) and the markdown table beside it (shape.md), after each stage, so a run
cut short keeps what it measured; a run of some stages (`--stages …`, `--no-logprob-path`) keeps the others' earlier
results. `--tiny` runs the same code with the tiny Qwen3 shape (the test suite's check
of the plumbing).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from medqa.bench.gpu_sft import (
    MODES,
    PPO_HEADLINE,
    Inputs,
    Mode,
    build_data,
    build_model,
    model_config,
    run_mode,
)
from medqa.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]
SEQ_LEN = 512  # SFT rows
PROMPT_LEN, NEW_TOKENS = 1024, 384  # the 8 GB PPO recipe's lengths, for the log-prob path
SHAPE_STEPS = 2  # the first is the warm-up window
ROLLOUT_TOKENS = 16  # new tokens per rollout in the stage runs (CPU generation at this size is ≈ 1 token/s/row)


def grpo_numbers(summary: dict) -> dict:
    return {"global_step": summary.get("global_step"), "num_processes": summary.get("num_processes"),
            "train_runtime_s": summary.get("wall_s"), "peak_memory_gib": summary.get("peak_memory_gib"),
            "peak_rss_gib": summary.get("peak_rss_gib")}


GRPO_ARGS = ("--teacher_offline", "true", "--teacher_cache", "", "--save_strategy", "no", "--report_to", "none",
             "--disable_tqdm", "true", "--logging_steps", "1")


def grpo_flags(inputs: Inputs, out: Path, steps: int) -> list[str]:
    return ["--model_name_or_path", str(inputs.adapter), "--prompts_file", str(inputs.prompts), "--output_dir",
            str(out), "--max_steps", str(steps)]


GRPO_LORA = Mode("grpo-lora", recipe="recipes/grpo/lora.yaml", accel="single_gpu", cpu_accel="cpu",
                 script="scripts/grpo.py", needs=("prompts", "adapter"), flags=grpo_flags, args=GRPO_ARGS,
                 summary_file="grpo_summary.json", read=grpo_numbers, headline=PPO_HEADLINE)

BF16 = ("--dtype", "bfloat16")
SFT_SHAPE = (*BF16, "--max_length", str(SEQ_LEN), "--per_device_train_batch_size", "1",
             "--gradient_accumulation_steps", "1", "--gradient_checkpointing", "true")
PPO_SHAPE = (*BF16, "--max_new_tokens", str(ROLLOUT_TOKENS), "--max_prompt_length", "256", "--ppo_epochs", "1",
             "--cpu_threads", "2")
# (mode, flags after the recipe's): the recipe decides the rest (LoRA rank, batch shapes, checkpointing).
STAGES: dict[str, tuple[Mode, tuple[str, ...]]] = {
    "sft-lora": (MODES["lora"], SFT_SHAPE),
    "sft-qlora": (MODES["qlora"], SFT_SHAPE),
    "ppo-lora": (MODES["ppo-lora"], PPO_SHAPE),
    "ppo-qlora": (MODES["ppo-qlora"], PPO_SHAPE),
    "grpo-lora": (GRPO_LORA, (*BF16, "--per_device_train_batch_size", "2", "--num_generations", "2",
                              "--gradient_accumulation_steps", "1", "--max_completion_length", str(ROLLOUT_TOKENS))),
}


# ---------------------------------------------------------------- the model, built once


def model_key(config: dict, seed: int) -> str:
    return hashlib.sha256(json.dumps({"config": config, "seed": seed, "dtype": "bfloat16"}, sort_keys=True)
                          .encode()).hexdigest()[:16]


def ensure_model(tokenizer: Path, model_dir: Path, tiny: bool) -> tuple[Inputs, int, bool]:
    """The random-init model and an untrained SFT-shaped adapter in `model_dir`, rebuilt only when its key changed;
    returns (inputs, parameter count, built now)."""
    from transformers import AutoTokenizer

    from medqa.runs.io import atomic_write, check_output_dir, write_manifest

    vocab = len(AutoTokenizer.from_pretrained(tokenizer))
    key = model_key(model_config(tiny, vocab), seed=0)
    stamp = model_dir / "shape-key.json"
    inputs = Inputs(model=model_dir / "model", adapter=model_dir / "sft-adapter")
    if stamp.is_file() and json.loads(stamp.read_text())["key"] == key:
        return inputs, json.loads(stamp.read_text())["parameters"], False
    entries = ["model", "sft-adapter", "shape-key.json"]
    check_output_dir(model_dir, kind="bench-shape")
    write_manifest(model_dir, "bench-shape", entries)  # first: an interrupted build is still recognised as ours
    parameters = build_model(tokenizer, inputs.model, smoke=tiny, adapter=inputs.adapter)
    with atomic_write(stamp) as fh:  # last: an interrupted build has no stamp and is rebuilt
        json.dump({"key": key, "parameters": parameters}, fh)
    return inputs, parameters, True


# ---------------------------------------------------------------- the log-prob path, plain vs block-wise


def logprob_path(hidden_size: int, vocab: int, tokens: int, sequences: int = 1, grad: bool = True,
                 temperature: float = 0.7, lm_head: bool = True) -> dict:
    """Peak resident memory and largest allocations of LM head + log-probs + entropy over `sequences` × `tokens`
    positions, bf16 head and hidden states: the plain formula vs medqa.train.ppo.core's block-wise one. With `grad`, as
    in the PPO update (forward and backward, entropy in the loss); without, as in the rollout forwards (no-grad
    log-probs only). `lm_head=False` starts from given bf16 logits (a leaf; `hidden_size` unused): the log-prob path
    alone, without the head's bf16 matmul, whose backward runs on a reference kernel on CPUs without AVX-512 (over
    30 minutes at this shape)."""
    import torch

    from medqa.bench.memory import LargestTensors, peak_rss_during
    from medqa.train.ppo import core

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, vocab, (sequences, tokens), generator=g)
    if lm_head:
        head = (torch.randn(vocab, hidden_size, generator=g) * 0.02).to(torch.bfloat16)
        hidden0 = torch.randn(sequences, tokens, hidden_size, generator=g).to(torch.bfloat16)
    else:
        head, hidden0 = None, torch.randn(sequences, tokens, vocab, generator=g).to(torch.bfloat16)

    def plain(logits):  # what PPO computed before the block-wise path (medqa/train/ppo/rollout.py, core.py)
        x = logits.float() / temperature
        logprobs = torch.log_softmax(x, dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        if not grad:
            return logprobs, None
        logp = torch.log_softmax(x, dim=-1)
        return logprobs, -(logp.exp() * logp).sum(-1)

    def blocks(logits):  # what medqa/train/ppo/rollout.py computes now
        if grad:
            return core.logprobs_and_entropy(logits, labels, temperature)
        return core.logprobs_from_logits(logits, labels, temperature), None

    positions = sequences * tokens
    out = {"sequences": sequences, "tokens": tokens, "vocab": vocab, "grad": grad, "lm_head": lm_head,
           "logits_bytes_bf16": positions * vocab * 2, "logits_bytes_fp32": positions * vocab * 4,
           "block_positions": core.CHUNK_POSITIONS}
    values = {}
    for name, fn in (("plain", plain), ("blocks", blocks)):
        hidden = hidden0.clone().requires_grad_(grad)

        def step(fn=fn, hidden=hidden):
            with torch.set_grad_enabled(grad):
                logprobs, entropy = fn(hidden @ head.T if head is not None else hidden)
                if grad:
                    (logprobs.sum() + 0.01 * entropy.sum()).backward()
            return logprobs.detach()

        started = time.perf_counter()
        with LargestTensors(keep=4) as largest:
            values[name], peak = peak_rss_during(step)
        out[name] = {"peak_rss_above_start_gib": None if peak is None else round(peak / 2**30, 3),
                     "seconds": round(time.perf_counter() - started, 2), "largest": largest.largest}
    out["max_abs_logprob_difference"] = float((values["plain"] - values["blocks"]).abs().max())
    if out["plain"]["peak_rss_above_start_gib"] and out["blocks"]["peak_rss_above_start_gib"]:
        out["peak_ratio_blocks_to_plain"] = round(out["blocks"]["peak_rss_above_start_gib"]
                                                  / out["plain"]["peak_rss_above_start_gib"], 3)
    return out


# The 8 GB PPO recipe's two log-prob passes: rollout forwards in chunks of `forward_batch_size` 2 (no grad), and the
# update over mini-batches of 1 (grad), each sequence 1,024 prompt + 384 new tokens.
LOGPROB_CASES = {"rollout_forward": dict(sequences=2, grad=False), "update": dict(sequences=1, grad=True)}


# ---------------------------------------------------------------- report


def stage_row(name: str, run: dict) -> str:
    if "error" in run:
        return f"| {name} | failed: {run['error'].splitlines()[-1][:120]} | | | |"
    split = run.get("step_split_s")
    if split:  # PPO: "step" is the whole step, the other keys its phases
        step = f"{split['step']:.1f} (" + ", ".join(f"{k} {v:.1f}" for k, v in split.items() if k != "step") + ")"
    elif run.get("measured_s") and run.get("measured_steps"):
        step = f"{run['measured_s'] / run['measured_steps']:.1f}"
    else:
        step = f"{run['train_runtime_s'] / max(run.get('global_step') or 1, 1):.1f} (whole run ÷ steps)"
    return f"| {name} | {step} | {run.get('peak_rss_gib')} | {run['wall_s']} | `{run['recipe']}` |"


def markdown(results: dict) -> str:
    lines = [f"Measured by `make bench-shape` on {results['machine']} ({results['model']}, "
             f"{results['parameters']:,} parameters, bf16), {results['measured_at']}.", "",
             "| stage | seconds per step after the warm-up | peak RSS (GiB) | wall (s) | recipe |", "|---|---|---|---|---|"]
    lines += [stage_row(name, run) for name, run in results["stages"].items()]
    cases = results.get("logprob_path") or {}
    if cases:
        lines += ["", "Log-prob path alone (LM head + per-token log-probs, + entropy and backward in the update), "
                      "plain formula vs block-wise:", "",
                  "| pass | positions × vocabulary | logits bf16 / fp32 (GiB) | path | peak RSS above start (GiB) | "
                  "seconds | largest allocations |", "|---|---|---|---|---|---|---|"]
        for case, lp in cases.items():
            size = (f"{lp['sequences']} × {lp['tokens']:,} × {lp['vocab']:,}",
                    f"{lp['logits_bytes_bf16'] / 2**30:.2f} / {lp['logits_bytes_fp32'] / 2**30:.2f}")
            for name in ("plain", "blocks"):
                r = lp[name]
                big = "; ".join(f"{t['op']} {'×'.join(map(str, t['shape']))} {t['dtype']} "
                                f"{t['bytes'] / 2**20:.0f} MiB" for t in r["largest"][:3])
                lines.append(f"| {case} | {size[0]} | {size[1]} | {name} | {r['peak_rss_above_start_gib']} | "
                             f"{r['seconds']} | {big} |")
    return "\n".join(lines) + "\n"


def is_report(path: Path) -> bool:
    """`path` is a report this benchmark wrote (its JSON, or its markdown table)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix == ".md":
        return text.startswith("Measured by `make bench-shape`")
    try:
        report = json.loads(text)
    except ValueError:
        return False
    return isinstance(report, dict) and {"machine", "model", "parameters", "stages"} <= report.keys()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medqa.bench.shape", description=__doc__.splitlines()[0])
    p.add_argument("--tokenizer", type=Path, default=ROOT / "models" / "tiny-qwen3")
    p.add_argument("--data", type=Path, default=ROOT / "data" / "processed", help="SFT data (`make data`)")
    p.add_argument("--prompts", type=Path, default=ROOT / "data" / "rl" / "training_prompts.jsonl")
    p.add_argument("--model-dir", type=Path, help="where the model is built and cached (default models/qwen3-1.7b-shape)")
    p.add_argument("--work", type=Path, help="scratch folder for the runs (default outputs/bench-shape)")
    p.add_argument("--out", type=Path, default=ROOT / "bench_results" / "shape.json")
    p.add_argument("--stages", nargs="*", choices=list(STAGES), default=list(STAGES))
    p.add_argument("--no-logprob-path", action="store_true", help="skip the in-process log-prob measurement")
    p.add_argument("--tiny", action="store_true", help="the tiny Qwen3 shape: checks the plumbing in seconds")
    args = p.parse_args(argv)
    for need, hint in ((args.tokenizer / "config.json", "make tiny-model"), (args.data / "train.jsonl", "make data"),
                       (args.prompts, "make rl-prompts")):
        if not need.is_file():
            print(f"bench-shape: {need} not found: run `{hint}` (`make bench-shape` does)", file=sys.stderr)
            return ExitCode.BAD_INPUT
    import platform

    import torch

    from medqa.runs.io import atomic_write, ensure_out_folder

    for path in (args.out, args.out.with_suffix(".md")):  # replaced only when an earlier bench-shape wrote them
        if path.exists() and not is_report(path):
            print(f"bench-shape: {path} exists and is not a bench-shape report; choose another --out", file=sys.stderr)
            return ExitCode.BAD_INPUT

    suffix = "-tiny" if args.tiny else ""
    model_dir = (args.model_dir or ROOT / "models" / f"qwen3-1.7b-shape{suffix}").resolve()
    work = ensure_out_folder((args.work or ROOT / "outputs" / f"bench-shape{suffix}").resolve())
    t0 = time.perf_counter()
    inputs, parameters, built = ensure_model(args.tokenizer, model_dir, args.tiny)
    print(f">> model: {model_dir} ({parameters:,} parameters, {'built' if built else 'cached'} "
          f"{time.perf_counter() - t0:.0f} s)", flush=True)
    inputs = Inputs(model=inputs.model, adapter=inputs.adapter, data=work / "data", prompts=args.prompts.resolve())
    (work / "data").mkdir(exist_ok=True)
    build_data(args.data, inputs.data, tokens_wanted=SEQ_LEN * 4 * (SHAPE_STEPS + 2), tokenizer_dir=args.tokenizer)
    config = json.loads((inputs.model / "config.json").read_text(encoding="utf-8"))  # the model as built
    results = {"machine": f"{platform.machine()}, {torch.get_num_threads()} threads, CPU",
               "model": "tiny Qwen3-shaped" if args.tiny else "Qwen3-1.7B-shaped", "parameters": parameters,
               "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "steps": SHAPE_STEPS, "stages": {}}
    if args.out.is_file():  # a partial rerun keeps what an earlier run measured with the same model
        earlier = json.loads(args.out.read_text(encoding="utf-8"))
        if earlier.get("parameters") == parameters:
            results["stages"] = {k: v for k, v in earlier.get("stages", {}).items() if k not in args.stages}
            if args.no_logprob_path and "logprob_path" in earlier:
                results["logprob_path"] = earlier["logprob_path"]

    def save():
        with atomic_write(args.out) as fh:
            json.dump(results, fh, indent=2)
        with atomic_write(args.out.with_suffix(".md")) as fh:
            fh.write(markdown(results))

    for name in args.stages:
        mode, extra = STAGES[name]
        print(f">> {name}: {mode.recipe}", flush=True)
        run = run_mode(mode, inputs, work / f"run-{name}", SHAPE_STEPS, cpu=True, extra=extra)
        results["stages"][name] = run
        print(">> " + stage_row(name, run), flush=True)
        save()
    if not args.no_logprob_path:
        tokens = 64 if args.tiny else PROMPT_LEN + NEW_TOKENS
        vocab = config["vocab_size"]
        results["logprob_path"] = {}
        for case, kw in LOGPROB_CASES.items():
            results["logprob_path"][case] = logprob_path(config["hidden_size"], vocab, tokens, **kw)
            save()
    print(markdown(results))
    print(f">> results in {args.out} and {args.out.with_suffix('.md')}")
    return ExitCode.FAILED if any("error" in r for r in results["stages"].values()) else ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
