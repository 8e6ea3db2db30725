"""P2: share of PPO step time spent waiting for the teacher, overlapped submit vs a blocking call (goal <= 5 %).

The tiny model (models/tiny-qwen3, a fresh LoRA) runs PPO steps in one process on data/rl/training_prompts.jsonl
with the offline judge answering after a fixed latency, set below the step's reference/value forward time
(0.6 × the forward time of an untimed warm-up run). Overlapped: pairs are submitted as soon as the rollout is
decoded and collected after the forwards; blocking: collected right after submitting. Also the step time split.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from medqa.data.rl_prompts import DEFAULT_PROMPTS

STEPS, WARM_STEPS = 6, 3
MODEL = "models/tiny-qwen3"  # `make tiny-model`
TIMES = ("generate", "forward", "score_wait", "score", "update", "step")


def _run(out: Path, steps: int, overlap: bool, teacher_url: str | None, model: str, prompts: str) -> list[dict]:
    from medqa.teacher.judge import OFFLINE_MODEL
    from medqa.teacher.setup import TeacherArgs
    from medqa.train.ppo.config import PPOConfig, PPOModelArguments
    from medqa.train.ppo.trainer import PPOTrainer

    model_args = PPOModelArguments(model_name_or_path=model, mode="lora", lora_r=8, lora_alpha=16)
    cfg = PPOConfig(output_dir=str(out), total_steps=steps, batch_size=8, mini_batch_size=4, forward_batch_size=2,
                    ppo_epochs=1, max_new_tokens=24, max_prompt_length=256, learning_rate=1e-3, save_steps=1000,
                    report_to="none", progress_bar=False, cpu_threads=1, prompts_file=prompts,
                    reward="combined" if teacher_url else "rules")
    teacher = TeacherArgs(teacher_base_url=teacher_url, teacher_model=OFFLINE_MODEL, teacher_cache="",
                               teacher_concurrency=16)
    PPOTrainer(model_args, cfg, teacher, overlap_teacher=overlap).train(resume=False)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _split(rows: list[dict]) -> dict:
    rows = rows[1:]  # the first step pays one-time costs
    means = {k: statistics.mean(r.get(f"time/{k}_s", 0.0) for r in rows) for k in TIMES}
    return {"mean_s": {k: round(v, 4) for k, v in means.items()},
            "teacher_wait_share": round(means["score_wait"] / means["step"], 4)}


def run(out_dir: str | Path, steps: int = STEPS, warm_steps: int = WARM_STEPS, model: str = MODEL,
        prompts: str = DEFAULT_PROMPTS) -> dict:
    """Measure and write `p2_ppo_teacher.json`; `ratio` is the overlapped run's teacher-wait share."""
    from medqa.teacher.server import RunningServer, ServerOptions

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        warm = _split(_run(Path(tmp) / "warm", warm_steps, True, None, model, prompts))
        latency_ms = round(600 * warm["mean_s"]["forward"], 1)
        with RunningServer(ServerOptions(port=0, latency_ms=latency_ms)) as judge:
            overlapped = _split(_run(Path(tmp) / "overlap", steps, True, judge.url, model, prompts))
            blocking = _split(_run(Path(tmp) / "block", steps, False, judge.url, model, prompts))
    result = {
        "benchmark": "P2 teacher wait share of PPO step time (tiny model, offline judge, 1 process)",
        "judge_latency_ms": latency_ms,
        "overlapped": overlapped,
        "blocking": blocking,
        "ratio": overlapped["teacher_wait_share"],
        "goal": 0.05,
        "meets_goal": overlapped["teacher_wait_share"] <= 0.05,
    }
    (out_dir / "p2_ppo_teacher.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "bench_results"), indent=2))
