"""GRPO (medqa/train/grpo.py) on the tiny model, CPU: recipes and checks, the two reward functions, learning on a
verifiable reward, the real composition against the offline judge (1 process with injected failures and a
SIGKILL + resume; 2 processes under DDP), and the saved policy loading for prediction."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, THINK_PAIRS
from medqa.runs.checkpoints import HF_STATE, checkpoint_step, newest_checkpoint
from medqa.train.grpo import CombinedReward, parse_args, rules

RECIPES = sorted(p for p in (ROOT / "recipes" / "grpo").rglob("*.yaml") if p.name != "profile.yaml")
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # the tiny model runs fastest on one thread, and CPUs are shared


@pytest.fixture(autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory) -> Path:
    """RL prompt rows (`make rl-prompts` shape) for the questions the think model answers."""
    from medqa.runs.io import write_jsonl

    path = tmp_path_factory.mktemp("rl") / "prompts.jsonl"
    risk = ["critical", "low", "low", "medium"]
    write_jsonl(path, [{"id": f"p{i}", "prompt": [{"role": "user", "content": q}], "question": q, "reference": "",
                        "meta": {"risk_level": risk[i], "specialty": "general", "high_quality": True}}
                       for i, (q, _) in enumerate(THINK_PAIRS)])
    return path


def argv(sft: Path, prompts: Path, out: Path, **overrides) -> list[str]:
    """The CPU LoRA recipe pointed at the fixtures; overrides as --key value."""
    args = ["--config", str(ROOT / "recipes" / "grpo" / "cpu" / "lora.yaml"), "--model_name_or_path", str(sft),
            "--prompts_file", str(prompts), "--output_dir", str(out), "--report_to", "none", "--disable_tqdm", "true",
            "--max_completion_length", "24", "--teacher_cache", str(out.parent / f"{out.name}-cache.sqlite")]
    for key, value in overrides.items():
        args += [f"--{key}", str(value)]
    return args


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------- recipes and validation


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes" / "grpo")))
def test_every_recipe_parses(recipe, tiny_model_dir):
    import importlib.util

    if "qlora" in recipe.name and importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("qlora needs bitsandbytes")
    script, config, model, teacher = parse_args(["--config", str(recipe), "--model_name_or_path", str(tiny_model_dir)])
    assert config.reward_weights is None and (config.w_rules, config.w_teacher) == (0.6, 0.4) and config.beta > 0
    assert not config.bf16 and config.use_cpu  # fp32 on a CPU-only machine, whatever the recipe
    assert config.num_generations >= 2 and model.mode in recipe.name
    if "cpu" in recipe.parts:
        assert config.gradient_checkpointing is False


@pytest.mark.parametrize("extra, message", [
    (["--beta", "-0.1"], "beta must be >= 0"),
    (["--num_generations", "1"], "num_generations must be >= 2"),
    (["--temperature", "0"], "temperature must be > 0"),
    (["--reward_weights", "0.6", "-0.4"], "reward_weights must be >= 0"),
    (["--teacher_concurrency", "0"], "teacher_concurrency must be > 0"),
    (["--teacher_fail_patience", "0"], "teacher_fail_patience >= 1"),
    (["--w_teacher", "-0.4"], "reward weights must be >= 0"),
    (["--model_name_or_path", "outputs/no/such-sft"], "no such SFT output"),
])
def test_invalid_settings_fail_with_a_clear_message(extra, message, tiny_model_dir):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        parse_args(["--config", str(ROOT / "recipes/grpo/cpu/lora.yaml"), "--model_name_or_path", str(tiny_model_dir),
                    *extra])


def test_entry_point_reports_errors_in_one_line_with_exit_2(sft_lora_output):
    proc = subprocess.run([sys.executable, "scripts/grpo.py", "--config", "recipes/grpo/cpu/lora.yaml",
                           "--model_name_or_path", str(sft_lora_output), "--mode", "full"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("grpo: ") and "LoRA adapter" in proc.stderr


# ---------------------------------------------------------------- reward functions


def test_rule_reward_function_reads_the_rows_meta():
    from medqa.rewards import rule_reward

    q = "我胸口剧烈疼痛，出冷汗，怎么办？"
    good = "<think>\n胸痛伴出汗，警惕心梗，需要马上急救，不能耽误。\n</think>\n可能是心肌梗死，请立即拨打120急救电话。"
    completions = [[{"role": "assistant", "content": good}], [{"role": "assistant", "content": "多喝水。"}]]
    meta = json.dumps({"risk_level": "critical"})
    got = rules(prompts=[[{"role": "user", "content": q}]] * 2, completions=completions, completion_ids=[[], []],
                question=[q, q], meta=[meta, meta])
    assert got == [rule_reward(q, good, {"risk_level": "critical"}).total,
                   rule_reward(q, "多喝水。", {"risk_level": "critical"}).total]
    assert got[0] > got[1]


def test_combined_reward_gives_failed_judgements_the_batchs_mean_teacher_term_and_logs_the_share(tmp_path):
    """Through the real client against the offline judge failing some requests (no retries): every completion
    gets a reward (none is None), a failed one `0.6·rules + 0.4·mean teacher term of the judged ones`, and the
    failed share and the parts are reported through TRL's log_metric."""
    from medqa.rewards import rule_reward
    from medqa.teacher.server import RunningServer, ServerOptions, pair_id
    from medqa.teacher.setup import TeacherArgs, build_teacher

    questions = [f"问题{i}：感冒咳嗽{i}天了怎么办？" for i in range(12)]
    texts = [f"<think>普通感冒。</think>多休息，多喝水（{i}）。症状加重请就医。" for i in range(12)]
    logged: dict[str, float] = {}
    with RunningServer(ServerOptions(port=0, fail_rate=0.4, seed=1)) as server:
        config, cache_path = build_teacher(TeacherArgs(teacher_base_url=server.url, teacher_max_retries=0,
                                                       teacher_cache=str(tmp_path / "cache.sqlite")))
        reward = CombinedReward(config, cache_path)

        async def run():
            try:
                return await reward(prompts=[[{"role": "user", "content": q}] for q in questions],
                                    completions=[[{"role": "assistant", "content": t}] for t in texts],
                                    completion_ids=[[]] * 12, question=questions,
                                    log_metric=lambda name, value: logged.__setitem__(name, value))
            finally:
                await reward.aclose()

        got = asyncio.run(run())
        failed = {i for i, (q, t) in enumerate(zip(questions, texts, strict=True))
                  if server.server.stats.pairs[pair_id(q, t)].get("status_500")}
    assert 0 < len(failed) < 12 and all(g is not None for g in got)
    terms = [(g - 0.6 * rule_reward(q, t).total) / 0.4 for g, q, t in zip(got, questions, texts, strict=True)]
    judged = [terms[i] for i in range(12) if i not in failed]
    assert all(0.0 <= term <= 1.0 for term in judged)
    mean = sum(judged) / len(judged)
    assert all(terms[i] == pytest.approx(mean, abs=1e-3) for i in failed)
    assert logged["teacher/failed_share"] == pytest.approx(len(failed) / 12)
    assert logged["rewards/teacher/mean"] == pytest.approx(mean, abs=1e-3)
    assert reward.failed == len(failed)


