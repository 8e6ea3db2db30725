"""Real `sbatch` runs of slurm/sft.sh, slurm/ppo.sh and slurm/eval.sh on a local Slurm with two emulated nodes.

`scripts/local_slurm.sh start` installs (Debian packages, root) and starts the cluster; where it cannot, the tests
skip with a note, except in CI (CI=true), where they fail. Jobs run the templates unchanged with PROFILE=cpu on the
tiny model and `data/processed` of this checkout (`make test-slurm` builds both); a job's state and exit code come
from the cluster's job-completion log (`sbatch --wait` returns 0 for a cancelled job), its output from logs/.
Every job gets an API key in its environment, and no job log may contain it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.distributed]

SECRET = "sk-medqa-slurm-" + secrets.token_hex(12)
MAKE_VARS = ("PROFILE", "MODE", "ACCEL", "RECIPE", "MODEL", "SFT", "ADAPTER", "OUT", "ARGS", "NPROC", "RESUME", "LIMIT",
             "TEACHER", "BASE_URL", "MEDQA_ENV", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")
STEPS = 8  # the interruptions come at step 2-3: later steps leave a margin on a fast machine
# A few small steps; checkpoints (and evals on 4 dev rows) every 2 steps.
SFT_ARGS = (f"--max_steps {STEPS} --save_steps 2 --eval_steps 2 --logging_steps 1 --report_to none --disable_tqdm true "
            "--max_train_samples 64 --max_eval_samples 4 --max_length 256 --per_device_train_batch_size 2")
SUBMITTED: list[str] = []  # job ids, for the API-key check


@pytest.fixture(scope="session")
def cluster() -> dict[str, str]:
    """The environment of every submission: SLURM_CONF of the local cluster, an API key, no stray make variables."""
    start = subprocess.run(["bash", "scripts/local_slurm.sh", "start", "--if-possible"], cwd=ROOT, capture_output=True,
                           text=True, timeout=600)
    status = subprocess.run(["bash", "scripts/local_slurm.sh", "status"], cwd=ROOT, capture_output=True, text=True)
    if start.returncode != 0 or status.returncode != 0:
        message = f"no local Slurm cluster: {start.stderr.strip() or status.stdout.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    conf = subprocess.run(["bash", "scripts/local_slurm.sh", "env"], cwd=ROOT, capture_output=True, text=True, check=True)
    env = {k: v for k, v in os.environ.items() if k not in MAKE_VARS}
    env.update(SLURM_CONF=conf.stdout.split("=", 1)[1].strip(), MEDQA_TEACHER_API_KEY=SECRET, DEEPSEEK_API_KEY=SECRET,
               OMP_NUM_THREADS="1")
    inputs = ("models/tiny-qwen3/config.json", "data/processed/train.jsonl", "data/rl/training_prompts.jsonl")
    if not all((ROOT / path).is_file() for path in inputs):
        subprocess.run(["make", "--no-print-directory", "tiny-model", "rl-prompts"], cwd=ROOT, env=env, check=True,
                       capture_output=True, timeout=900)
    return env


def submit(env: dict[str, str], template: str, *sbatch_args: str, wait: bool = True, **variables: str) -> str:
    """`VAR=value … sbatch [--wait] ARGS slurm/TEMPLATE.sh` from the checkout's root; returns the job id."""
    (ROOT / "logs").mkdir(exist_ok=True)
    proc = subprocess.run(["sbatch", "--parsable", *(["--wait"] if wait else []), *sbatch_args, f"slurm/{template}.sh"],
                          cwd=ROOT, env={**env, **variables}, capture_output=True, text=True, timeout=1200)
    job = proc.stdout.strip().splitlines()[0].split(";")[0] if proc.stdout.strip() else ""
    assert job.isdigit(), f"sbatch failed ({proc.returncode}): {proc.stderr}"
    SUBMITTED.append(job)
    return job


def completions(env: dict[str, str], job: str) -> list[dict[str, str]]:
    """The job's entries in the job-completion log (one per finished attempt), oldest first."""
    path = Path(env["SLURM_CONF"]).parent / "jobcomp.log"
    entries = []
    for line in path.read_text().splitlines() if path.exists() else []:
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("JobId") == job:
            entries.append(fields)
    return entries


