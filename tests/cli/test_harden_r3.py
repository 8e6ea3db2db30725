"""Hardening round 3 (issue #31) of the output policy: files medqa did not write, links, the lock under contention,
edited manifests, a full disk, a checkout path with a space, and a rank's one-line error under the launcher."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE_INPUTS, run_cli
from medqa.runs.io import MANIFEST, OutputLock, OutputLocked, lock_path


def _prepare(*args: str) -> subprocess.CompletedProcess:
    inputs = [a for i in SAMPLE_INPUTS[:2] for a in ("--input", i)]
    return run_cli("data", "prepare", *inputs, *args, check=False)


# ---------------------------------------------------------------- 1: a file medqa would write is not one it wrote


def test_prepare_never_replaces_a_users_file_that_has_the_name_of_one_of_its_outputs(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "train.jsonl").write_text('{"my":1}\n', encoding="utf-8")
    proc = _prepare("--out", str(mine))
    assert proc.returncode == 2 and "train.jsonl" in proc.stderr and "--overwrite" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert (mine / "train.jsonl").read_text(encoding="utf-8") == '{"my":1}\n'
    assert sorted(p.name for p in mine.iterdir()) == ["train.jsonl"]  # no manifest, no temp folder left in it
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".mine.")]


def test_merge_never_replaces_a_model_folder_it_did_not_write(tmp_path, sft_lora_output):
    from medqa.apps.merge import main as merge_main

    model = tmp_path / "my-model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"the user's weights")
    assert merge_main(["--adapter", str(sft_lora_output), "--out", str(model)]) == 2
    assert (model / "model.safetensors").read_bytes() == b"the user's weights"
    assert sorted(p.name for p in model.iterdir()) == ["model.safetensors"]
    # With --overwrite the user says so, and the merged model replaces it.
    assert merge_main(["--adapter", str(sft_lora_output), "--out", str(model), "--overwrite"]) == 0
    assert (model / "model.safetensors").read_bytes() != b"the user's weights" and (model / MANIFEST).is_file()


# ---------------------------------------------------------------- 2 and 4: an output given as a symbolic link


def test_a_link_to_a_locked_output_takes_the_same_lock(tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    link = tmp_path / "link-to-run"
    link.symlink_to(target)
    assert lock_path(link) == lock_path(target)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from medqa.runs.io import OutputLock
        lock = OutputLock({str(target)!r}, "sft").acquire()
        print("held", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputLocked, match=f"another medqa sft is writing here \\(pid {holder.pid}"):
            OutputLock(link, "sft").acquire()
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone (even by SIGKILL): the kernel dropped its lock, the next run takes it without a take-over.
    with OutputLock(link, "sft") as lock:
        assert lock.held
    assert not lock_path(target).exists()


def test_prepare_into_a_link_writes_the_folder_it_names_and_keeps_the_link(tmp_path):
    real = tmp_path / "real"
    assert _prepare("--out", str(real), "--seed", "1").returncode == 0
    first = (real / "train.jsonl").read_text(encoding="utf-8")
    link = tmp_path / "processed"
    link.symlink_to(real, target_is_directory=True)
    proc = _prepare("--out", str(link), "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert (real / "train.jsonl").read_text(encoding="utf-8") != first  # the new split is where the link points
    assert sorted(p.name for p in tmp_path.iterdir()) == ["processed", "real"]  # no `.NAME.old-PID` left behind


# ---------------------------------------------------------------- 3: many runs taking over one stale lock

_CONTENDER = """
import os, sys, time
from pathlib import Path
from medqa.runs.io import OutputLock, OutputLocked
out, holders, start, rounds = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
held = broken = 0
for k in range(rounds):  # round k: a stale lock is laid at start + 0.25 k, everyone grabs at start + 0.25 k + 0.1
    while time.time() < start + 0.25 * k + 0.1:
        time.sleep(0.0005)
    lock = OutputLock(out, "contender")
    try:
        lock.acquire()
    except OutputLocked:
        continue
    mark = holders / str(os.getpid())
    mark.touch()
    time.sleep(0.03)
    if len(list(holders.iterdir())) != 1:
        broken += 1
    mark.unlink()
    lock.release()
    held += 1
