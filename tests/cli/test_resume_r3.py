"""What a training stage resumes and what it refuses (issue #31, items 5–7): a checkpoint trained on data whose
content changed is refused, every option is classified as shaping the run (refused when changed) or safe to change
on resume, and a finished run is a no-op that says so. SFT, GRPO and PPO, on the tiny model, 1–3 steps each."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, THINK_PAIRS
from medqa.runs.checkpoints import RUN_RECORD, ResumeError
from medqa.runs.io import read_jsonl, write_jsonl


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _checkpoints(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("checkpoint-*"))


# ---------------------------------------------------------------- 6: one classification of every option


def _stage_configs():
    """Each stage's option dataclasses, as its parser fills them (TRL's and transformers' bases included)."""
    from medqa.teacher.setup import TeacherArgs
    from medqa.train.grpo import GRPOModelArguments, GRPOScriptArguments, MedqaGRPOConfig
    from medqa.train.ppo.config import PPOConfig, PPOModelArguments
    from medqa.train.sft import MedqaSFTConfig, SFTModelArguments, SFTScriptArguments

    return {"sft": (SFTScriptArguments, MedqaSFTConfig, SFTModelArguments),
            "grpo": (GRPOScriptArguments, MedqaGRPOConfig, GRPOModelArguments, TeacherArgs),
            "ppo": (PPOModelArguments, PPOConfig, TeacherArgs)}


def test_every_option_of_every_stage_is_classified_as_shaping_or_safe():
    from medqa.runs.checkpoints import SAFE, SHAPING

    assert not SAFE & SHAPING
    every = set()
    for stage, classes in _stage_configs().items():
        for cls in classes:
            names = {f.name for f in dataclasses.fields(cls)}
            every |= names
            unclassified = sorted(names - SAFE - SHAPING)
            assert not unclassified, (f"{stage}: {cls.__name__} has options neither in SHAPING nor in SAFE "
                                      f"(medqa/runs/checkpoints.py): {unclassified}")
    assert not (SAFE | SHAPING) - every, "medqa/runs/checkpoints.py classifies options no stage has"
    # What a run record must never hold: secrets.
    assert {"hub_token", "teacher_base_url"} <= SAFE
    # The three the issue found resumed silently shape the run; extending a run is allowed.
    assert {"lora_dropout", "warmup_steps", "weight_decay"} <= SHAPING
    assert {"max_steps", "num_train_epochs", "total_steps"} <= SAFE


def _identity(stage: str, parsed: tuple):
    from medqa.runs.checkpoints import RunIdentity
    from medqa.train import grpo, sft
    from medqa.train.ppo import config as ppo

    settings = {"sft": sft.run_settings, "grpo": grpo.run_settings, "ppo": ppo.run_settings}[stage](*parsed)
    return RunIdentity(stage, settings, 1)


def _parse(stage: str, model: Path, *extra: str) -> tuple:
    from medqa.train import grpo, sft
    from medqa.train.ppo import config as ppo

    recipe = {"sft": "recipes/sft/cpu/lora.yaml", "grpo": "recipes/grpo/cpu/lora.yaml",
              "ppo": "recipes/ppo/cpu/lora.yaml"}[stage]
    parse = {"sft": sft.parse_args, "grpo": grpo.parse_args, "ppo": ppo.parse_args}[stage]
    return parse(["--config", str(ROOT / recipe), "--model_name_or_path", str(model), *extra])


class _Other:
    """A value no option has: a changed setting."""

    def __repr__(self) -> str:
        return "other-value"


