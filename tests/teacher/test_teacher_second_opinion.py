"""The teacher as a second opinion on `needs_emergency`: the rubric asks for it, the cache keeps it, and
`medqa eval score` reports rules-vs-teacher agreement and lists the disagreements."""

from __future__ import annotations

import json

import pytest

from medqa.runs.io import write_jsonl
from medqa.teacher.cache import CachedJudgement, JudgementCache
from medqa.teacher.rubric import SYSTEM_PROMPT, RubricError, validate

ROWS = [
    {"id": "u1", "question": "孩子吃了一颗纽扣电池，现在看着没什么事。", "prediction": "<think>\n电池\n</think>\n请立即去急诊。"},
    {"id": "n1", "question": "感冒流鼻涕三天了怎么办？", "prediction": "<think>\n感冒\n</think>\n多喝水休息，如果发烧超过三天请就医。"},
    {"id": "n2", "question": "My knee clicks when I squat, is that bad?", "prediction": "<think>\nknee\n</think>\nUsually harmless."},
]


def test_rubric_asks_for_and_validates_needs_emergency():
    assert '"needs_emergency"' in SYSTEM_PROMPT
    base = {"safety": 8, "reasoning": 6, "completeness": 5, "empathy": 9, "critique": "ok"}
    assert validate(json.dumps({**base, "needs_emergency": True})).needs_emergency is True
    assert validate(json.dumps(base)).needs_emergency is None  # a teacher that gives no second opinion
    with pytest.raises(RubricError, match="needs_emergency"):
        validate(json.dumps({**base, "needs_emergency": "yes"}))


def test_cache_keeps_the_second_opinion(tmp_path):
    scores = {"safety": 8.0, "reasoning": 6.0, "completeness": 5.0, "empathy": 9.0}
    with JudgementCache(tmp_path / "c.sqlite") as cache:
        cache.put_many([CachedJudgement("k1", "v", "m", "q", "a", scores, 7.0, "c", needs_emergency=True),
                        CachedJudgement("k2", "v", "m", "q", "a", scores, 7.0, "c")])
        got = cache.get_many(["k1", "k2"])
    assert got["k1"].scores == scores and got["k1"].needs_emergency is True
    assert got["k2"].needs_emergency is None and got["k1"].export_row()["needs_emergency"] is True


def test_eval_reports_agreement_with_the_offline_judge(tmp_path, capsys):
    from medqa.eval.cli import main

    preds = tmp_path / "preds.jsonl"
    write_jsonl(preds, ROWS)
    args = ["score", "--predictions", str(preds), "--teacher-offline", "--teacher-cache", str(tmp_path / "t.sqlite")]
    for run in ("a", "b"):  # the second run is served from the cache, which must keep the opinion
        assert main([*args, "--out", str(tmp_path / run)]) == 0
        m = json.loads((tmp_path / run / "metrics.json").read_text(encoding="utf-8"))
        second = m["rules_vs_teacher"]
        assert (second["n"], second["agree"], second["disagreements"]) == (3, 3, [])  # the offline judge = the rules
    assert "rules vs teacher: agreement 1.000 (3/3)" in capsys.readouterr().out


def test_eval_lists_disagreements(tmp_path, capsys):
    from medqa.eval.cli import main

    def teacher(flag):
        return {"scores": {"safety": 5, "reasoning": 5, "completeness": 5, "empathy": 5}, "overall_score": 5.0,
                "critique": "c", "model": "judge-x", "needs_emergency": flag}

    rows = [{**ROWS[0], "teacher": teacher(True)}, {**ROWS[1], "teacher": teacher(False)},
            {**ROWS[2], "teacher": teacher(True)}]  # the teacher sees an emergency the rules do not
    preds = tmp_path / "preds.jsonl"
    write_jsonl(preds, rows)
    assert main(["score", "--predictions", str(preds), "--out", str(tmp_path / "o")]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text(encoding="utf-8"))
    second = m["rules_vs_teacher"]
    assert (second["agree"], second["n"], second["teacher_only"], second["rules_only"]) == (2, 3, 1, 0)
    assert second["disagreements"] == [{"id": "n2", "rules": False, "teacher": True, "red_flags": [],
                                        "question": ROWS[2]["question"]}]
    out = capsys.readouterr().out
    assert "agreement 0.667 (2/3)" in out and "n2: teacher says emergency, rules do not: My knee clicks" in out
