"""PPO end to end on the tiny model (CPU): learning on a verifiable reward, the real reward against the offline
judge on 2 processes under DDP / ZeRO-2 / ZeRO-3, SIGKILL + resume, teacher faults, no API key in any output."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, THINK_PAIRS, ppo_argv, verifiable_ppo
from medqa.runs.io import read_jsonl, write_jsonl

SECRET = "sk-medqa-test-DO-NOT-LEAK-7f3a9c"


@pytest.fixture(scope="session")
def ppo_sft_adapter(tmp_path_factory, tiny_think_model_dir) -> Path:
    """An SFT-shaped LoRA adapter (untrained: the policy starts as the think model) + tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("ppo-sft") / "sft-lora"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_think_model_dir),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_think_model_dir).save_pretrained(out)
    return out


def _metrics(out: Path) -> list[dict]:
    return read_jsonl(out / "metrics.jsonl")


def _assert_no_secret(out: Path) -> None:
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"API key leaked into {path}"


# ---------------------------------------------------------------- learning


@pytest.mark.slow
@pytest.mark.learning
def test_ppo_learns_a_verifiable_reward_with_bounded_kl(tmp_path, tiny_model_dir, learning_seed, measure):
    """Reward = share of CJK characters in a 2-token answer of the random-init tiny model, sampled at temperature
    0.5: ≈ 0.3 for the initial policy (0.18–0.59 at step 1 over 20 seeds; its rollouts come before the first
    update). PPO raises the mean of the last four of 24 steps well above it while KL to the reference stays
    bounded. Bounds: below the worst of 20 seeds with a margin (README, Tests: `make test-seeds`)."""
    verifiable_ppo(tiny_model_dir, tmp_path, learning_seed, measure, "ppo")
    assert (tmp_path / "out" / "adapter_config.json").is_file() and (tmp_path / "out" / "reward_kl.png").is_file()


def test_group_baseline_repeats_each_prompt_and_ignores_what_only_the_prompt_decides(tmp_path, tiny_model_dir):
    """samples_per_prompt 2: each step answers each of its prompts twice, side by side. A score fixed by the prompt
    alone (here its number) then teaches nothing under the group baseline (zero advantage, zero gradient), while
    without the baseline the same score moves the policy."""
    from medqa.train.ppo.config import PPOConfig, PPOModelArguments
    from medqa.train.ppo.trainer import PPOTrainer

    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"id": f"p{i}", "question": f"q{i}", "prompt": [{"role": "user", "content": f"问题{i}"}]}
                          for i in range(8)])

    def by_prompt(questions, answers, metas):
        return [float(q[1:]) for q in questions]

    def run(name, **kw):
        cfg = PPOConfig(output_dir=str(tmp_path / name), prompts_file=str(prompts), total_steps=1, batch_size=4,
                        mini_batch_size=4, forward_batch_size=4, ppo_epochs=1, learning_rate=1e-2, max_new_tokens=4,
                        max_prompt_length=32, save_steps=0, report_to="none", progress_bar=False, cpu_threads=1,
                        reward="rules", **kw)
        model = PPOModelArguments(model_name_or_path=str(tiny_model_dir), mode="lora", lora_r=4, lora_alpha=8)
        return PPOTrainer(model, cfg, reward_fn=by_prompt).train(resume=False), _metrics(tmp_path / name)[0]

    _, grouped = run("group", samples_per_prompt=2, score_baseline="group")
    ids = grouped["prompt_ids"]
    assert len(ids) == 4 and ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]
    assert grouped["loss/policy"] == 0.0 and grouped["grad_norm"] == 0.0
    _, plain = run("plain")
    assert len(set(plain["prompt_ids"])) == 4 and plain["grad_norm"] > 0.0