@pytest.mark.parametrize("stage", ["sft", "grpo", "ppo"])
def test_the_run_key_is_every_shaping_option_and_no_safe_one(stage, tiny_model_dir, tmp_path, monkeypatch):
    """Walks every option of the stage: changing a shaping one changes the run key, a safe one does not; the key
    is the same for a run and its own resume spelled differently (relative paths, resume and logging flags)."""
    from medqa.runs.checkpoints import SAFE

    parsed = _parse(stage, tiny_model_dir)
    key = _identity(stage, parsed).key
    assert _identity(stage, _parse(stage, tiny_model_dir)).key == key  # parsed twice: the same key
    for config in parsed:
        for f in dataclasses.fields(config):
            before = getattr(config, f.name)
            object.__setattr__(config, f.name, _Other())
            try:
                changed = _identity(stage, parsed).key != key
            finally:
                object.__setattr__(config, f.name, before)
            assert changed == (f.name not in SAFE), f"{stage}: {f.name} ({'safe' if f.name in SAFE else 'shaping'})"

    monkeypatch.chdir(tiny_model_dir.parent)
    step_flag = "--total_steps" if stage == "ppo" else "--max_steps"
    resumed = _parse(stage, Path(".") / tiny_model_dir.name, "--output_dir", str(tmp_path / "elsewhere"),
                     step_flag, "99", "--save_steps", "20", "--report_to", "none", "--auto_resume", "false",
                     "--overwrite", "true", *(["--resume_from_checkpoint", "true", "--logging_steps", "7"]
                                              if stage != "ppo" else ["--sample_steps", "7"]))
    assert _identity(stage, resumed).key == key


# ---------------------------------------------------------------- SFT end to end


def _sft_argv(model: Path, data: Path, out: Path, **overrides) -> list[str]:
    opts = {"model_name_or_path": model, "data_dir": data, "output_dir": out, "report_to": "none",
            "disable_tqdm": "true", "max_steps": 2, "save_steps": 1, "eval_strategy": "no",
            "load_best_model_at_end": "false", "per_device_train_batch_size": 4, "max_length": 256, "lora_r": 8,
            "lora_alpha": 16, "lora_dropout": 0.0, "warmup_steps": 0, "weight_decay": 0.0, "logging_steps": 1,
            **overrides}
    argv = ["--config", str(ROOT / "recipes/sft/cpu/lora.yaml")]
    for k, v in opts.items():
        argv += [f"--{k}", str(v)]
    return argv


def _sft(model: Path, data: Path, out: Path, **overrides) -> dict:
    from medqa.train.sft import main, parse_args

    return main(*parse_args(_sft_argv(model, data, out, **overrides)))


@pytest.fixture
def sft_data(tmp_path, sft_data_dir) -> Path:
    data = tmp_path / "data"
    shutil.copytree(sft_data_dir, data)
    return data


def test_sft_refuses_a_checkpoint_trained_on_data_that_changed(tiny_model_dir, sft_data, tmp_path):
    """`make data SEED=7` then `make sft-lora`: rows of the old train split are now in dev (and back). The run is
    refused in one line that says the data changed and what to do; the data moved elsewhere unchanged resumes."""
    out = tmp_path / "out"
    _sft(tiny_model_dir, sft_data, out)
    train, dev = read_jsonl(sft_data / "train.jsonl"), read_jsonl(sft_data / "dev.jsonl")
    write_jsonl(sft_data / "train.jsonl", train[:-1] + dev[:1])
    write_jsonl(sft_data / "dev.jsonl", train[-1:] + dev[1:])
    before = _tree(out)
    with pytest.raises(ResumeError) as err:
        _sft(tiny_model_dir, sft_data, out, max_steps=3)
    msg = str(err.value)
    assert "\n" not in msg and "the data changed" in msg and "train_file" in msg and "eval_file" in msg
    assert "RESUME=0" in msg and "--auto_resume false" in msg
    assert _tree(out) == before

    # The same content under another path is the same run: resumed, not refused.
    moved = tmp_path / "moved"
    moved.mkdir()
    write_jsonl(moved / "train.jsonl", train)
    write_jsonl(moved / "dev.jsonl", dev)
    summary = _sft(tiny_model_dir, moved, out, max_steps=3)
    assert summary["resumed_from"].endswith("checkpoint-2") and summary["global_step"] == 3


