"""`medqa predict` data-parallel under `accelerate launch` with 2 CPU processes (gloo): each rank generates its
shard, rank 0 merges; the result equals the single-process output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, THINK_PAIRS
from medqa.runs.io import read_jsonl

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

CPU_DDP = """distributed_type: MULTI_GPU
num_processes: 2
mixed_precision: 'no'
use_cpu: false
compute_environment: LOCAL_MACHINE
machine_rank: 0
num_machines: 1
rdzv_backend: static
same_network: true
"""


def test_two_process_predict_matches_single_process(tmp_path, tiny_think_model_dir):
    from medqa.apps.predict import main

    inp = tmp_path / "in.jsonl"
    qs = [q for q, _ in THINK_PAIRS] + ["头疼怎么办？", "I feel dizzy"]
    inp.write_text("".join(json.dumps({"id": f"q{i}", "question": q}, ensure_ascii=False) + "\n"
                           for i, q in enumerate(qs)), encoding="utf-8")
    common = ["--model", str(tiny_think_model_dir), "--input", str(inp), "--max-new-tokens", "48",
              "--batch-size", "2", "--no-progress", "--device", "cpu"]
    assert main(common + ["--output", str(tmp_path / "single.jsonl")]) == 0
    cfg = tmp_path / "cpu_ddp.yaml"
    cfg.write_text(CPU_DDP, encoding="utf-8")
    out = tmp_path / "dp.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(cfg), "--main_process_port", "0",
         "-m", "medqa", "predict", *[a for a in common if a not in ("--device", "cpu")], "--output", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"})  # two ranks on a small machine: no thread oversubscription
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0 of 2" in proc.stdout
    single, dp = read_jsonl(tmp_path / "single.jsonl"), read_jsonl(out)
    assert [r["id"] for r in dp] == [f"q{i}" for i in range(len(qs))]
    assert [r["prediction"] for r in dp] == [r["prediction"] for r in single]
    assert not list(tmp_path.glob("dp.jsonl.rank*"))  # shards merged and removed