# ---------------------------------------------------------------- training


def _starts_in_chinese(prompts, completions, completion_ids, **_):
    """A verifiable reward: 1 when the completion starts with a Chinese character."""
    import re

    from medqa.train.grpo import completion_text

    return [1.0 if re.match(r"[\u4e00-\u9fff]", completion_text(c).lstrip()) else 0.0 for c in completions]


@pytest.mark.slow
@pytest.mark.learning
def test_grpo_raises_a_verifiable_reward(tiny_model_dir, prompts_file, tmp_path, learning_seed, measure):
    """From the random-init tiny model (near-uniform, so completions differ), 30 steps of 2 prompts × 8
    completions. Step 1's reward is the initial policy's; the last four steps' mean rises above it (bound: below
    the worst of 20 seeds with a margin, `make test-seeds`)."""
    from medqa.train.grpo import build_trainer

    script, config, model, _ = parse_args(argv(
        tiny_model_dir, prompts_file, tmp_path / "learn", mode="full", max_steps=30, learning_rate=1e-2, beta=0.0,
        lr_scheduler_type="constant", reward_weights=1.0, num_generations=8, per_device_train_batch_size=16,
        save_strategy="no", max_completion_length=4, seed=learning_seed))
    trainer = build_trainer(script, config, model, reward_funcs=[_starts_in_chinese])
    trainer.train()
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    print("reward per step:", [round(r, 3) for r in rewards])
    assert len(rewards) == 30
    initial = measure("grpo/reward_initial", rewards[0])
    measure("grpo/reward_last4_minus_initial", sum(rewards[-4:]) / 4 - initial, at_least=0.2)


