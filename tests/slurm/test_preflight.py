"""`medqa.commands.preflight`: what a Slurm job checks before it launches anything (also `make slurm-preflight`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT
from medqa.commands.preflight import check_eval, check_training, main, model_problem, overrides

CPU_LORA = "recipes/sft/cpu/lora.yaml"
CPU = "accelerate_configs/cpu.yaml"


@pytest.fixture()
def sft_inputs(tiny_model_dir, sft_data_dir):
    return ["--model_name_or_path", str(tiny_model_dir), "--data_dir", str(sft_data_dir)]


def test_overrides_take_the_last_value_and_both_spellings():
    assert overrides(["--max_steps", "3", "--data_dir=/d", "--bf16", "--max_steps", "4"]) == {
        "max_steps": "4", "data_dir": "/d", "bf16": ""}


def test_a_complete_sft_launch_passes_and_reports_what_it_resolved(sft_inputs, tiny_model_dir):
    problems, resolved = check_training("sft", "cpu", CPU_LORA, CPU, sft_inputs + ["--output_dir", "outputs/x"])
    assert problems == []
    assert resolved == {"recipe": CPU_LORA, "accel": CPU, "accel_processes": 2, "model": str(tiny_model_dir),
                        "output_dir": "outputs/x"}


def test_every_problem_is_reported_at_once(tmp_path):
    problems, _ = check_training("sft", "cpu", CPU_LORA, "accelerate_configs/zero3.yaml",
                                 ["--model_name_or_path", str(tmp_path / "nope"), "--data_dir", str(tmp_path)])
    assert problems == [
        "PROFILE=cpu needs a CPU launcher (accelerate_configs/cpu*.yaml: ACCEL=ddp|zero2|zero3), got "
        "accelerate_configs/zero3.yaml",
        f"model {tmp_path / 'nope'} not found: neither a local folder nor, with HF_HUB_OFFLINE=1, in the Hugging Face cache",
        f"training data {tmp_path / 'train.jsonl'} not found: run `make data`, or set --data_dir / --train_file in ARGS",
        f"eval data {tmp_path / 'dev.jsonl'} not found: run `make data`, or ARGS=\"--eval_file none\"",
    ]


def test_missing_recipe_and_launcher_name_the_profile_and_where_to_look():
    problems, _ = check_training("ppo", "cpu", "recipes/ppo/cpu/missing.yaml", "accelerate_configs/nope.yaml",
                                 ["--model_name_or_path", "outputs/no-sft"])
    assert problems[0] == "recipe recipes/ppo/cpu/missing.yaml not found for PROFILE=cpu; see recipes/ppo/"
    assert problems[1] == "accelerate config accelerate_configs/nope.yaml not found; see accelerate_configs/"
    assert problems[2].startswith("SFT output SFT= (the PPO policy) outputs/no-sft not found")


def test_gpu_profile_with_the_cpu_launcher_is_a_mismatch(sft_inputs):
    problems, _ = check_training("sft", "gpu", "recipes/sft/lora.yaml", CPU, sft_inputs)
    assert problems == ["PROFILE=gpu is a GPU profile but ACCEL is the CPU launcher accelerate_configs/cpu.yaml; "
                        "use PROFILE=cpu or a GPU ACCEL"]


def test_model_folder_without_weights_config_and_hub_ids(tmp_path, monkeypatch):
    assert model_problem(str(tmp_path)) == f"model {tmp_path} is a folder without config.json or adapter_config.json"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert model_problem("Qwen/Qwen3-1.7B") is None  # downloaded when loaded
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert "not found" in model_problem("Qwen/Qwen3-1.7B")


def test_eval_checks_model_adapter_and_sets(tiny_model_dir, tmp_path):
    assert check_eval(str(tiny_model_dir), None, [str(ROOT / "data/sample/red_team.jsonl")]) == []
    assert check_eval(str(tiny_model_dir), str(tmp_path / "a"), [str(tmp_path / "s.jsonl")]) == [
        f"adapter {tmp_path / 'a'} not found: neither a local folder nor, with HF_HUB_OFFLINE=1, in the Hugging Face cache",
        f"eval set {tmp_path / 's.jsonl'} not found: run `make data`",
    ]


def test_cli_prints_shell_assignments_or_exits_2(sft_inputs, capsys):
    assert main(["sft", "--profile", "cpu", "--recipe", CPU_LORA, "--accel", CPU, "--", *sft_inputs]) == 0
    out = capsys.readouterr().out
    assert f"MEDQA_RECIPE={CPU_LORA}\n" in out and "MEDQA_ACCEL_PROCESSES=2\n" in out
    assert main(["sft", "--profile", "cpu", "--recipe", "recipes/sft/cpu/missing.yaml", "--accel", CPU]) == 2
    assert "preflight: recipe recipes/sft/cpu/missing.yaml not found" in capsys.readouterr().err


def test_make_slurm_preflight_resolves_the_same_files_as_make_sft(tiny_model_dir, sft_data_dir):
    proc = subprocess.run(["make", "--no-print-directory", "-s", "slurm-preflight", "PROFILE=cpu", "MODE=full",
                           "ACCEL=zero3", f"MODEL={tiny_model_dir}", f"ARGS=--data_dir {sft_data_dir}",
                           f"PY={sys.executable}"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "MEDQA_RECIPE=recipes/sft/cpu/full.yaml\nMEDQA_ACCEL=accelerate_configs/cpu_zero3.yaml\n" in proc.stdout


def test_ppo_checks_the_prompts_it_would_read_by_default(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/rl/training_prompts.jsonl here
    problems, _ = check_training("ppo", "cpu", str(ROOT / "recipes/ppo/cpu/lora.yaml"), str(ROOT / CPU),
                                 ["--model_name_or_path", str(tiny_model_dir)])
    assert problems == ["prompts_file data/rl/training_prompts.jsonl not found (run `make rl-prompts` for the RL prompts)"]