def release_when_requeued(env: dict[str, str], job: str, timeout: float = 600) -> None:
    """Slurm holds a requeued job back for two minutes (BeginTime); start it now, as an admin could. Not within the
    second of the requeue: slurmd refuses a launch credential created in the second its previous one was revoked."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True).stdout
        if "JobState=PENDING" in info and not re.search(r"Restarts=0\b", info):
            time.sleep(2)
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, check=True,
                           capture_output=True)
            return
        assert "JobState=COMPLETED" not in info and "JobState=FAILED" not in info, info
        time.sleep(0.5)
    raise AssertionError(f"job {job} was not requeued within {timeout:.0f} s")


def final_state(env: dict[str, str], job: str, timeout: float = 900) -> dict[str, str]:
    """The job's last completion entry once it has left the queue (requeued attempts are skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = [e for e in completions(env, job) if e["JobState"] not in ("REQUEUED", "PREEMPTED", "NODE_FAIL")]
        queued = subprocess.run(["squeue", "-h", "-j", job], env=env, capture_output=True, text=True).stdout.strip()
        if entries and not queued:
            return entries[-1]
        time.sleep(1)
    raise AssertionError(f"job {job} did not finish within {timeout:.0f} s")


def log_of(name: str, job: str) -> str:
    return (ROOT / "logs" / f"{name}-{job}.out").read_text(errors="replace")


def wall_s(entry: dict[str, str]) -> int:
    from datetime import datetime

    start, end = (datetime.fromisoformat(entry[k]) for k in ("StartTime", "EndTime"))
    return int((end - start).total_seconds())


def wait_for_checkpoint(env: dict[str, str], job: str, out: Path, step: int = 2) -> None:
    deadline = time.monotonic() + 900
    while not (out / f"checkpoint-{step}" / "trainer_state.json").is_file():
        assert time.monotonic() < deadline, f"job {job} wrote no checkpoint:\n{log_of('medqa-sft', job)[-3000:]}"
        assert not completions(env, job), f"job {job} ended early:\n{log_of('medqa-sft', job)[-3000:]}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def single_node_sft(cluster, tmp_path_factory):
    """1 node x 2 processes; once its first checkpoint is complete it gets the time-limit signal (USR1 to the batch
    shell, as --signal=B:USR1@300 sends it): it checkpoints, stops, requeues itself and finishes in a second attempt."""
    out = tmp_path_factory.mktemp("slurm-sft-1node")
    job = submit(cluster, "sft", wait=False, PROFILE="cpu", OUT=str(out), ARGS=SFT_ARGS)
    wait_for_checkpoint(cluster, job, out)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=cluster, check=True, capture_output=True)
    release_when_requeued(cluster, job)
    return job, final_state(cluster, job), out


@pytest.fixture(scope="module")
def two_node_sft_requeued(cluster, tmp_path_factory):
    """2 nodes x 1 process; `scontrol requeue` once its first checkpoint is complete, then it runs to the end."""
    out = tmp_path_factory.mktemp("slurm-sft-2node")
    job = submit(cluster, "sft", "--nodes=2", wait=False, PROFILE="cpu", NPROC="1", OUT=str(out), ARGS=SFT_ARGS)
    wait_for_checkpoint(cluster, job, out)
    subprocess.run(["scontrol", "requeue", job], env=cluster, check=True, capture_output=True)
    release_when_requeued(cluster, job)
    return job, final_state(cluster, job), out


def test_single_node_job_checkpoints_on_the_time_limit_signal_and_resumes(single_node_sft):
    job, state, out = single_node_sft
    log = log_of("medqa-sft", job)
    assert (state["JobState"], state["ExitCode"]) == ("COMPLETED", "0:0"), log[-3000:]
    assert "1 node x 2 processes" in log and "--main_process_port" in log
    stopped = re.search(r"stopped at step (\d+) on request; checkpoint-\1 saved", log)
    assert stopped and "asking training to checkpoint and stop" in log, log[-3000:]
    assert "requeueing job" in log and "attempt 2," in log
    summary = json.loads((out / "sft_summary.json").read_text())
    assert summary["resumed_from"] == str(out / f"checkpoint-{stopped[1]}")
    assert summary["num_processes"] == 2 and summary["global_step"] == STEPS and len(summary["train_losses"]) == STEPS
    assert (out / "adapter_model.safetensors").is_file()
    print(f"single-node SFT job {job} (signalled, requeued itself): {wall_s(state)} s for its last attempt")