def test_sft_refuses_a_checkpoint_whose_starting_model_was_retrained_in_place(tiny_model_dir, sft_data, tmp_path):
    """The model a run starts from is keyed by its content, like the data: the same folder holding other weights
    (a base or an SFT output retrained into it) is another starting point, refused in one line."""
    import torch
    from safetensors.torch import load_file, save_file

    model = tmp_path / "base"
    shutil.copytree(tiny_model_dir, model)
    out = tmp_path / "out"
    _sft(model, sft_data, out)
    weights = load_file(model / "model.safetensors")
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in weights.items()}, model / "model.safetensors",
              metadata={"format": "pt"})
    before = _tree(out)
    with pytest.raises(ResumeError) as err:
        _sft(model, sft_data, out, max_steps=3)
    msg = str(err.value)
    assert "\n" not in msg and "the model it starts from changed" in msg and "RESUME=0" in msg
    assert _tree(out) == before and torch.is_tensor(next(iter(weights.values())))


@pytest.mark.parametrize("change", [{"lora_dropout": 0.1}, {"warmup_steps": 1}, {"weight_decay": 0.1}],
                         ids=lambda c: next(iter(c)))
def test_sft_refuses_a_resume_that_changes_a_shaping_option(change, tiny_model_dir, sft_data, tmp_path):
    out = tmp_path / "out"
    _sft(tiny_model_dir, sft_data, out, max_steps=1)
    before = _tree(out)
    (name, value), = change.items()
    with pytest.raises(ResumeError, match=rf"settings differ \({name}=0 there, {value} here\)"):
        _sft(tiny_model_dir, sft_data, out, max_steps=2, **change)
    assert _tree(out) == before


