"""P3: share of computed tokens that are padding in SFT batches (packed, padding-free) vs naive pad-to-longest.

Both sides batch the same tokenized training examples (data/processed/train.jsonl through the CPU LoRA recipe's
chat template and assistant-only labels). "Computed" tokens are the positions fed to the model: for the SFT
pipeline the batches its Trainer dataloader yields; for the naive baseline, the examples in a shuffled order,
padded to the longest in batches of the recipe's per-device batch size (what the recipe does with packing off). Then a short SFT-LoRA run of the tiny model
measures CPU training throughput. Goal: padding share <= 2 %.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "sft" / "cpu" / "lora.yaml"
GOAL = 0.02


def padding_report(packed_trainer, unpacked_trainer, naive_batch_size: int, seed: int = 0) -> dict:
    """Computed and padding positions: the packed trainer's own dataloader vs pad-to-longest batches of the
    unpacked trainer's examples (the same tokenized, label-masked examples, one per row)."""
    import torch
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    pad_id = packed_trainer.processing_class.pad_token_id
    examples = unpacked_trainer.train_dataset
    # The pad token never occurs inside chat-formatted examples, so pad positions can be counted by id.
    assert all(pad_id not in row["input_ids"] for row in examples), "pad token inside an example"
    computed = padding = 0
    for batch in packed_trainer.get_train_dataloader():
        computed += batch["input_ids"].numel()
        padding += int((batch["input_ids"] == pad_id).sum())

    collate = DataCollatorForLanguageModeling(pad_token_id=pad_id)
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    naive_computed = naive_padding = 0
    for i in range(0, len(order), naive_batch_size):
        batch = collate([examples[j] for j in order[i : i + naive_batch_size]])
        naive_computed += batch["input_ids"].numel()
        naive_padding += int((batch["attention_mask"] == 0).sum())
    example_tokens = naive_computed - naive_padding
    return {
        "examples": len(examples),
        "example_tokens": example_tokens,
        "sft_computed_tokens": computed,
        "sft_padding_tokens": padding,
        "sft_padding_share": round(padding / computed, 4),
        "sft_tokens_dropped_by_packing": example_tokens - (computed - padding),
        "naive_batch_size": naive_batch_size,
        "naive_computed_tokens": naive_computed,
        "naive_padding_tokens": naive_padding,
        "naive_padding_share": round(naive_padding / naive_computed, 4),
    }


def run(out_dir: Path) -> dict:
    from medqa.train.sft import build_trainer, main, parse_args

    model, data = ROOT / "models" / "tiny-qwen3", ROOT / "data" / "processed"
    if not (model / "config.json").is_file() or not (data / "train.jsonl").is_file():
        raise FileNotFoundError("P3 needs models/tiny-qwen3 and data/processed: run `make tiny-model data` first")
    run_dir = Path(out_dir) / "p3-sft-lora"
    argv = ["--config", str(RECIPE), "--model_name_or_path", str(model), "--data_dir", str(data),
            "--output_dir", str(run_dir), "--report_to", "none", "--disable_tqdm", "true", "--auto_resume", "false"]
    packed = build_trainer(*parse_args(argv))
    unpacked = build_trainer(*parse_args([*argv, "--packing", "false"]))
    # Naive: the recipe with packing off, i.e. per_device_train_batch_size examples padded to the longest.
    report = padding_report(packed, unpacked, naive_batch_size=packed.args.per_device_train_batch_size)
    report["max_length"] = packed.args.max_length
    report["goal_padding_share"] = GOAL
    report["meets_goal"] = report["sft_padding_share"] <= GOAL
    report["padding_reduction_x"] = (
        round(report["naive_padding_share"] / report["sft_padding_share"], 1) if report["sft_padding_share"] else None
    )
    del packed, unpacked

    # Throughput: a short SFT-LoRA run of the tiny model on CPU with the same recipe.
    from medqa.runs.checkpoints import discard_run

    discard_run(run_dir)  # the previous measurement's run, not kept beside the new one
    summary = main(*parse_args([*argv, "--max_steps", "20", "--eval_strategy", "no", "--save_strategy", "no",
                                "--load_best_model_at_end", "false"]))
    report["cpu_train_tokens"] = summary["train_tokens"]
    report["cpu_train_runtime_s"] = summary["train_runtime_s"]
    report["cpu_tokens_per_s"] = round(summary["train_tokens"] / summary["train_runtime_s"], 1)
    report["cpu_loss_first_last"] = [summary["train_loss_first"], summary["train_loss_last"]]
    return report
