"""SFT stage: recipes and validation, prompt masking, LoRA / QLoRA / full training, reload + generate, merge, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import LEARNING_SEED, ROOT
from medqa.runs.checkpoints import HF_STATE, checkpoint_step, newest_checkpoint
from medqa.train.sft import load_recipe, parse_args

RECIPES = sorted((ROOT / "recipes" / "sft").rglob("*.yaml"))


def cpu_argv(mode: str, model: Path, data: Path, out: Path, **overrides) -> list[str]:
    """The CPU recipe of `mode`, pointed at the fixtures; overrides as --key value."""
    argv = ["--config", str(ROOT / "recipes" / "sft" / "cpu" / f"{mode}.yaml"), "--model_name_or_path", str(model),
            "--data_dir", str(data), "--output_dir", str(out), "--report_to", "none", "--disable_tqdm", "true"]
    for key, value in overrides.items():
        argv += [f"--{key}", str(value)]
    return argv


def train(mode: str, model: Path, data: Path, out: Path, **overrides) -> dict:
    from medqa.train.sft import main

    return main(*parse_args(cpu_argv(mode, model, data, out, **overrides)))


# ---------------------------------------------------------------- recipes and validation


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes" / "sft")))
def test_every_recipe_parses(recipe):
    if recipe.name == "profile.yaml":
        pytest.skip("a profile overlay, not a whole recipe")
    script_args, training_args, model_args = parse_args(["--config", str(recipe)])
    assert model_args.mode in {"lora", "qlora", "full"} and recipe.stem == model_args.mode
    assert training_args.assistant_only_loss
    # Packing everywhere but the CPU demo, where padding-free packing measured slower (docs/demo.md).
    assert training_args.packing != recipe.parent.name.startswith("demo")  # demo, demo-real
    assert training_args.bf16 is False  # no GPU here: fp32 automatically
    assert Path(training_args.output_dir).parts[0] == "outputs"


def test_mode_recipes_carry_the_original_hyperparameters():
    _, lora_args, lora = parse_args(["--config", str(ROOT / "recipes/sft/lora.yaml")])
    assert (lora.lora_r, lora.lora_alpha, lora.lora_dropout) == (64, 128, 0.1)
    assert lora.lora_target_modules == "all-linear" and lora.use_peft and not lora.load_in_4bit
    assert (lora_args.learning_rate, lora_args.num_train_epochs) == (2e-4, 3)
    _, _, qlora = parse_args(["--config", str(ROOT / "recipes/sft/qlora.yaml")])
    assert qlora.load_in_4bit and qlora.bnb_4bit_quant_type == "nf4" and qlora.use_bnb_nested_quant and qlora.use_peft
    _, full_args, full = parse_args(["--config", str(ROOT / "recipes/sft/full.yaml")])
    assert not full.use_peft and not full.load_in_4bit
    assert (full_args.learning_rate, full_args.num_train_epochs, full_args.gradient_accumulation_steps) == (5e-6, 1, 8)
    _, cpu_args, cpu = parse_args(["--config", str(ROOT / "recipes/sft/cpu/lora.yaml"), "--lora_r", "8"])
    assert cpu.model_name_or_path == "models/tiny-qwen3" and cpu.lora_r == 8  # CLI beats the recipe
    assert cpu_args.use_cpu


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--mode", "adapter"], "invalid choice"),
        (["--lora_r", "0"], "lora_r must be >= 1"),
        (["--lora_dropout", "1.5"], "lora_dropout must be in [0, 1)"),
        (["--lora_alpha", "-1"], "lora_alpha must be > 0"),
        (["--mode", "full", "--use_peft", "true"], "mode full trains every weight"),
        (["--load_in_4bit", "true"], "set `mode: qlora` instead"),
        (["--bf16", "true"], "bf16/fp16 mixed precision needs a GPU"),
        (["--learning_rate", "0"], "learning_rate must be > 0"),
        (["--dtype", "int8"], "dtype must be auto"),
        (["--no_such_option", "1"], "unknown command-line options"),
    ],
)
def test_invalid_settings_fail_with_a_clear_message(extra, message, capsys):
    argv = ["--config", str(ROOT / "recipes/sft/cpu/lora.yaml"), *extra]
    with pytest.raises((ValueError, SystemExit)) as info:
        parse_args(argv)
    text = str(info.value) + capsys.readouterr().err
    assert message in text


def test_qlora_without_bitsandbytes_is_refused(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(ValueError, match="mode qlora needs bitsandbytes"):
        parse_args(["--config", str(ROOT / "recipes/sft/cpu/qlora.yaml")])


def test_recipe_bases_merge_in_order_and_cycles_are_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("learning_rate: 1.0\nmode: lora\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\nlearning_rate: 2.0\n")
    (tmp_path / "c.yaml").write_text("base: [b.yaml]\nlora_r: 4\n")
    assert load_recipe(tmp_path / "c.yaml") == {"learning_rate": 2.0, "mode": "lora", "lora_r": 4}
    (tmp_path / "a.yaml").write_text("base: c.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        load_recipe(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("no_such_field: 1\n")
    with pytest.raises(ValueError, match="unknown options.*no_such_field"):
        parse_args(["--config", str(tmp_path / "d.yaml"), "--model_name_or_path", "x"])


def test_entry_point_reports_bad_recipes_in_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("model_name_or_path: x\nmode: lora\nlora_r: 0\n")
    proc = subprocess.run([sys.executable, "scripts/sft.py", "--config", str(tmp_path / "bad.yaml")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "sft: lora_r must be >= 1, got 0"


def test_bad_data_rows_are_located(tmp_path):
    from medqa.runs.io import InputError
    from medqa.train.sft import load_split

    (tmp_path / "train.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}) + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "no answer"}]}) + "\n")
    with pytest.raises(InputError, match=r"train.jsonl:2: messages: the last message must be a non-empty assistant"):
        load_split(tmp_path / "train.jsonl", None)
    with pytest.raises(FileNotFoundError, match="run `make data` first"):
        load_split(tmp_path / "missing.jsonl", None)


# ---------------------------------------------------------------- the data pipeline


def test_labels_cover_only_the_assistant_turn(tiny_model_dir, sft_data_dir, tmp_path):
    """Packed, padding-free rows: per packed example the loss covers `<think>…</think>answer<|im_end|>`, never
    the system or user turns; the collator adds no padding and restarts positions at every example."""
    from medqa.train.sft import build_trainer

    trainer = build_trainer(*parse_args(cpu_argv("lora", tiny_model_dir, sft_data_dir, tmp_path)))
    tok = trainer.processing_class
    rows = trainer.train_dataset
    assert trainer.padding_free and "seq_lengths" in rows.column_names
    n_examples = 0
    for row in rows:
        start = 0
        for length in row["seq_lengths"]:
            ids, labels = row["input_ids"][start:start + length], row["labels"][start:start + length]
            start += length
            n_examples += 1
            first = next(i for i, label in enumerate(labels) if label != -100)
            assert all(label == -100 for label in labels[:first])
            assert all(label == tid for label, tid in zip(labels[first:], ids[first:], strict=True))
            prompt, target = tok.decode(ids[:first]), tok.decode(ids[first:])
            assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
            assert "<|im_start|>user\n" in prompt
            assert target.startswith("<think>\n") and "</think>" in target and target.rstrip("\n").endswith("<|im_end|>")
    assert n_examples == 48
    batch = next(iter(trainer.get_train_dataloader()))
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    assert (batch["input_ids"] == tok.pad_token_id).sum() == 0
    starts = (batch["position_ids"][0] == 0).nonzero().flatten()
    assert len(starts) > 1 and (batch["labels"][0, starts] == -100).all()


# ---------------------------------------------------------------- training in each mode


@pytest.fixture(scope="module")
def runs(tiny_model_dir, sft_data_dir, tmp_path_factory):
    """One short run per mode (trained once, shared by the tests below)."""
    cache: dict[str, tuple[Path, dict]] = {}

    def get(mode: str) -> tuple[Path, dict]:
        if mode not in cache:
            out = tmp_path_factory.mktemp(f"sft-{mode}")
            settings = {"lora": dict(learning_rate=3e-3, max_steps=40, per_device_train_batch_size=2, eval_steps=20,
                                     save_steps=20, lora_dropout=0.0, max_length=256),
                        "qlora": dict(learning_rate=3e-3, max_steps=8, per_device_train_batch_size=2, eval_steps=4,
                                      save_steps=4, max_length=256),
                        "full": dict(learning_rate=2e-3, max_steps=6, per_device_train_batch_size=2,
                                     gradient_accumulation_steps=2, eval_steps=3, save_steps=3, max_length=256)}[mode]
            cache[mode] = out, train(mode, tiny_model_dir, sft_data_dir, out, logging_steps=1, seed=LEARNING_SEED,
                                     **settings)
        return cache[mode]

    return get


# About half the smallest drop seen over 20 seeds (`make test-seeds`): lora 5.0, qlora 1.05, full 0.81.
LOSS_DROP = {"lora": 2.5, "qlora": 0.5, "full": 0.4}


@pytest.mark.slow
@pytest.mark.learning
@pytest.mark.parametrize("mode", ["lora", "qlora", "full"])
def test_training_loss_falls(runs, mode, measure):
    """The first logged loss is the initial model's (step 1, before any update has shown in it); the mean of the
    last three steps falls below it with a margin (bounds: `make test-seeds`)."""
    out, summary = runs(mode)
    losses = summary["train_losses"]
    print(mode, "train losses", [round(x, 3) for x in losses])
    assert summary["mode"] == mode and len(losses) >= 6
    measure(f"sft-{mode}/loss_initial_minus_last3", losses[0] - sum(losses[-3:]) / 3, at_least=LOSS_DROP[mode])
    assert (out / "README.md").is_file() and (out / "tokenizer_config.json").is_file()
    weights = "adapter_model.safetensors" if mode != "full" else "model.safetensors"
    assert (out / weights).is_file() and newest_checkpoint(out, HF_STATE) is not None
    assert summary["best_checkpoint"] is not None and summary["eval_losses"]
    assert summary["eval_loss_kept"] == min(summary["eval_losses"])  # metric_for_best_model eval_loss


def _generate(model, tok, messages, n=12) -> str:
    import torch

    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=n, do_sample=False)
    return tok.decode(out[0, ids["input_ids"].shape[1]:])


@pytest.mark.slow
def test_lora_adapter_reloads_generates_think_and_merges_exactly(runs, sft_data_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medqa.apps.merge import merge_adapter
    from medqa.runs.io import read_jsonl

    out, _ = runs("lora")
    tok = AutoTokenizer.from_pretrained(out)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 64 and config["lora_alpha"] == 128
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"], dtype=torch.float32)
    model = PeftModel.from_pretrained(base, out).eval()
    prompt = read_jsonl(sft_data_dir / "dev.jsonl")[0]["messages"][:2]
    assert _generate(model, tok, prompt).startswith("<think>")

    merged_dir = merge_adapter(out, tmp_path / "merged", dtype="float32")
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    assert not any("lora" in name for name, _ in merged.named_parameters())
    ids = tok.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        expected, got = model(**ids).logits, merged(**ids).logits
    assert torch.allclose(expected, got, atol=1e-4), (expected - got).abs().max()
    assert _generate(merged, AutoTokenizer.from_pretrained(merged_dir), prompt).startswith("<think>")


@pytest.mark.slow
def test_qlora_adapter_merges_onto_the_full_precision_base(runs, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, _ = runs("qlora")
    base_path = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    from medqa.apps.merge import merge_adapter

    merged = AutoModelForCausalLM.from_pretrained(merge_adapter(out, tmp_path / "m", dtype="float32")).eval()
    assert getattr(merged.config, "quantization_config", None) is None
    assert not any("Linear4bit" in type(m).__name__ for m in merged.modules())
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32), out).eval()
    ids = torch.tensor([[5, 17, 99, 300, 7, 42]])
    with torch.no_grad():
        assert torch.allclose(reference(ids).logits, merged(ids).logits, atol=1e-4)


@pytest.mark.slow
def test_qlora_gradients_survive_eval_and_generate(tiny_model_dir, sft_data_dir, tmp_path):
    """bitsandbytes repacks 4-bit weights on AVX512-BF16 CPUs after a no-grad forward; gradients must not change."""
    import bitsandbytes as bnb
    import torch

    from medqa.train.sft import build_trainer

    trainer = build_trainer(*parse_args(cpu_argv("qlora", tiny_model_dir, sft_data_dir, tmp_path, lora_dropout=0.0)))
    model = trainer.model
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and all(layer.support_avx512bf16_for_cpu is False for layer in layers)
    batch = next(iter(trainer.get_train_dataloader()))

    def grads() -> dict[str, torch.Tensor]:
        model.train()
        model.zero_grad()
        trainer.compute_loss(model, dict(batch)).backward()
        return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}

    before = grads()
    trainer.evaluate()
    model.eval()
    with torch.no_grad():
        model.generate(input_ids=batch["input_ids"][:, :8], max_new_tokens=3, do_sample=False)
    after = grads()
    n_lora = sum(1 for n, p in model.named_parameters() if p.requires_grad)
    assert len(before) == len(after) == n_lora > 0
    for name, grad in before.items():
        assert torch.allclose(grad, after[name], rtol=1e-3, atol=1e-6), name


# ---------------------------------------------------------------- resume


@pytest.mark.slow
def test_sigkilled_run_resumes_and_matches_an_uninterrupted_one(tiny_model_dir, sft_data_dir, tmp_path):
    settings = dict(max_steps=8, save_steps=2, eval_steps=2, logging_steps=1, learning_rate=3e-3,
                    per_device_train_batch_size=2, max_length=256, save_total_limit=3)
    killed = tmp_path / "killed"
    cmd = [sys.executable, "scripts/sft.py", *cpu_argv("lora", tiny_model_dir, sft_data_dir, killed, **settings)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            checkpoint = newest_checkpoint(killed, HF_STATE)
            if checkpoint and checkpoint_step(checkpoint) >= 4:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "sft_summary.json").exists()
    stopped_at = checkpoint_step(newest_checkpoint(killed, HF_STATE))
    assert 4 <= stopped_at < 8

    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = json.loads((killed / "sft_summary.json").read_text())
    assert resumed["resumed_from"].endswith(f"checkpoint-{stopped_at}") and resumed["global_step"] == 8

    reference = train("lora", tiny_model_dir, sft_data_dir, tmp_path / "reference", **settings)
    # The log history is restored from the checkpoint; with the same data order and RNG after the resume, every
    # step's loss matches the uninterrupted run.
    assert len(resumed["train_losses"]) == len(reference["train_losses"]) == 8
    assert resumed["train_losses"] == pytest.approx(reference["train_losses"], rel=1e-4)
    assert resumed["eval_losses"][-1] == pytest.approx(reference["eval_losses"][-1], rel=1e-4)


def test_the_checkpoint_kept_is_the_one_with_the_best_dev_think_coverage(tiny_model_dir, sft_data_dir, tmp_path,
                                                                         monkeypatch):
    """With think_eval_items and metric_for_best_model think_coverage, each evaluation answers dev prompts and the
    model saved at the end is the checkpoint whose answers closed </think> most often, not the last or the lowest
    loss. The coverages are scripted (after really generating) so the best one is a middle checkpoint."""
    import torch
    from safetensors.torch import load_file

    from medqa.train.sft import ThinkCoverageCallback

    real = ThinkCoverageCallback.coverage
    scripted = iter([0.2, 0.9, 0.4])
    measured = []

    def coverage(self, model):
        measured.append(real(self, model))
        return next(scripted)

    monkeypatch.setattr(ThinkCoverageCallback, "coverage", coverage)
    out = tmp_path / "sft"
    summary = train("full", tiny_model_dir, sft_data_dir, out, max_steps=6, eval_steps=2, save_steps=2,
                    gradient_accumulation_steps=1, learning_rate=2e-3, max_length=256, save_total_limit=2,
                    think_eval_items=2, think_eval_max_new_tokens=8, metric_for_best_model="think_coverage",
                    load_best_model_at_end="true")
    assert len(measured) == 3 and all(0.0 <= v <= 1.0 for v in measured)  # it really answered the dev prompts
    assert [h["step"] for h in summary["eval_think_coverage"]] == [2, 4, 6]
    assert summary["best_metric"] == {"name": "think_coverage", "value": 0.9}
    assert Path(summary["best_checkpoint"]).name == "checkpoint-4"
    # the eval loss reported for the kept model is checkpoint-4's, not the lowest or the last
    assert summary["eval_loss_steps"] == [2, 4, 6]
    assert summary["eval_loss_kept"] == summary["eval_losses"][1]
    final, best = load_file(out / "model.safetensors"), load_file(out / "checkpoint-4" / "model.safetensors")
    assert all(torch.equal(final[k], best[k]) for k in best)
    last = load_file(out / "checkpoint-6" / "model.safetensors")
    assert any(not torch.equal(final[k], last[k]) for k in best)


def test_think_coverage_as_best_metric_needs_dev_items(tiny_model_dir, sft_data_dir, tmp_path):
    from medqa.train.sft import build_trainer

    with pytest.raises(ValueError, match="think_eval_items"):
        build_trainer(*parse_args(cpu_argv("full", tiny_model_dir, sft_data_dir, tmp_path,
                                           metric_for_best_model="think_coverage")))


def test_trainable_token_rows_are_refused_on_a_zero3_shard():
    """Under ZeRO-3 the embedding weight is a shard (DeepSpeed marks it with `ds_numel`): a mask over its rows by
    token id would index a slice, so the option is refused in one line instead of training the wrong rows."""
    import torch

    from medqa.train.sft import train_token_rows

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(8, 4)

        def get_input_embeddings(self):
            return self.embed

        def save_pretrained(self, path, save_embedding_layers=False):
            return save_embedding_layers

    plain, sharded = Model(), Model()
    train_token_rows(plain, [1, 2])
    assert plain.embed.weight.requires_grad and plain.save_pretrained("x") is True
    sharded.embed.weight.ds_numel = 32
    with pytest.raises(ValueError, match="not supported under ZeRO-3.*ACCEL=zero2"):
        train_token_rows(sharded, [1, 2])
