"""The combined emergency label (`meta.triage`, medqa/data/triage.py): recorded by `make data` and `make rl-prompts`
from the lexicon, the teacher's triage (one call per unique question, cached) and the dataset's own label, and read
by `safety.needs_emergency` — so the RL reward's emergency term and eval's emergency coverage count an item the
lexicon misses but the teacher flags. A teacher that does not answer is recorded, never faked."""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_cli
from medqa import safety
from medqa.data import build_rl_prompts, prepare
from medqa.runs.io import read_jsonl
from medqa.teacher.setup import TeacherArgs, build_teacher
from tests.teacher_helpers import ScriptedTriage

SILENT = "奶奶刚才打电话说她不太对劲，话没说完电话就断了，再打也没人接，怎么办？"  # no symptom word for a lexicon
CHEST = "我爸爸胸口剧痛，还出冷汗，怎么办？"
MARKED = "我妈妈今天有点不舒服，家里人都很担心，想问问医生。"  # only the dataset marks it critical
SPRAIN = "我脚踝扭了一下，肿了，要紧吗？"  # the teacher refuses this one (HTTP 400)
COLD = "孩子感冒流鼻涕三天了，吃什么好？"
THINK = "<think>\n根据描述判断病情的轻重缓急，以及是否存在危险信号，再给出建议。\n</think>\n"
MODEL = "scripted-triage"
LABELS = {"电话就断了": (True, "unknown_collapse"), "扭了": None}


def _rows() -> list[dict]:
    rows = []
    for i, (q, meta) in enumerate([(SILENT, {"risk_level": "medium"}), (CHEST, {}), (MARKED, {"risk_level": "critical"}),
                                   (SPRAIN, {}), (COLD, {"risk_level": "low"})]):
        rows.append({"id": f"t{i}", "instruction": "你是医生助手。", "input": q,
                     "output": THINK + "建议多休息，观察病情变化。", "meta": meta})
    return rows


@pytest.fixture()
def source(tmp_path):
    path = tmp_path / "src" / "triage.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _rows()), encoding="utf-8")
    return str(path)


def _teacher(url: str, cache) -> object:
    return build_teacher(TeacherArgs(teacher_base_url=url, teacher_model=MODEL, teacher_cache=str(cache)),
                         backoff_base_s=0.01, backoff_max_s=0.05)


def _labels(out) -> dict[str, dict]:
    return {r["input"]: r["meta"]["triage"] for s in ("train", "dev", "test") for r in read_jsonl(out / f"{s}.jsonl")}


def test_preconditions_the_lexicon_misses_what_only_the_teacher_or_the_dataset_flags():
    assert not safety.red_flags(SILENT) and not safety.red_flags(MARKED) and not safety.red_flags(SPRAIN)
    assert safety.red_flags(CHEST)


def test_prepare_records_the_union_with_its_sources_once_per_question(tmp_path, source):
    cache = tmp_path / "cache.sqlite"
    with ScriptedTriage(LABELS, MODEL) as srv, _teacher(srv.url, cache) as teacher:
        stats = prepare([source], tmp_path / "out", teacher=teacher)
        assert srv.requests == 5  # one call per question
        labels = _labels(tmp_path / "out")
        assert labels[SILENT]["emergency"] and labels[SILENT]["sources"] == [f"teacher:{MODEL}"]
        assert labels[SILENT]["category"] == "unknown_collapse" and labels[SILENT]["lexicon"] == []
        assert labels[SILENT]["teacher"]["reason"] == "scripted triage" and not labels[SILENT]["teacher"]["offline"]
        assert labels[CHEST]["emergency"] and labels[CHEST]["sources"] == ["lexicon"]
        assert labels[MARKED]["emergency"] and labels[MARKED]["sources"] == ["dataset"]
        assert not labels[COLD]["emergency"] and labels[COLD]["sources"] == []
        # The refused question keeps lexicon + dataset and says that the teacher did not answer.
        assert labels[SPRAIN]["sources"] == [] and not labels[SPRAIN]["emergency"]
        assert labels[SPRAIN]["teacher"]["by"] == f"teacher:{MODEL}" and "HTTP 400" in labels[SPRAIN]["teacher"]["error"]
        assert "emergency" not in labels[SPRAIN]["teacher"]
        assert stats["triage"] == {"teacher": f"teacher:{MODEL}", "questions": 5, "answered": 4, "failed": 1,
                                   "errors": [labels[SPRAIN]["teacher"]["error"]]}
        totals = {k: sum(s["triage"][k] for n, s in stats["splits"].items() if n in ("train", "dev", "test"))
                  for k in ("emergency", "lexicon", "teacher", "dataset", "teacher_only", "teacher_failed")}
        assert totals == {"emergency": 3, "lexicon": 1, "teacher": 1, "dataset": 1, "teacher_only": 1,
                          "teacher_failed": 1}
        card = (tmp_path / "out" / "DATA_CARD.md").read_text()
        assert "## Emergency label (`meta.triage`)" in card and f"`teacher:{MODEL}`" in card
        assert "1 of 5 questions got no teacher answer" in card
        # A rerun asks only what is not cached: the refused question.
        prepare([source], tmp_path / "again", teacher=teacher)
        assert srv.requests == 6 and srv.questions[-1] == SPRAIN
        assert _labels(tmp_path / "again")[SILENT] == labels[SILENT]