def test_two_node_job_requeued_mid_run_resumes_and_matches_one_node(two_node_sft_requeued, single_node_sft):
    job, state, out = two_node_sft_requeued
    log = log_of("medqa-sft", job)
    assert (state["JobState"], state["ExitCode"]) == ("COMPLETED", "0:0"), log[-3000:]
    assert state["NodeCnt"] == "2"
    # Both attempts are in the log (--open-mode=append); the second resumed from a checkpoint before the end.
    assert "attempt 1," in log and "attempt 2," in log
    summary = json.loads((out / "sft_summary.json").read_text())
    resumed = re.fullmatch(r".*checkpoint-(\d+)", summary["resumed_from"] or "")
    assert resumed and 2 <= int(resumed[1]) < STEPS, summary["resumed_from"]
    assert summary["num_processes"] == 2 and summary["global_step"] == STEPS
    # c10d rendezvous across the two "nodes", each launched with its own machine rank.
    assert "2 nodes x 1 processes, rendezvous c10d at 127.0.0.1:" in log
    assert "--machine_rank 0" in log and "--machine_rank 1" in log
    # Each node's main process logs every step's loss: in the attempt that ran to the end (the killed first attempt
    # may have logged its last step on one node only), both ranks log each step after the checkpoint, with the same
    # loss, and the run equals 2 processes on one node.
    last_attempt = log[log.rindex("attempt 2,"):]
    node_losses = Counter(re.findall(r"\{'loss': '([^']+)'", last_attempt))
    assert sum(node_losses.values()) == 2 * (STEPS - int(resumed[1])), node_losses
    assert all(n % 2 == 0 for n in node_losses.values()), node_losses
    reference = json.loads((single_node_sft[2] / "sft_summary.json").read_text())
    assert summary["train_losses"] == pytest.approx(reference["train_losses"], rel=1e-5)
    print(f"two-node SFT job {job} (requeued once): {wall_s(state)} s for its last attempt")


def test_eval_job(cluster, tmp_path):
    job = submit(cluster, "eval", LIMIT="2", EVAL_MAX_NEW="8", EVAL_SETS="gold_set red_team", EVAL_ROOT=str(tmp_path),
                 MEDQA_ENV='echo "environment lines ran: $((6 * 7))"')
    state = final_state(cluster, job)
    log = log_of("medqa-eval", job)
    assert (state["JobState"], state["ExitCode"]) == ("COMPLETED", "0:0"), log[-3000:]
    assert "environment lines ran: 42" in log  # MEDQA_ENV runs in the job, before anything else
    for name in ("gold_set", "red_team", "exam"):
        metrics = json.loads((tmp_path / "tiny-qwen3" / name / "metrics.json").read_text())
        assert metrics, name
    print(f"eval job {job}: {wall_s(state)} s")


def test_missing_recipe_fails_fast_with_a_readable_log(cluster):
    job = submit(cluster, "sft", PROFILE="cpu", RECIPE="recipes/sft/cpu/missing.yaml")
    state = final_state(cluster, job)
    log = log_of("medqa-sft", job)
    assert (state["JobState"], state["ExitCode"]) == ("FAILED", "2:0"), log
    assert "preflight: recipe recipes/sft/cpu/missing.yaml not found for PROFILE=cpu; see recipes/sft/" in log
    assert "nothing was launched" in log and "accelerate launch" not in log and "srun" not in log


def test_profile_accel_mismatch_fails_before_launch(cluster):
    job = submit(cluster, "sft", PROFILE="cpu", ACCEL="accelerate_configs/zero3.yaml")
    log = log_of("medqa-sft", job)
    assert final_state(cluster, job)["JobState"] == "FAILED", log
    assert "preflight: PROFILE=cpu needs a CPU launcher" in log and "accelerate launch" not in log


def test_ppo_job_without_its_sft_output_fails_before_launch(cluster):
    job = submit(cluster, "ppo", PROFILE="cpu", SFT="outputs/no-such-sft")
    log = log_of("medqa-ppo", job)
    assert (final_state(cluster, job)["JobState"]) == "FAILED", log
    assert "preflight: SFT output SFT= (the PPO policy) outputs/no-such-sft not found" in log
    assert "nothing was launched" in log and "offline judge" not in log


