"""SFT (LoRA, assistant-only loss) and PPO on the real base, SmolLM2-135M-Instruct: one step each on a few short
rows, through the same entry points as `make sft-lora` and `make ppo`. Sized for a 2-core CPU."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from conftest import ROOT, make_sft_row, ppo_trainer
from medqa.runs.io import read_jsonl, write_jsonl

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.fixture(scope="module")
def real_sft_data(tmp_path_factory) -> Path:
    """Three short rows in the `make data` shape (two English, one Chinese; 111-218 tokens each), each with its
    system prompt: one packed row of 462 tokens."""
    rng = random.Random(0)
    rows = [make_sft_row(i, rng) for i in range(12)]
    out = tmp_path_factory.mktemp("real-sft-data")
    write_jsonl(out / "train.jsonl", [rows[i] for i in (2, 4, 11)])
    return out


def _sft_argv(model: Path, data: Path, out: Path) -> list[str]:
    """The CPU LoRA recipe, one step over the three rows (one packed batch), no eval, saved at the end."""
    return ["--config", str(ROOT / "recipes" / "sft" / "cpu" / "lora.yaml"), "--model_name_or_path", str(model),
            "--data_dir", str(data), "--output_dir", str(out), "--report_to", "none", "--disable_tqdm", "true",
            "--eval_file", "none", "--eval_strategy", "no", "--load_best_model_at_end", "false",
            "--save_strategy", "no", "--max_steps", "1", "--learning_rate", "1e-4", "--lora_r", "8",
            "--lora_alpha", "16", "--lora_dropout", "0", "--per_device_train_batch_size", "4", "--max_length", "512",
            "--logging_steps", "1"]


def test_sft_loss_covers_only_the_assistant_turns(real_base_dir, real_sft_data, tmp_path):
    """In every packed example the labels are the ids of `<think>…</think>answer<|im_end|>` and -100 everywhere
    else: the system and user turns before it and the newline after it (medqa's generation-marked ChatML
    template)."""
    from medqa.train.sft import build_trainer, parse_args

    trainer = build_trainer(*parse_args(_sft_argv(real_base_dir, real_sft_data, tmp_path / "sft")))
    tok = trainer.processing_class
    answers = [r["messages"][-1]["content"] for r in read_jsonl(real_sft_data / "train.jsonl")]
    seen = []
    for row in trainer.train_dataset:
        start = 0
        for length in row["seq_lengths"]:
            ids, labels = row["input_ids"][start:start + length], row["labels"][start:start + length]
            start += length
            trained = [i for i, label in enumerate(labels) if label != -100]
            first, last = trained[0], trained[-1]
            assert trained == list(range(first, last + 1)) and labels[first:last + 1] == ids[first:last + 1]
            prompt, target, rest = tok.decode(ids[:first]), tok.decode(ids[first:last + 1]), tok.decode(ids[last + 1:])
            assert prompt.startswith("<|im_start|>system\n") and "<|im_start|>user\n" in prompt
            assert prompt.endswith("<|im_start|>assistant\n") and rest == "\n"
            assert target.endswith("<|im_end|>") and target.removesuffix("<|im_end|>") in answers
            seen.append(target.removesuffix("<|im_end|>"))
    assert sorted(seen) == sorted(answers)


@pytest.fixture(scope="module")
def real_sft_adapter(real_base_dir, real_sft_data, tmp_path_factory) -> tuple[Path, dict]:
    """One SFT-LoRA step on the real base (`medqa.train.sft.main`, what `make sft-lora` runs)."""
    from medqa.train.sft import main, parse_args

    out = tmp_path_factory.mktemp("real-sft") / "sft-lora"
    return out, main(*parse_args(_sft_argv(real_base_dir, real_sft_data, out)))


def test_one_sft_step_saves_an_adapter_that_reloads_and_answers(real_sft_adapter, real_base_dir):
    import torch

    from medqa.models.chat import chatml_template
    from medqa.models.generation import GenerationSettings, generate, load_model

    out, summary = real_sft_adapter
    assert summary["global_step"] == 1 and math.isfinite(summary["train_loss_first"])
    adapter = json.loads((out / "adapter_config.json").read_text(encoding="utf-8"))
    assert Path(adapter["base_model_name_or_path"]) == real_base_dir
    assert (out / "chat_template.jinja").read_text(encoding="utf-8") == chatml_template()
    model, tok = load_model(str(out))  # the adapter alone: its base is the one it names
    torch.set_num_threads(2)
    (gen,) = generate(model, tok, ["What should I do for a mild headache?"], GenerationSettings(max_new_tokens=8))
    assert gen.gen_tokens > 0 and gen.text


def test_one_ppo_step_from_the_sft_adapter(real_sft_adapter, ppo_prompts, tmp_path):
    """PPO (rule reward, 2 rollouts of 8 new tokens, one optimisation pass over both) from the real SFT adapter."""
    sft, _ = real_sft_adapter
    out = tmp_path / "ppo"
    ppo_trainer(sft, ppo_prompts, out, cpu_threads=2, max_new_tokens=8, batch_size=2, forward_batch_size=2,
                mini_batch_size=2, ppo_epochs=1).train()
    (row,) = read_jsonl(out / "metrics.jsonl")
    assert row["step"] == 1 and math.isfinite(row["kl"]) and math.isfinite(row["reward"])
    assert (out / "adapter_model.safetensors").is_file()