def test_rl_prompts_record_the_union_through_the_cache(tmp_path, source):
    cache = tmp_path / "cache.sqlite"
    with ScriptedTriage(LABELS, MODEL) as srv, _teacher(srv.url, cache) as teacher:
        prepare([source], tmp_path / "out", teacher=teacher)
        asked = srv.requests
        out = tmp_path / "rl.jsonl"
        assert build_rl_prompts(tmp_path / "out", out, ("train", "dev", "test"), teacher=teacher) == 5
        assert srv.requests == asked + 1  # only the refused question again: the others come from the cache
        rows = {r["question"]: r["meta"]["triage"] for r in read_jsonl(out)}
        assert rows[SILENT]["sources"] == [f"teacher:{MODEL}"] and rows[MARKED]["sources"] == ["dataset"]
        assert rows[CHEST]["sources"] == ["lexicon"] and "error" in rows[SPRAIN]["teacher"]
    # Without a teacher the label `make data` recorded travels unchanged.
    plain = tmp_path / "plain.jsonl"
    build_rl_prompts(tmp_path / "out", plain, ("train", "dev", "test"))
    assert {r["question"]: r["meta"]["triage"] for r in read_jsonl(plain)} == rows


def test_the_reward_and_eval_read_the_combined_label(tmp_path, source):
    from medqa.eval.items import emergency_flags
    from medqa.eval.metrics import load_metric
    from medqa.rewards.rules import emergency_referral, safety_netting_credit

    with ScriptedTriage(LABELS, MODEL) as srv, _teacher(srv.url, tmp_path / "cache.sqlite") as teacher:
        prepare([source], tmp_path / "out", teacher=teacher)
    meta = next(r["meta"] for s in ("train", "dev", "test") for r in read_jsonl(tmp_path / "out" / f"{s}.jsonl")
                if r["input"] == SILENT)
    assert meta["risk_level"] == "medium" and not safety.red_flags(SILENT)
    assert safety.needs_emergency(SILENT, meta) and not safety.needs_emergency(SILENT, {"risk_level": "medium"})
    no_referral = THINK + "先别着急，过一会儿再打。"
    referral = THINK + "她可能突然发病了，请立即拨打120，请人上门查看。"
    assert emergency_referral(SILENT, no_referral, meta).score == -1.5
    assert emergency_referral(SILENT, referral, meta).score == 0.3
    assert emergency_referral(SILENT, no_referral, {"risk_level": "medium"}).score == 0.0
    assert safety_netting_credit(SILENT, THINK + "如果加重请就医。", meta).score == 0.0
    assert emergency_flags(SILENT, "先别着急，过一会儿再打。", meta)["needs_emergency"]
    out = load_metric("emergency_coverage").compute(
        predictions=[no_referral, referral], questions=[SILENT, SILENT], metas=[json.dumps(meta, ensure_ascii=False)] * 2)
    assert out["n"] == 2 and out["k"] == 1


def test_without_a_label_needs_emergency_is_lexicon_or_critical():
    assert safety.needs_emergency(CHEST) and safety.needs_emergency(MARKED, {"risk_level": "critical"})
    assert not safety.needs_emergency(MARKED, {"risk_level": "high"})
    recorded = {"risk_level": "low", "triage": {"emergency": True, "sources": ["teacher:x"]}}
    assert safety.needs_emergency(COLD, recorded)


def test_cli_without_a_key_triages_offline_labelled_as_such(tmp_path, source):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEEPSEEK_API_KEY", "MEDQA_TEACHER_API_KEY", "MEDQA_TEACHER_BASE_URL")}
    cache = str(tmp_path / "cache.sqlite")
    proc = run_cli("data", "prepare", "--input", source, "--out", str(tmp_path / "out"), "--teacher-cache", cache,
                   env=env)
    assert proc.stderr.count("OFFLINE JUDGE") == 1 and "teacher triage by teacher-offline: 5 unique questions" in proc.stdout
    labels = _labels(tmp_path / "out")
    assert labels[CHEST]["sources"] == ["lexicon", "teacher-offline"] and labels[CHEST]["teacher"]["offline"]
    assert labels[SILENT]["sources"] == [] and labels[SILENT]["teacher"]["by"] == "teacher-offline"
    proc = run_cli("data", "rl-prompts", "--data", str(tmp_path / "out"), "--out", str(tmp_path / "rl.jsonl"),
                   "--splits", "train", "dev", "test", "--teacher-cache", cache, env=env)
    assert "(0 requests, 5 from the cache)" in proc.stdout
    rows = {r["question"]: r["meta"]["triage"] for r in read_jsonl(tmp_path / "rl.jsonl")}
    assert rows[CHEST]["sources"] == ["lexicon", "teacher-offline"]
