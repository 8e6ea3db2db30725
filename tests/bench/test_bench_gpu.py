"""`make bench-gpu`: its inputs come from `make data rl-prompts`, and its CPU smoke run exercises the GPU benchmark's
whole path (model and adapter build, data build, one `accelerate launch` per SFT and PPO mode, JSON report) so that it
cannot break unseen."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from medqa.bench import gpu_sft
from medqa.bench.gpu_sft import MODES
from medqa.runs.throughput import rate_after_warmup, split_after_warmup


@pytest.fixture(scope="module")
def rl_prompts_file(tmp_path_factory, processed_dir):
    from medqa.data import build_rl_prompts

    path = tmp_path_factory.mktemp("rl") / "training_prompts.jsonl"
    build_rl_prompts(processed_dir, path)
    return path


def _make_dry_run(*args: str) -> str:
    proc = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_bench_gpu_prepares_the_data_as_make_data_and_rl_prompts_do():
    prepare = [line for line in _make_dry_run("data").splitlines() if "data prepare" in line]
    prompts = [line for line in _make_dry_run("rl-prompts").splitlines() if "data rl-prompts" in line]
    assert len(prepare) == 1 and len(prompts) == 1
    plan = _make_dry_run("bench-gpu", "SMOKE=1")
    assert prepare[0] in plan.splitlines() and prompts[0] in plan.splitlines()
    assert "bash scripts/bench_gpu.sh --smoke" in plan
    assert "--smoke" not in _make_dry_run("bench-gpu")


def test_tokens_per_second_leaves_out_the_warm_up_window():
    # Step 1 (warm-up) took 10 s for 100 tokens; steps 2-3 took 1 s each for 100 tokens each.
    marks = [(1, 10.0, 100), (2, 11.0, 200), (3, 12.0, 300)]
    r = rate_after_warmup(marks)
    assert r["tokens_per_s_after_warmup"] == 100.0 and r["warmup_steps"] == 1 and r["measured_steps"] == 2
    assert rate_after_warmup(marks[:1])["tokens_per_s_after_warmup"] is None


def test_ppo_step_split_leaves_out_the_warm_up_step():
    steps = [{"generate": 9.0, "update": 5.0, "step": 15.0},  # warm-up: one-time costs
             {"generate": 1.0, "update": 2.0, "step": 3.5}, {"generate": 3.0, "update": 2.0, "step": 5.5}]
    r = split_after_warmup(steps)
    assert r == {"warmup_steps": 1, "measured_steps": 2, "step_split_s": {"generate": 2.0, "update": 2.0, "step": 4.5}}
    assert split_after_warmup(steps[:1]) == {"warmup_steps": 1, "measured_steps": 0, "step_split_s": None}


def test_without_cuda_the_full_size_run_refuses_and_names_the_smoke_run(tiny_model_dir, processed_dir, rl_prompts_file,
                                                                       tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the full-size run would start")
    code = gpu_sft.main(["--tokenizer", str(tiny_model_dir), "--data", str(processed_dir),
                         "--prompts", str(rl_prompts_file), "--work", str(tmp_path / "w"), "--out",
                         str(tmp_path / "o.json")])
    assert code == 2 and "SMOKE=1" in capsys.readouterr().err and not (tmp_path / "o.json").exists()
    assert gpu_sft.main(["--smoke", "--tokenizer", str(tiny_model_dir), "--data", str(tmp_path / "nowhere")]) == 2
    assert "run `make data`" in capsys.readouterr().err
    assert gpu_sft.main(["--smoke", "--tokenizer", str(tiny_model_dir), "--modes", "ppo-lora",
                         "--prompts", str(tmp_path / "none.jsonl")]) == 2
    assert "run `make rl-prompts`" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.distributed
def test_cpu_smoke_run_reports_every_mode(tiny_model_dir, processed_dir, rl_prompts_file, tmp_path):
    out = tmp_path / "gpu_sft_smoke.json"
    proc = subprocess.run(["bash", "scripts/bench_gpu.sh", "--smoke", "--tokenizer", str(tiny_model_dir),
                           "--data", str(processed_dir), "--prompts", str(rl_prompts_file),
                           "--work", str(tmp_path / "work"), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PY": sys.executable})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    print(json.dumps(report, indent=2))  # shown with -s: the smoke output
    assert report["smoke"] is True and report["device"] == "cpu"
    assert report["peak_bf16_flops"] is None and report["flops_per_token"] > 0
    assert list(report["runs"]) == list(MODES)
    assert {"ppo-lora", "ppo-qlora", "ppo-full"} <= set(MODES)
    for name, run in report["runs"].items():
        assert "error" not in run, (name, run.get("error"))
        assert run["accelerate_config"] == f"accelerate_configs/{MODES[name].cpu_accel}.yaml"
        assert run["steps"] == 2 and run["global_step"] == 2, name
        assert run["warmup_steps"] == 1 and run["measured_steps"] == 1, name
        assert run["peak_memory_gib"] is None, name  # CUDA-only
        if name.startswith("ppo-"):
            split = run["step_split_s"]
            assert set(split) == {"generate", "forward", "score_wait", "score", "update", "step"}, name
            assert all(isinstance(v, float) and v >= 0 for v in split.values()), (name, split)
            assert split["generate"] > 0 and split["update"] > 0 and split["step"] > 0, (name, split)
            assert split["step"] >= split["generate"] + split["update"], (name, split)
            assert run["rollout_tokens_per_s"] > 0 and run["reward_first"] is not None, name
            assert "tokens_per_s_per_gpu" not in run and "mfu_percent" not in run, name  # SFT-only figures
            run_dir = tmp_path / "work" / f"run-{name}"
            assert (run_dir / "value_head.pt").is_file() and not list(run_dir.glob("checkpoint-*")), name
        else:
            assert 0 < run["measured_tokens"] < run["train_tokens"], name
            assert run["tokens_per_s_per_gpu"] > 0 and run["mfu_percent"] is None, name  # MFU: CUDA-only
    assert MODES["ppo-full"].cpu_accel == "cpu_zero3" and MODES["ppo-qlora"].recipe == "recipes/ppo/8gb/qlora.yaml"