def test_ppo_job_trains_with_the_offline_judge_as_a_job_step(cluster, single_node_sft, tmp_path):
    """Without a key (TEACHER=offline) the judge runs as its own step on the first node and answers before the
    training step starts; PPO from the SFT job's adapter scores its rollouts there."""
    out = tmp_path / "ppo"
    job = submit(cluster, "ppo", PROFILE="cpu", TEACHER="offline", SFT=str(single_node_sft[2]), OUT=str(out),
                 ARGS="--total_steps 2")
    state = final_state(cluster, job)
    log = log_of("medqa-ppo", job)
    assert (state["JobState"], state["ExitCode"]) == ("COMPLETED", "0:0"), log[-3000:]
    assert re.search(r"teacher: offline judge \(job step on n1\) ready at http://127\.0\.0\.1:\d+/v1", log), log[-3000:]
    assert "offline judge on http://0.0.0.0:" in log  # the judge step's own banner
    assert "starting the OFFLINE heuristic judge" not in log  # make ppo used the job's judge, started none itself
    assert "launching on 1 node(s): make ppo MODE=lora" in log
    summary = json.loads((out / "ppo_summary.json").read_text())
    assert summary["steps"] == 2 and summary["num_processes"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(row.get("teacher/requests", 0) for row in rows) > 0, rows[-1]
    print(f"ppo job {job} (offline judge step): {wall_s(state)} s")


def test_make_slurm_targets_print_the_sbatch_command(cluster):
    proc = subprocess.run(["make", "--no-print-directory", "slurm-sft", "PROFILE=cpu", "NODES=2", "ARGS=--max_steps 3",
                           "SBATCH_ARGS=--time=00:10:00"], cwd=ROOT, env=cluster, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "PROFILE=cpu ARGS=--max_steps\\ 3 sbatch --nodes=2 --time=00:10:00 slurm/sft.sh"
    assert "SUBMIT=1" in proc.stdout
    job_line = subprocess.run(["make", "--no-print-directory", "slurm-eval", "SUBMIT=1", "LIMIT=1",
                               "SBATCH_ARGS=--parsable --hold"], cwd=ROOT, env=cluster, capture_output=True, text=True)
    assert job_line.returncode == 0, job_line.stderr
    job = job_line.stdout.strip().splitlines()[-1]
    assert job.isdigit(), job_line.stdout
    queued = subprocess.run(["squeue", "-h", "-j", job, "-o", "%j %T"], env=cluster, capture_output=True, text=True)
    subprocess.run(["scancel", job], env=cluster, check=True)
    assert queued.stdout.split() == ["medqa-eval", "PENDING"]


def test_api_key_never_appears_in_a_job_log(cluster):
    logs = [p for p in (ROOT / "logs").glob("medqa-*.out") if p.stem.rsplit("-", 1)[-1] in SUBMITTED]
    assert len(logs) >= 5, f"expected this session's job logs, found {logs}"
    for path in logs:
        assert SECRET not in path.read_text(errors="replace"), path


@pytest.mark.vllm
def test_a_vllm_server_job_serves_a_trainer_elsewhere(cluster, vllm_env, tmp_path, ppo_prompts):
    """slurm/vllm.sh: the server runs as its own job, bound to the node's address, and writes its URL where a trainer
    on another node reads it; PPO samples from it (the adapter synced every step); cancelling the job removes the URL."""
    from medqa.models.tiny import build_tiny_model
    from medqa.train.ppo.config import PPOConfig, PPOModelArguments
    from medqa.train.ppo.trainer import PPOTrainer

    model = build_tiny_model(tmp_path / "tiny64", seed=0, head_dim=64)
    url_file = tmp_path / "vllm-url"
    job = submit(cluster, "vllm", wait=False, MODEL=str(model),
                 VLLM_ARGS=f"--url-file {url_file} --dtype float32 --max-model-len 1024")
    try:
        deadline = time.monotonic() + 900
        while not url_file.is_file() and time.monotonic() < deadline and not completions(cluster, job):
            time.sleep(2)
        log = ROOT / "logs" / f"medqa-vllm-{job}.out"
        assert url_file.is_file(), log.read_text()[-3000:] if log.exists() else "no job log"
        url = url_file.read_text().strip()
        assert re.fullmatch(r"http://[\w.-]+:\d+", url) and "127.0.0.1" not in url
        cfg = PPOConfig(output_dir=str(tmp_path / "ppo"), prompts_file=str(ppo_prompts), total_steps=2, batch_size=2,
                        mini_batch_size=2, forward_batch_size=2, ppo_epochs=1, max_new_tokens=4, save_steps=0,
                        report_to="none", progress_bar=False, cpu_threads=1, reward="rules", rollout_engine="vllm",
                        vllm_server_base_url=url)
        PPOTrainer(PPOModelArguments(model_name_or_path=str(model), lora_r=8, lora_alpha=16), cfg).train(resume=False)
        rows = [json.loads(line) for line in (tmp_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2] and all(r["rollout/logp_diff_mean"] < 1e-3 for r in rows)
    finally:
        subprocess.run(["scancel", job], env=cluster, capture_output=True)
    deadline = time.monotonic() + 120
    while url_file.exists() and time.monotonic() < deadline:
        time.sleep(1)
    assert not url_file.exists(), "the URL of a stopped server was left behind"