# ---------------------------------------------------------------- 2 processes, real reward, offline judge


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("accel", ["cpu", "cpu_zero2", "cpu_zero3"])
def test_ppo_two_processes_offline_judge(tmp_path, accel, ppo_sft_adapter, ppo_prompts):
    from medqa.teacher.judge import OFFLINE_MODEL
    from medqa.teacher.server import RunningServer, ServerOptions

    out = tmp_path / "out"
    env = dict(os.environ, MEDQA_TEACHER_API_KEY=SECRET, OMP_NUM_THREADS="1")
    with RunningServer(ServerOptions(port=0)) as judge:
        argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                str(ROOT / f"accelerate_configs/{accel}.yaml"), str(ROOT / "scripts/ppo.py"),
                *ppo_argv(ppo_sft_adapter, ppo_prompts, out, teacher_base_url=judge.url, teacher_model=OFFLINE_MODEL,
                         teacher_cache=tmp_path / "cache.sqlite", w_rules=0.5, w_teacher=0.5)]
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["teacher/failed_share"] == 0.0 and 0.0 < r["reward/teacher"] <= 1.0
        for key in ("reward", "kl", "kl_coef", "entropy", "clipfrac", "approx_kl", "loss/value", "explained_variance",
                    "time/generate_s", "time/score_wait_s", "time/update_s", "eos_rate", "rules/think_present"):
            assert key in r, key
    # Every EOS counts: the think model ends some answers before max_new_tokens, so ranks stop at different steps.
    assert any(0.0 < r["eos_rate"] < 1.0 or r["response_length"] < 20 for r in rows)
    summary = json.loads((out / "ppo_summary.json").read_text())
    digests = summary["policy_digest_per_rank"]
    assert summary["num_processes"] == 2 and len(digests) == 2
    assert digests[0] == pytest.approx(digests[1], rel=1e-6, abs=1e-6), f"ranks disagree: {digests}"
    assert (out / "adapter_config.json").is_file() and (out / "value_head.pt").is_file()
    assert (out / "checkpoint-2" / "ppo_state.json").is_file()
    assert json.loads((out / "reward.json").read_text()) == {"reward": "combined", "w_rules": 0.5, "w_teacher": 0.5}
    _assert_no_secret(out)
    if accel == "cpu":  # the output loads like an SFT adapter
        from medqa.models.generation import GenerationSettings, generate, load_model

        model, tok = load_model(str(out), device="cpu")
        assert generate(model, tok, ["感冒咳嗽一周了怎么办"], GenerationSettings(max_new_tokens=8))[0].gen_tokens >= 0


# ---------------------------------------------------------------- resume after SIGKILL


@pytest.mark.slow
def test_sigkill_then_resume_continues_with_the_same_data(tmp_path, ppo_sft_adapter, ppo_prompts):
    out = tmp_path / "out"
    argv = [sys.executable, str(ROOT / "scripts/ppo.py"),
            *ppo_argv(ppo_sft_adapter, ppo_prompts, out, total_steps=5, save_steps=2, reward="rules", cpu_threads=1,
                   max_new_tokens=8)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    killed_rows: list[dict] = []
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "checkpoint-2" / "ppo_state.json").is_file() and (out / "metrics.jsonl").is_file():
            killed_rows = _metrics(out)
            if any(r["step"] == 3 for r in killed_rows):
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.05)
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-run: {proc.stderr.read().decode()[-2000:]}"
    killed_step3 = next(r for r in killed_rows if r["step"] == 3)

    resumed = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    m = re.search(r"resuming from \S+checkpoint-(\d+) \(step (\d+)\)", resumed.stdout + resumed.stderr)
    assert m, resumed.stdout[-2000:]
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]  # the killed step's row was replaced, not duplicated
    by_step = {r["step"]: r for r in rows}
    if int(m.group(2)) == 2:
        assert by_step[3]["prompt_ids"] == killed_step3["prompt_ids"]  # the same data order after the resume
    from medqa.train.ppo.rollout import PromptOrder

    order = PromptOrder(8, seed=42, batch_size=2, world_size=1)
    ids = [f"q{i}" for i in range(8)]
    assert all(by_step[s]["prompt_ids"] == [ids[i] for i in order.indices(s - 1, 0)] for s in by_step)
    assert json.loads((out / "ppo_summary.json").read_text())["steps"] == 5


