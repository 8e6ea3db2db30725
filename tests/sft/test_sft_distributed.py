"""SFT on 2 CPU processes through `accelerate launch`: DDP, DeepSpeed ZeRO-2 and ZeRO-3 train the same model.

Full fine-tuning, so ZeRO-3 also has to gather its sharded weights to save them. The first DeepSpeed run
JIT-compiles a shared-memory comm op (~30 s, cached in ~/.cache/torch_extensions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

LAUNCHERS = ["cpu", "cpu_zero2", "cpu_zero3"]


@pytest.fixture(scope="module")
def distributed_runs(tiny_model_dir, sft_data_dir, tmp_path_factory) -> dict[str, Path]:
    outs = {}
    for launcher in LAUNCHERS:
        out = tmp_path_factory.mktemp(launcher)
        cmd = [
            sys.executable, "-m", "accelerate.commands.launch", "--config_file", f"accelerate_configs/{launcher}.yaml",
            "scripts/sft.py", "--config", "recipes/sft/cpu/full.yaml", "--model_name_or_path", str(tiny_model_dir),
            "--data_dir", str(sft_data_dir), "--output_dir", str(out), "--report_to", "none", "--disable_tqdm", "true",
            "--max_steps", "4", "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "2",
            "--learning_rate", "1e-3", "--max_length", "256", "--eval_steps", "2", "--save_steps", "2",
            "--logging_steps", "1",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, f"{launcher} failed:\n{proc.stderr[-4000:]}"
        outs[launcher] = out
    return outs


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_zero2_zero3_agree_on_two_cpu_processes(distributed_runs):
    summaries = {k: json.loads((out / "sft_summary.json").read_text()) for k, out in distributed_runs.items()}
    reference = summaries["cpu"]
    assert reference["num_processes"] == 2 and reference["global_step"] == 4 and len(reference["train_losses"]) == 4
    assert reference["train_losses"][-1] < reference["train_losses"][0]
    for name, summary in summaries.items():
        assert summary["num_processes"] == 2, name
        assert summary["train_losses"] == pytest.approx(reference["train_losses"], rel=1e-4), name
        assert summary["eval_losses"] == pytest.approx(reference["eval_losses"], rel=1e-4), name


@pytest.mark.slow
@pytest.mark.distributed
def test_zero3_saves_the_same_full_model_as_ddp(distributed_runs):
    import torch
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[3, 14, 15, 92, 65, 35, 89, 79]])
    logits = {}
    for name in ("cpu", "cpu_zero3"):
        model = AutoModelForCausalLM.from_pretrained(distributed_runs[name], dtype=torch.float32).eval()
        with torch.no_grad():
            logits[name] = model(ids).logits
    assert torch.allclose(logits["cpu"], logits["cpu_zero3"], atol=1e-4)