def _adapter_weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


@pytest.mark.slow
def test_grpo_against_the_offline_judge_survives_failures_and_sigkill(sft_lora_output, prompts_file, tmp_path):
    """One process from the SFT adapter: the judge fails ~30 % of requests (no retries), the run is SIGKILLed
    after a checkpoint and resumed; the outputs are complete and the policy loads for prediction."""
    import torch

    from medqa.models.generation import GenerationSettings, generate, load_model
    from medqa.teacher.server import RunningServer, ServerOptions

    out = tmp_path / "grpo"
    with RunningServer(ServerOptions(port=0, fail_rate=0.3, seed=3)) as server:
        cmd = [sys.executable, "scripts/grpo.py", *argv(
            sft_lora_output, prompts_file, out, max_steps=6, save_steps=2, temperature=2.0, max_completion_length=16,
            teacher_base_url=server.url, teacher_max_retries=0)]
        env = {**os.environ, **ONE_THREAD}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.monotonic() + 300
        try:
            while time.monotonic() < deadline and proc.poll() is None and not newest_checkpoint(out, HF_STATE):
                time.sleep(0.2)
            assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-3000:]
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
        assert proc.returncode == -signal.SIGKILL and not (out / "grpo_summary.json").exists()
        stopped_at = checkpoint_step(newest_checkpoint(out, HF_STATE))
        rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        server_failed = sum(c.get("status_500", 0) for c in server.server.stats.pairs.values())

    summary = json.loads((out / "grpo_summary.json").read_text())
    assert summary["resumed_from"].endswith(f"checkpoint-{stopped_at}") and summary["global_step"] == 6
    metrics = read_rows(out / "metrics.jsonl")
    print("metrics:", [(m["step"], round(m["reward"], 3), m.get("teacher/failed_share"), m.get("step_time"))
                       for m in metrics])
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]  # steps logged before the kill are not repeated
    assert all(set(m["rewards"]) == {"total", "rules", "teacher"} and m["reward"] is not None for m in metrics)
    assert server_failed > 0 and summary["teacher_usage"]["failed"] > 0
    assert json.loads((out / "reward.json").read_text()) == {"reward": "combined", "w_rules": 0.6, "w_teacher": 0.4}
    assert any(m["teacher/failed_share"] > 0 for m in metrics)  # failed judgements took the mean, the run went on
    samples = read_rows(out / "samples.jsonl")
    assert samples and {"step", "question", "completion", "rewards"} <= set(samples[0])

    # The KL reference is the SFT policy: TRL's frozen "ref" adapter is the SFT adapter, the trained one moved.
    sft, ref, trained = (_adapter_weights(p) for p in (sft_lora_output, out / "ref", out))
    assert sft.keys() == ref.keys() == trained.keys()
    assert all(torch.equal(sft[k], ref[k]) for k in sft)
    assert any(not torch.equal(sft[k], trained[k]) for k in sft)
    model, tok = load_model(str(out))  # what `medqa predict --model OUT` does
    assert list(generate(model, tok, [THINK_PAIRS[0][0]], GenerationSettings(max_new_tokens=8)))[0].gen_tokens > 0


