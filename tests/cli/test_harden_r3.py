"""Hardening round 3 (issue #31) of the output policy: files medqa did not write, links, the lock under contention,
edited manifests, a full disk, a checkout path with a space, and a rank's one-line error under the launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE_INPUTS, run_cli
from medqa.io import MANIFEST, OutputLock, OutputLocked, lock_path


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
    from medqa.merge import main as merge_main

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
        from medqa.io import OutputLock
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
from medqa.io import OutputLock, OutputLocked
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