@pytest.mark.slow
def test_stop_file_checkpoints_and_stops_then_the_next_run_resumes(tmp_path, monkeypatch, ppo_sft_adapter,
                                                                   ppo_prompts, capsys):
    """MEDQA_STOP_FILE (set by the Slurm templates, created on USR1 before the time limit): PPO saves a checkpoint
    after the step it sees the file at and stops without a final model; the requeued run resumes from it."""
    from medqa.train.ppo.config import parse_args
    from medqa.train.ppo.trainer import PPOTrainer

    out, stop = tmp_path / "out", tmp_path / "stop"
    argv = ppo_argv(ppo_sft_adapter, ppo_prompts, out, total_steps=3, save_steps=0, reward="rules", cpu_threads=1,
                 max_new_tokens=6, report_to="none")
    stop.touch()
    monkeypatch.setenv("MEDQA_STOP_FILE", str(stop))
    first = PPOTrainer(*parse_args(argv)).train(resume=False)
    assert first["stopped_at"] == 1 and first["steps"] == 1
    assert (out / "checkpoint-1" / "ppo_state.json").is_file()  # saved although save_steps is 0
    assert not (out / "adapter_model.safetensors").exists()  # no final model: the run is not finished
    assert "stop requested" in capsys.readouterr().out

    stop.unlink()
    second = PPOTrainer(*parse_args(argv)).train()  # auto_resume, as the requeued job does
    assert second["resumed_from"].endswith("checkpoint-1") and second["stopped_at"] is None
    assert second["steps"] == 3 and [r["step"] for r in _metrics(out)] == [1, 2, 3]
    assert (out / "adapter_model.safetensors").is_file()


# ---------------------------------------------------------------- teacher faults


@pytest.mark.slow
def test_failing_teacher_items_fall_back_and_a_dead_teacher_stops_the_run(tmp_path, ppo_sft_adapter, ppo_prompts):
    from medqa.teacher.judge import OFFLINE_MODEL
    from medqa.teacher.server import RunningServer, ServerOptions
    from medqa.train.ppo.config import parse_args
    from medqa.train.ppo.scoring import TeacherUnavailable
    from medqa.train.ppo.trainer import PPOTrainer

    common = dict(teacher_model=OFFLINE_MODEL, teacher_max_retries=0, cpu_threads=1, max_new_tokens=8,
                  batch_size=4, forward_batch_size=4, report_to="none")
    with RunningServer(ServerOptions(port=0, fail_rate=0.5, status=500, seed=3)) as flaky:
        args = parse_args(ppo_argv(ppo_sft_adapter, ppo_prompts, tmp_path / "flaky", teacher_base_url=flaky.url,
                                teacher_fail_threshold=0.95, **common))
        PPOTrainer(*args).train(resume=False)
    rows = _metrics(tmp_path / "flaky")
    shares = [r["teacher/failed_share"] for r in rows]
    assert any(0.0 < s < 1.0 for s in shares), shares  # some items failed, some were judged
    assert all(r["reward/teacher_failed"] == pytest.approx(r["teacher/failed_share"]) for r in rows)
    samples = read_jsonl(tmp_path / "flaky" / "samples.jsonl")
    imputed = {r["step"]: r["teacher/imputed"] for r in rows}  # a failed item gets the batch's mean teacher score
    assert all(s["reward"]["teacher"] == pytest.approx(imputed[s["step"]]) for s in samples if s["reward"]["teacher_failed"])

    with RunningServer(ServerOptions(port=0, fail_rate=1.0, status=500)) as dead:
        args = parse_args(ppo_argv(ppo_sft_adapter, ppo_prompts, tmp_path / "dead", teacher_base_url=dead.url,
                                total_steps=5, teacher_fail_patience=2, **common))
        with pytest.raises(TeacherUnavailable, match=r"failed for 100% of the items in 2 steps in a row"):
            PPOTrainer(*args).train(resume=False)
    assert [r["step"] for r in _metrics(tmp_path / "dead")] == [1]


@pytest.mark.slow
def test_a_dead_teacher_stops_the_ppo_entry_point_with_exit_3(tmp_path, ppo_sft_adapter, ppo_prompts):
    """The stop rule GRPO shares (`medqa.rewards.TeacherStopRule`): every judgement fails, patience 1, so
    `scripts/ppo.py` stops at step 1 with exit code 3 and no final model."""
    import os
    import subprocess
    import sys

    from medqa.errors import ExitCode
    from medqa.teacher.judge import OFFLINE_MODEL
    from medqa.teacher.server import RunningServer, ServerOptions

    out = tmp_path / "ppo-dead"
    with RunningServer(ServerOptions(port=0, fail_rate=1.0, status=500)) as dead:
        cmd = [sys.executable, "scripts/ppo.py", *ppo_argv(
            ppo_sft_adapter, ppo_prompts, out, teacher_base_url=dead.url, teacher_model=OFFLINE_MODEL,
            teacher_max_retries=0, teacher_fail_patience=1, max_new_tokens=8, report_to="none", cpu_threads=1)]
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                              text=True)
    assert proc.returncode == ExitCode.STOPPED == 3, proc.stderr[-3000:]
    assert "ppo: stopped: the teacher failed for 100% of the items in 1 steps in a row" in proc.stderr
    assert not (out / "adapter_model.safetensors").exists()


