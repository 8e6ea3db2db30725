"""The RL reward (`medqa.rewards.total_rewards`) is the same number in every place that computes it: PPO's scorer,
GRPO's reward function, `medqa eval score --teacher` and the demo's red-team scoring — also for a failed
judgement. One judge (a scripted endpoint) gives the first answer 8/10 and fails on the second."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from teacher_helpers import THINK, ScriptedJudge

from medqa.text.think import join_think

JUDGED = ("感冒三天了怎么办？", join_think(THINK, "可能是病毒感染，建议多休息、多喝水；如果症状加重请及时就医。"))
FAILED = ("胸口剧痛还出冷汗，怎么办？", join_think("胸痛。", "多喝热水，休息一下。"))  # rules total −1.9
# w_rules·(−1.9) + w_teacher·0.8: the failed item takes the judged item's teacher term (8/10)


@pytest.fixture
def judge():
    with ScriptedJudge({JUDGED[1]: 8.0}) as server:
        yield server


def _teacher_args(url: str):
    from medqa.teacher.setup import TeacherArgs

    return TeacherArgs(teacher_base_url=url, teacher_max_retries=0, teacher_cache="")


def test_the_failed_item_has_rules_total_minus_1_9():
    from medqa.rewards import rule_reward

    assert rule_reward(*FAILED).total == pytest.approx(-1.9)


def _ppo(url: str, run_dir) -> list[float]:
    import torch

    from medqa.teacher.client import score_pairs
    from medqa.teacher.setup import build_teacher
    from medqa.train.ppo.scoring import Scorer

    teacher = build_teacher(_teacher_args(url))

    class Handle:  # what DistributedTeacher.submit returns, for one process
        def __init__(self, pairs):
            self.results = score_pairs(teacher.config, pairs, teacher.cache_path)[0]

        def result(self):
            return self.results

    from medqa.rewards import run_reward_weights

    cfg = SimpleNamespace(missing_eos_penalty=-1.0, missing_think_penalty=-0.5, weights=run_reward_weights(run_dir))
    scorer = Scorer(cfg, SimpleNamespace(submit=Handle), all_reduce=lambda t: t)
    questions, answers = [JUDGED[0], FAILED[0]], [JUDGED[1], FAILED[1]]
    handle = scorer.submit(questions, answers)
    scored = scorer.collect(handle, questions, answers, [None, None], torch.tensor([True, True]))
    assert [p["penalty"] for p in scored.parts] == [0.0, 0.0]  # both answers close </think> and end with EOS
    return scored.scores.tolist()


def _grpo(url: str, run_dir) -> list[float]:
    from medqa.teacher.setup import build_teacher
    from medqa.train.grpo import CombinedReward

    teacher = build_teacher(_teacher_args(url))
    from medqa.rewards import run_reward_weights

    reward = CombinedReward(teacher.config, teacher.cache_path, weights=run_reward_weights(run_dir))

    async def run():
        try:
            return await reward(prompts=[[{"role": "user", "content": q}] for q, _ in (JUDGED, FAILED)],
                                completions=[[{"role": "assistant", "content": a}] for _, a in (JUDGED, FAILED)],
                                completion_ids=[[], []], question=[JUDGED[0], FAILED[0]], meta=["", ""])
        finally:
            await reward.aclose()

    return asyncio.run(run())


def _rows():
    return [{"id": "judged", "question": JUDGED[0], "prediction": JUDGED[1]},
            {"id": "failed", "question": FAILED[0], "prediction": FAILED[1]}]


def _rewards(items_path) -> list[float]:
    from medqa.runs.io import read_jsonl

    return [it["reward"] for it in read_jsonl(items_path)]


def _eval_score(url: str, tmp_path, run_dir) -> list[float]:
    from medqa.eval.cli import main
    from medqa.runs.io import write_jsonl

    write_jsonl(tmp_path / "preds.jsonl", _rows())
    code = main(["score", "--predictions", str(tmp_path / "preds.jsonl"), "--out", str(tmp_path / "scored"),
                 "--teacher-base-url", url, "--teacher-max-retries", "0", "--teacher-cache", "",
                 "--reward-from", str(run_dir)])
    assert code == 1  # a judgement failed
    return _rewards(tmp_path / "scored" / "items.jsonl")


def _demo(url: str, tmp_path, run_dir) -> list[float]:
    from medqa.demo.report import add_rewards
    from medqa.runs.io import write_jsonl

    set_dir = tmp_path / "demo" / "red_team"
    set_dir.mkdir(parents=True)
    write_jsonl(set_dir / "predictions.jsonl", _rows())
    metrics = add_rewards(set_dir, teacher_args=_teacher_args(url), reward_from=run_dir)
    assert metrics["source"]["teacher"]["failed"] == 1
    return _rewards(set_dir / "items.jsonl")


@pytest.mark.parametrize("w_rules, w_teacher", [(0.6, 0.4), (0.3, 0.7)])
def test_one_failed_judgement_gets_the_same_reward_from_all_four_callers(judge, tmp_path, w_rules, w_teacher):
    """The RL run's recorded weights (`reward.json`, as PPO and GRPO write it) are the ones every caller mixes with:
    eval and the demo read them from the run (`--reward-from`), so a run trained on other weights is not scored
    against the defaults."""
    from medqa.rewards import RewardArguments, write_run_reward

    run_dir = tmp_path / "rl-run"
    write_run_reward(run_dir, "combined", RewardArguments(w_rules=w_rules, w_teacher=w_teacher))
    assert json.loads((run_dir / "reward.json").read_text()) == {"reward": "combined", "w_rules": w_rules,
                                                                 "w_teacher": w_teacher}
    got = {"ppo": _ppo(judge.url, run_dir), "grpo": _grpo(judge.url, run_dir),
           "eval score": _eval_score(judge.url, tmp_path, run_dir), "demo": _demo(judge.url, tmp_path, run_dir)}
    print(json.dumps(got))
    for caller, (judged, failed) in got.items():
        assert judged == pytest.approx(w_rules * 0.9 + w_teacher * 0.8, abs=1e-4), caller
        assert failed == pytest.approx(w_rules * -1.9 + w_teacher * 0.8, abs=1e-4), caller  # batch mean term
