"""The RL stages, predict and eval never destroy what they did not write, never resume another run's checkpoint,
never mix two runs in one folder, and never outlive their launcher; one run per output at a time.

PPO cases run 1–2 steps of the tiny model with the rule reward; refusals happen before any training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_ppo

from conftest import ROOT, THINK_PAIRS, ppo_argv, ppo_trainer
from medqa.runs.checkpoints import RUN_RECORD, ResumeError
from medqa.runs.io import MANIFEST, OutputError, OutputLocked, lock_path, read_jsonl, write_jsonl

ppo_sft_adapter = test_ppo.ppo_sft_adapter  # the PPO tests' fixture


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _steps(path: Path) -> list[int]:
    return [r["step"] for r in read_jsonl(path)]


def _event_steps(out: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps = []
    for path in sorted((out / "runs").rglob("events.out.tfevents.*")):
        steps += [e.step for e in EventFileLoader(str(path)).Load() if e.HasField("summary")
                  and any(v.tag == "reward" for v in e.summary.value)]
    return sorted(steps)


# ---------------------------------------------------------------- 1, 2: never the SFT model, never a user's folder


def test_ppo_refuses_the_sft_folder_and_a_folder_it_did_not_write(tmp_path, ppo_sft_adapter, ppo_prompts):
    before = _tree(ppo_sft_adapter)
    trainer = ppo_trainer(ppo_sft_adapter, ppo_prompts, ppo_sft_adapter)
    with pytest.raises(OutputError, match="is the input"):
        trainer.train()
    assert _tree(ppo_sft_adapter) == before and not lock_path(ppo_sft_adapter).exists()

    mine = tmp_path / "mine"
    (mine / "checkpoint-1").mkdir(parents=True)
    (mine / "checkpoint-1" / "notes.txt").write_text("keep")
    (mine / "README.md").write_text("my readme")
    (mine / "metrics.jsonl").write_text('{"note": "no step"}\n')
    before = _tree(mine)
    trainer.out = mine
    with pytest.raises(OutputError, match="did not write") as err:
        trainer.train()
    assert "\n" not in str(err.value) and "--overwrite" in str(err.value)
    assert _tree(mine) == before


def test_grpo_refuses_the_sft_folder_and_another_stages_checkpoint(tmp_path, ppo_sft_adapter, ppo_prompts):
    from medqa.train.grpo import main, parse_args

    def args(out: Path) -> list[str]:
        return ["--config", str(ROOT / "recipes/grpo/cpu/lora.yaml"), "--model_name_or_path", str(ppo_sft_adapter),
                "--prompts_file", str(ppo_prompts), "--output_dir", str(out), "--report_to", "none",
                "--teacher_offline", "true", "--max_steps", "1"]

    before = _tree(ppo_sft_adapter)
    with pytest.raises(OutputError, match="is the input"):
        main(*parse_args(args(ppo_sft_adapter)))
    assert _tree(ppo_sft_adapter) == before

    # A GRPO folder holding an SFT run's checkpoint (trainer_state.json alone proves nothing): not resumed.
    out = tmp_path / "grpo"
    (out / "checkpoint-4").mkdir(parents=True)
    (out / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4}')
    (out / "checkpoint-4" / RUN_RECORD).write_text(json.dumps({"stage": "sft", "key": "x", "world_size": 1}))
    (out / MANIFEST).write_text(json.dumps({"written_by": "medqa", "kind": "grpo", "entries": ["checkpoint-*"]}))
    with pytest.raises(ResumeError, match="is a sft checkpoint, this is a grpo run") as err:
        main(*parse_args(args(out)))
    assert "\n" not in str(err.value) and (out / "checkpoint-4" / "trainer_state.json").is_file()


def test_entry_point_refuses_another_world_size_in_one_line(tmp_path, ppo_sft_adapter, ppo_prompts):
    out = tmp_path / "out"
    ppo_trainer(ppo_sft_adapter, ppo_prompts, out).train()
    record = json.loads((out / "checkpoint-1" / RUN_RECORD).read_text())
    assert record["stage"] == "ppo" and record["world_size"] == 1
    (out / "checkpoint-1" / RUN_RECORD).write_text(json.dumps({**record, "world_size": 2}))
    argv = ppo_argv(ppo_sft_adapter, ppo_prompts, out, reward="rules", total_steps=2, report_to="none", cpu_threads=1)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts/ppo.py"), *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ppo: ") and "written by 2 processes, this run has 1" in last
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------- 3: predict and eval run never clobber a file


def test_predict_and_eval_run_refuse_files_they_did_not_write(tmp_path, tiny_think_model_dir, capsys):
    from medqa.apps.predict import main as predict_main
    from medqa.eval.cli import main as eval_main

    inp = tmp_path / "in.jsonl"
    write_jsonl(inp, [{"question": q} for q, _ in THINK_PAIRS[:2]])
    dataset = tmp_path / "dataset.jsonl"
    write_jsonl(dataset, [{"question": f"q{i}", "answer": "a"} for i in range(61)])
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    base = ["--model", str(tiny_think_model_dir), "--input", str(inp), "--max-new-tokens", "8", "--device", "cpu",
            "--no-progress"]
    for target in (dataset, notes):
        before = target.read_bytes()
        assert predict_main([*base, "--output", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "not written by medqa predict" in err and "--overwrite" in err
        assert target.read_bytes() == before
    # Its own output is continued; --overwrite replaces a foreign one.
    out = tmp_path / "preds.jsonl"
    assert predict_main([*base, "--output", str(out)]) == 0
    assert predict_main([*base, "--output", str(out)]) == 0 and "0 generated, 2 already done" in capsys.readouterr().out
    assert predict_main([*base, "--output", str(notes), "--overwrite"]) == 0
    assert len(read_jsonl(notes)) == 2

    # eval run: a metrics.json of the user's in OUT/<set>/ stops the run before any prediction.
    run = tmp_path / "eval"
    (run / "dev").mkdir(parents=True)
    (run / "dev" / "metrics.json").write_text('{"mine": 1}')
    rc = eval_main(["run", "--model", str(tiny_think_model_dir), "--set", f"dev={inp}", "--out", str(run),
                    "--max-new-tokens", "8", "--device", "cpu", "--no-progress"])
    assert rc == 2 and "metrics.json: exists and was not written by medqa eval" in capsys.readouterr().err
    assert (run / "dev" / "metrics.json").read_text() == '{"mine": 1}' and not (run / "dev" / "predictions.jsonl").exists()


def test_eval_score_and_compare_write_only_their_own_files(tmp_path, capsys):
    from medqa.eval.cli import main

    preds = tmp_path / "preds.jsonl"
    write_jsonl(preds, [{"id": f"q{i}", "question": "头痛三天了", "prediction": "<think>x</think>注意休息。"}
                        for i in range(3)])
    scored = tmp_path / "A" / "dev"
    scored.mkdir(parents=True)
    (scored / "items.jsonl").write_text("my items\n")
    assert main(["score", "--predictions", str(preds), "--out", str(scored)]) == 2
    assert "items.jsonl: exists and was not written by medqa eval" in capsys.readouterr().err
    assert (scored / "items.jsonl").read_text() == "my items\n" and not (scored / "metrics.json").exists()
    assert main(["score", "--predictions", str(preds), "--out", str(scored), "--overwrite"]) == 0
    assert main(["score", "--predictions", str(preds), "--out", str(scored)]) == 0  # its own files: rescored
    assert main(["score", "--predictions", str(preds), "--out", str(tmp_path / "B" / "dev")]) == 0

    report = tmp_path / "report"
    report.mkdir()
    (report / "report.md").write_text("my report")
    assert main(["compare", str(tmp_path / "A"), str(tmp_path / "B"), "--out", str(report)]) == 2
    assert "report.md" in capsys.readouterr().err and (report / "report.md").read_text() == "my report"
    (report / "report.md").unlink()
    for _ in range(2):  # an empty folder, then its own report
        assert main(["compare", str(tmp_path / "A"), str(tmp_path / "B"), "--out", str(report)]) == 0
    assert (report / "report.html").is_file()


# ---------------------------------------------------------------- 4, 5: RESUME=0 moves aside; resume trims every log


def test_fresh_run_moves_the_old_run_aside_and_another_seed_is_not_resumed(tmp_path, ppo_sft_adapter, ppo_prompts):
    out = tmp_path / "out"
    ppo_trainer(ppo_sft_adapter, ppo_prompts, out, seed=1, total_steps=2, save_steps=2).train()
    old = _tree(out)
    fresh = ppo_trainer(ppo_sft_adapter, ppo_prompts, out, seed=2, auto_resume="false")  # RESUME=0
    assert fresh.train()["resumed_from"] is None
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("out.prev-")]
    assert len(aside) == 1 and _tree(aside[0]) == old  # the old run, intact, beside OUT
    assert _steps(out / "metrics.jsonl") == [1] and sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    # A longer rerun continues this run (seed 2) ...
    longer = ppo_trainer(ppo_sft_adapter, ppo_prompts, out, seed=2, total_steps=2, save_steps=2).train()
    assert longer["resumed_from"].endswith("checkpoint-1") and _steps(out / "metrics.jsonl") == [1, 2]
    # ... and a run with another seed does not take its checkpoint for its own.
    with pytest.raises(ResumeError, match=r"seed=2 there, 1 here"):
        ppo_trainer(ppo_sft_adapter, ppo_prompts, out, seed=1, total_steps=3).train()


def test_resume_trims_metrics_samples_and_tensorboard_to_the_checkpoint(tmp_path, ppo_sft_adapter, ppo_prompts):
    out = tmp_path / "out"
    opts = {"total_steps": 2, "save_steps": 1, "save_total_limit": 2, "report_to": "tensorboard",
            "sample_steps": 1, "samples_per_log": 1}
    ppo_trainer(ppo_sft_adapter, ppo_prompts, out, **opts).train()
    assert _event_steps(out) == [1, 2]
    # A kill after step 2 was logged but before its checkpoint was complete (so before the run finished).
    (out / "checkpoint-2" / "ppo_state.json").unlink()
    (out / RUN_RECORD).unlink()
    summary = ppo_trainer(ppo_sft_adapter, ppo_prompts, out, **opts).train()
    assert summary["resumed_from"].endswith("checkpoint-1")
    assert _steps(out / "metrics.jsonl") == [1, 2]
    assert _steps(out / "samples.jsonl") == [1, 2]
    assert _event_steps(out) == [1, 2]


# ---------------------------------------------------------------- 6: one run per OUT; ranks die with the launcher


def test_a_second_run_into_the_same_output_is_refused_and_a_stale_lock_taken_over(tmp_path, ppo_sft_adapter,
                                                                                   ppo_prompts):
    out = tmp_path / "out"
    trainer = ppo_trainer(ppo_sft_adapter, ppo_prompts, out)
    other = subprocess.Popen([sys.executable, "-c", "import sys, time; from medqa.runs.io import OutputLock; "
                              f"OutputLock({str(out)!r}, 'ppo').acquire(); print('held', flush=True); time.sleep(120)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked, match=f"another medqa ppo is writing here \\(pid {other.pid}"):
            trainer.train()
        assert not out.exists()
    finally:
        other.kill()
        other.wait()
    # That run is gone (killed): the kernel dropped its lock, its file is left; the lock is released at the end.
    assert lock_path(out).exists()
    assert trainer.train()["steps"] == 1 and not lock_path(out).exists()


_CHILD = """
import os, sys, time
from medqa.runs.preemption import exit_with_launcher
assert exit_with_launcher(poll_s=0.1)
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(120)
"""
_LAUNCHER = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
time.sleep(120)
"""


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except (OSError, IndexError):
        return False


def test_a_rank_stops_when_its_launcher_is_killed(tmp_path):
    pid_file = tmp_path / "rank.pid"
    env = {**os.environ, "LOCAL_RANK": "0"}
    launcher = subprocess.Popen([sys.executable, "-c", _LAUNCHER, _CHILD, str(pid_file)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        rank = int(pid_file.read_text())
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _running(rank):
            time.sleep(0.05)
        alive = _running(rank)
        if alive:
            os.kill(rank, signal.SIGKILL)
        assert not alive, "the rank outlived its launcher"
    finally:
        launcher.kill()