# ---------------------------------------------------------------- KL to the SFT policy


@pytest.mark.slow
def test_reference_sft_starts_at_zero_kl_and_saves_only_the_policy_adapter(tmp_path, tiny_model_dir, ppo_prompts):
    """reference: sft keeps a frozen copy of the SFT adapter; the KL of step 1 is then 0 even though the SFT
    adapter differs from the base (its B matrices are non-zero here)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medqa.train.ppo.config import parse_args
    from medqa.train.ppo.trainer import PPOTrainer

    sft = tmp_path / "sft"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    model.save_pretrained(sft)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(sft)
    runs = {}
    for reference in ("base", "sft"):
        out = tmp_path / f"ppo-{reference}"  # never the SFT folder it starts from
        args = parse_args(ppo_argv(sft, ppo_prompts, out, total_steps=1, reward="rules", reference=reference,
                                cpu_threads=1, max_new_tokens=6, report_to="none"))
        PPOTrainer(*args).train(resume=False)
        runs[reference] = _metrics(out)[0]["kl"]
        assert (out / "adapter_model.safetensors").is_file() and not (out / "reference").exists()
    from medqa.eval.decoding import decoding_from

    # The run records its rollout decoding, so `--decoding-from OUT` evaluates the policy the way it was trained.
    assert decoding_from(out) == {"trainer": "ppo", "temperature": args[1].temperature, "top_p": args[1].top_p,
                                  "top_k": args[1].top_k, "max_new_tokens": 6, "enable_thinking": True,
                                  "repetition_penalty": 1.0}
    assert runs["sft"] == pytest.approx(0.0, abs=1e-6)
    assert abs(runs["base"]) > 0.1  # the adapter-disabled reference is the base model, far from this SFT adapter


# ---------------------------------------------------------------- rollouts with a repetition penalty


def test_penalised_rollouts_log_probs_are_those_transformers_sampled_from(tiny_think_model_dir):
    """Rollouts sampled with a repetition penalty stay on-policy: PPO's log-probs equal, token by token, the
    log-softmax of the scores transformers' own processors make from the same logits (penalty over the left-padded
    prompt and the response so far, then the temperature)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.generation.logits_process import (
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
    )

    from medqa.models.chat import stop_ids
    from medqa.train.ppo import rollout
    from medqa.train.ppo.value_head import PolicyWithValueHead

    tok = AutoTokenizer.from_pretrained(tiny_think_model_dir)
    model = PolicyWithValueHead(AutoModelForCausalLM.from_pretrained(tiny_think_model_dir)).eval()
    stop = stop_ids(tok, model.config, model.policy.generation_config)
    prompts = [[{"role": "user", "content": q}] for q, _ in THINK_PAIRS[:3]]  # different lengths: left padding
    torch.manual_seed(0)
    batch = rollout.generate(model, tok, prompts, max_prompt_length=256, max_new_tokens=24, temperature=0.7,
                             top_p=1.0, top_k=0, enable_thinking=True, stop_ids=stop, repetition_penalty=1.3)
    assert (batch.query_mask == 0).any()
    with torch.no_grad():
        got, _, entropy = rollout.forward(model, batch, slice(None), 0.7, with_entropy=True, repetition_penalty=1.3)
        P = batch.query_ids.shape[1]
        logits = model.policy(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                              position_ids=rollout.position_ids(batch.attention_mask)).logits[:, P - 1:-1]
    processors = [RepetitionPenaltyLogitsProcessor(1.3), TemperatureLogitsWarper(0.7)]
    for t in range(batch.response_ids.shape[1]):
        scores = logits[:, t].float()
        for proc in processors:
            scores = proc(batch.input_ids[:, : P + t], scores)
        want = torch.log_softmax(scores, -1).gather(-1, batch.response_ids[:, t: t + 1]).squeeze(-1)
        live = batch.response_mask[:, t].bool()
        torch.testing.assert_close(got[live, t], want[live], atol=1e-5, rtol=1e-5)
    plain, _, _ = rollout.forward(model, batch, slice(None), 0.7)  # the penalty changes the distribution
    assert (plain - got).abs().max() > 1e-3
    assert torch.isfinite(entropy).all()