print(held, broken)
"""


def test_runs_racing_for_a_stale_lock_never_hold_it_together(tmp_path):
    out, rounds = tmp_path / "out", 30
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # A lock file left by a run that died (the format of every medqa version: pid, host, what, since).
    stale = json.dumps({"pid": dead.pid, "host": os.uname().nodename, "what": "sft"}) + "\n"
    holders = tmp_path / "holders"
    holders.mkdir()
    start = time.time() + 3.0  # every contender is started and waiting by then
    procs = [subprocess.Popen([sys.executable, "-c", _CONTENDER, str(out), str(holders), str(start), str(rounds)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(4)]
    for k in range(rounds):
        while time.time() < start + 0.25 * k:
            time.sleep(0.001)
        lock_path(out).write_text(stale)
    results = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr
        results.append(tuple(int(x) for x in stdout.split()))
    assert sum(held for held, _ in results) >= rounds // 2  # the stale lock was taken over round after round
    assert sum(broken for _, broken in results) == 0  # and never by two runs at once
    assert not lock_path(out).exists()  # every release removed only its own lock file


# ---------------------------------------------------------------- 15: an edited manifest


@pytest.mark.parametrize("edit", [{"written_by": None}, {"written_by": "medqa", "entries": "train.jsonl"},
                                  {"written_by": "medqa", "kind": 5, "entries": []},
                                  {"written_by": "medqa", "entries": [], "files": ["x"]}, ["medqa"]])
def test_an_edited_manifest_vouches_for_nothing_and_is_a_one_line_refusal(tmp_path, edit):
    out = tmp_path / "processed"
    assert _prepare("--out", str(out)).returncode == 0
    (out / MANIFEST).write_text(json.dumps(edit), encoding="utf-8")
    proc = _prepare("--out", str(out))
    assert proc.returncode == 2 and "did not write" in proc.stderr and "--overwrite" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert _prepare("--out", str(out), "--overwrite").returncode == 0


# ---------------------------------------------------------------- 16 and the launcher: a checkout path with a space


@pytest.fixture(scope="module")
def spaced_checkout(tmp_path_factory, tiny_model_dir, processed_dir) -> Path:
    """This checkout's files copied under a folder whose name has a space, with the environment, the tiny model and
    the prepared data of this one (so `make` has nothing to build)."""
    import shutil

    repo = tmp_path_factory.mktemp("checkout") / "my work space" / "repo"
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for name in names:
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    (repo / ".venv").symlink_to(ROOT / ".venv")
    (repo / "models").mkdir()
    (repo / "models" / "tiny-qwen3").symlink_to(tiny_model_dir)
    (repo / "data" / "processed").symlink_to(processed_dir)
    return repo


def _make(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=repo, capture_output=True, text=True,
                          env=env, timeout=600)


def test_make_runs_from_a_checkout_whose_path_has_a_space(spaced_checkout):
    proc = _make(spaced_checkout, "sft-lora", "PROFILE=cpu", "ACCEL=nope")
    assert proc.returncode == 2 and "no accelerate config accelerate_configs/cpu_nope.yaml" in proc.stderr
    assert "No such file or directory" not in proc.stderr, proc.stderr
    assert _make(spaced_checkout, "help").returncode == 0


def test_a_rank_error_under_make_is_its_one_line_last_without_the_launchers_traceback(spaced_checkout, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    proc = _make(spaced_checkout, "sft-lora", "PROFILE=cpu", f"OUT={foreign}", "ARGS=--max_steps 1")
    lines = [line for line in proc.stderr.splitlines() if not re.match(r"make(\[\d+\])?: \*\*\*", line)]
    assert proc.returncode == 2, proc.stderr
    assert "unrecognized arguments" not in proc.stderr and "No such file or directory" not in proc.stderr
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr, proc.stderr
    assert lines[-1] == f"sft: {foreign}: folder holds files medqa did not write (thesis.tex); choose another --out, " \
                        "or pass --overwrite to replace the whole folder"
    assert "Error 2" in proc.stderr.splitlines()[-1]  # the rank's exit status, through the launcher and make
    assert (foreign / "thesis.tex").read_text() == "x"


# ---------------------------------------------------------------- 14: the disk fills up during a checkpoint

_FILL_BEFORE_STEP_2 = """
import os, sys
from transformers import Trainer
from medqa.commands.launch import sft

save = Trainer._save_checkpoint

def save_on_a_full_disk(self, model, trial, *args, **kwargs):
    if self.state.global_step == 2:  # the disk fills up just before checkpoint-2 (another job wrote a big file)
        with open(os.path.join(sys.argv[1], "filler.bin"), "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\\0" * 2**20)
            except OSError:
                pass
    return save(self, model, trial, *args, **kwargs)

Trainer._save_checkpoint = save_on_a_full_disk
raise SystemExit(sft(sys.argv[2:]))
"""


@pytest.fixture
def small_disk(tmp_path):
    """A 96 MiB tmpfs (root only, as in CI)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("needs root to mount a small file system")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_during_a_checkpoint_is_one_line_naming_the_checkpoint_kept(small_disk, tiny_think_model_dir,
                                                                               sft_data_dir):
    out = small_disk / "sft"
    argv = ["--config", str(ROOT / "recipes" / "sft" / "cpu" / "lora.yaml"), "--model_name_or_path",
            str(tiny_think_model_dir), "--data_dir", str(sft_data_dir), "--output_dir", str(out), "--report_to",
            "none", "--disable_tqdm", "true", "--eval_file", "none", "--max_steps", "3", "--lora_r", "8",
            "--lora_alpha", "16", "--per_device_train_batch_size", "2", "--max_length", "128", "--eval_strategy",
            "no", "--load_best_model_at_end", "false", "--save_strategy", "steps", "--save_steps", "1"]
    proc = subprocess.run([sys.executable, "-c", _FILL_BEFORE_STEP_2, str(small_disk), *argv], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"sft: no space left on device while writing {out}") and "Traceback" not in proc.stderr
    assert f"{out} is kept at checkpoint-1" in last and "removed the torn checkpoint-2" in last
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-1"]
    # Space freed, the same command resumes from checkpoint-1 and finishes.
    (small_disk / "filler.bin").unlink()
    from medqa.train.sft import main, parse_args

    summary = main(*parse_args(argv))
    assert summary.get("resumed_from", "").endswith("checkpoint-1") or (out / "checkpoint-3").is_dir()
    assert (out / "adapter_model.safetensors").is_file()