@pytest.mark.slow
def test_stop_file_checkpoints_and_stops_then_the_next_run_resumes(sft_lora_output, prompts_file, tmp_path,
                                                                   monkeypatch):
    """MEDQA_STOP_FILE (the Slurm templates' USR1 request): a checkpoint after the current step, no final model or
    summary; the next run resumes from that checkpoint and finishes."""
    from medqa.teacher.server import RunningServer, ServerOptions
    from medqa.train.grpo import main, parse_args

    out, stop = tmp_path / "grpo", tmp_path / "stop"
    stop.touch()
    monkeypatch.setenv("MEDQA_STOP_FILE", str(stop))
    with RunningServer(ServerOptions(port=0, seed=3)) as server:
        args = argv(sft_lora_output, prompts_file, out, max_steps=3, save_steps=10, max_completion_length=8,
                    teacher_base_url=server.url)
        assert main(*parse_args(args)) == {"stopped_at": 1, "resumed_from": None}
        assert newest_checkpoint(out, HF_STATE).name == "checkpoint-1"
        assert not (out / "grpo_summary.json").exists() and not (out / "adapter_model.safetensors").exists()
        stop.unlink()
        summary = main(*parse_args(args))
    assert summary["resumed_from"].endswith("checkpoint-1") and summary["global_step"] == 3
    assert (out / "grpo_summary.json").is_file() and (out / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_a_dead_teacher_stops_grpo_with_the_same_rule_and_exit_code_as_ppo(tiny_model_dir, prompts_file, tmp_path):
    """Every judgement fails: `medqa.rewards.TeacherStopRule` (the teacher arguments' threshold and patience, as in
    PPO) stops the run at the first generation step, without a final model, with exit code 3."""
    from medqa.errors import ExitCode
    from medqa.teacher.server import RunningServer, ServerOptions

    out = tmp_path / "grpo-dead"
    with RunningServer(ServerOptions(port=0, fail_rate=1.0, status=500)) as dead:
        cmd = [sys.executable, "scripts/grpo.py", *argv(
            tiny_model_dir, prompts_file, out, max_steps=3, save_strategy="no", max_completion_length=8,
            teacher_base_url=dead.url, teacher_max_retries=0, teacher_fail_patience=1)]
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **ONE_THREAD}, capture_output=True, text=True)
    assert proc.returncode == ExitCode.STOPPED == 3, proc.stderr[-3000:]
    assert "grpo: stopped: the teacher failed for 100% of the items in 1 steps in a row" in proc.stderr
    assert not (out / "grpo_summary.json").exists() and not (out / "adapter_model.safetensors").exists()


@pytest.mark.slow
@pytest.mark.distributed
def test_grpo_two_processes_share_one_capped_teacher(sft_lora_output, prompts_file, tmp_path):
    """2 CPU processes (DDP): every rank calls the teacher once per step with its own completions, rank 0 sends
    them, and the judge never sees more requests in flight than the global cap."""
    from medqa.teacher.server import RunningServer, ServerOptions

    out = tmp_path / "grpo-ddp"
    with RunningServer(ServerOptions(port=0, latency_ms=100)) as server:
        cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
               str(ROOT / "accelerate_configs" / "cpu.yaml"), "scripts/grpo.py", *argv(
                   sft_lora_output, prompts_file, out, max_steps=2, save_strategy="no", temperature=2.0,
                   max_completion_length=12, teacher_base_url=server.url, teacher_concurrency=2)]
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **ONE_THREAD}, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        stats = server.server.stats
    summary = json.loads((out / "grpo_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["global_step"] == 2
    # 4 completions per rank per step (2 prompts x 4 generations over 2 ranks), one call per rank per step.
    assert summary["teacher_calls_per_rank"] == [[4, 4], [4, 4]]
    usage = summary["teacher_usage"]
    assert usage["requests"] == stats.total and 0 < usage["scored"] <= 16  # cross-rank duplicates are sent once
    assert stats.max_in_flight <= 2 and usage["max_in_flight"] <= 2
    assert [m["step"] for m in read_rows(out / "metrics.jsonl")] == [1, 2]


# ---------------------------------------------------------------- reports


def test_auto_compare_reports_sft_vs_each_rl_method_and_ppo_vs_grpo(tmp_path):
    from test_eval_score import ROWS_A, _write

    from medqa.eval.cli import main
    from medqa.eval.compare import find_auto_comparisons

    root = tmp_path / "eval"
    for i, name in enumerate(("sft-lora", "ppo-lora", "grpo-lora")):
        preds = _write(tmp_path / f"{name}.jsonl", ROWS_A)
        assert main(["score", "--predictions", str(preds), "--out", str(root / name / "gold_set")]) == 0
        os.utime(root / name, (1e9 + i, 1e9 + i))  # grpo is the newest run
    sft, ppo, grpo = (root / n for n in ("sft-lora", "ppo-lora", "grpo-lora"))
    assert find_auto_comparisons(root) == [(sft, grpo), (sft, ppo), (ppo, grpo)]
    assert main(["auto-compare", str(root)]) == 0
    for a, b in find_auto_comparisons(root):  # reports are not runs: the same pairs after writing them
        assert (root / f"compare-{a.name}-vs-{b.name}" / "report.html").is_file()