def test_sft_resumes_when_only_safe_options_change(tiny_model_dir, sft_data, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _sft(tiny_model_dir, sft_data, out, max_steps=1)
    monkeypatch.chdir(tmp_path)  # every path spelled relative
    model = Path(os.path.relpath(tiny_model_dir, tmp_path))
    summary = _sft(model, Path("data"), Path("out"), max_steps=2, logging_steps=5, save_steps=4,
                   resume_from_checkpoint="true", disable_tqdm="false")
    assert summary["resumed_from"].endswith("checkpoint-1") and summary["global_step"] == 2


def test_rerunning_a_finished_sft_is_a_noop_and_a_longer_run_resumes(tiny_model_dir, sft_data, tmp_path, capsys):
    from medqa.commands.launch import sft

    out = tmp_path / "out"
    _sft(tiny_model_dir, sft_data, out)
    assert _checkpoints(out) == ["checkpoint-1", "checkpoint-2"]
    before = _tree(out)
    capsys.readouterr()
    assert sft(_sft_argv(tiny_model_dir, sft_data, out)) == 0  # the entry point: exit 0
    err = capsys.readouterr().err.strip().splitlines()
    assert f"sft: {out} already holds the finished run (step 2); RESUME=0 (--auto_resume false) to train again" in err
    assert _tree(out) == before  # no step 3, nothing rewritten
    # A finished run extended: it resumes from its last checkpoint and trains on.
    longer = _sft(tiny_model_dir, sft_data, out, max_steps=3)
    assert longer["resumed_from"].endswith("checkpoint-2") and longer["global_step"] == 3
    assert "checkpoint-3" in _checkpoints(out)
    assert json.loads((out / RUN_RECORD).read_text())["finished"]["step"] == 3
    # RESUME=0 trains it again, the finished run moved aside.
    fresh = _sft(tiny_model_dir, sft_data, out, max_steps=3, auto_resume="false")
    assert fresh["resumed_from"] is None and fresh["global_step"] == 3
    assert len(list(tmp_path.glob("out.prev-*"))) == 1


# ---------------------------------------------------------------- PPO end to end


@pytest.fixture
def ppo_inputs(tmp_path, tiny_think_model_dir) -> tuple[Path, Path]:
    """An SFT-shaped LoRA adapter on the think model and a prompts file of this test's own (it is edited)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sft = tmp_path / "sft-lora"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_think_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.save_pretrained(sft)
    AutoTokenizer.from_pretrained(tiny_think_model_dir).save_pretrained(sft)
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"id": f"q{i}", "prompt": [{"role": "user", "content": q}], "question": q,
                           "meta": {"risk_level": "low"}} for i, (q, _) in enumerate(THINK_PAIRS)])
    return sft, prompts


def _ppo(sft: Path, prompts: Path, out: Path, **overrides):
    from medqa.train.ppo.config import parse_args
    from medqa.train.ppo.trainer import PPOTrainer

    opts = {"model_name_or_path": sft, "prompts_file": prompts, "output_dir": out, "total_steps": 1,
            "save_steps": 1, "batch_size": 2, "mini_batch_size": 1, "forward_batch_size": 2, "ppo_epochs": 1,
            "max_new_tokens": 6, "reward": "rules", "cpu_threads": 1, "report_to": "none", "progress_bar": "false",
            "teacher_cache": "", **overrides}
    argv = ["--config", str(ROOT / "recipes/ppo/cpu/lora.yaml")]
    for k, v in opts.items():
        argv += [f"--{k}", str(v)]
    return PPOTrainer(*parse_args(argv))


def test_ppo_finished_run_is_a_noop_and_other_prompts_or_weight_decay_are_refused(ppo_inputs, tmp_path, capsys):
    sft, prompts = ppo_inputs
    out = tmp_path / "out"
    assert _ppo(sft, prompts, out).train()["steps"] == 1
    before = _tree(out)
    capsys.readouterr()
    again = _ppo(sft, prompts, out).train()
    assert again["already_finished"] == 1
    assert (f"ppo: {out} already holds the finished run (step 1); RESUME=0 (--auto_resume false) to train again"
            in capsys.readouterr().out.splitlines())
    assert _tree(out) == before

    with pytest.raises(ResumeError, match=r"settings differ \(weight_decay=0 there, 0.1 here\)"):
        _ppo(sft, prompts, out, total_steps=2, weight_decay=0.1).train()
    rows = read_jsonl(prompts)
    write_jsonl(prompts, rows[1:] + rows[:1])  # the same prompts in another order: other steps
    with pytest.raises(ResumeError, match=r"the data changed .*prompts_file: other content.*RESUME=0"):
        _ppo(sft, prompts, out, total_steps=2).train()
    assert _tree(out) == before


# ---------------------------------------------------------------- GRPO end to end


def test_grpo_finished_run_is_a_noop_and_other_prompts_or_settings_are_refused(ppo_inputs, tiny_model_dir,
                                                                               tmp_path, capsys):
    import torch

    from medqa.commands.launch import grpo

    _, prompts = ppo_inputs
    out = tmp_path / "grpo"

    def grpo_argv(**overrides) -> list[str]:
        opts = {"model_name_or_path": tiny_model_dir, "prompts_file": prompts, "output_dir": out,
                "report_to": "none", "disable_tqdm": "true", "teacher_offline": "true", "teacher_cache": "",
                "max_steps": 1, "save_steps": 1, "num_generations": 2, "per_device_train_batch_size": 2,
                "max_completion_length": 6, "lora_r": 4, "lora_alpha": 8, **overrides}
        return ["--config", str(ROOT / "recipes/grpo/cpu/lora.yaml"),
                *[x for k, v in opts.items() for x in (f"--{k}", str(v))]]

    argv = grpo_argv()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert grpo(argv) == 0
        assert _checkpoints(out) == ["checkpoint-1"] and (out / "grpo_summary.json").is_file()
        before = _tree(out)
        capsys.readouterr()
        assert grpo(argv) == 0
        assert (f"grpo: {out} already holds the finished run (step 1); RESUME=0 (--auto_resume false) to train "
                "again" in capsys.readouterr().err.splitlines())
        assert _tree(out) == before

        assert grpo(grpo_argv(max_steps=2, epsilon=0.3)) == 2
        assert "settings differ (epsilon=" in capsys.readouterr().err
        write_jsonl(prompts, read_jsonl(prompts)[::-1])
        assert grpo(grpo_argv(max_steps=2)) == 2
        err = capsys.readouterr().err
        assert "the data changed" in err and "prompts_file: other content" in err and "RESUME=0" in err
        assert _tree(out) == before
    finally:
        torch.set_num_threads(threads)
