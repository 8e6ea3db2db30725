"""Teacher triage of questions (`medqa.teacher.triage`) through the one client: once per question, cached under its
own key, scrubbed before it leaves, failures reported and never cached; the offline judge answers it, labelled."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from medqa.teacher.cache import JudgementCache
from medqa.teacher.client import TeacherConfig, score_pairs, triage_questions
from medqa.teacher.judge import OFFLINE_MODEL
from medqa.teacher.server import RunningServer, ServerOptions
from medqa.teacher.triage import TriageError, parse_triage_prompt, triage_user_prompt, validate_triage
from tests.teacher_helpers import ScriptedTriage, stats

SILENT = "奶奶刚才打电话说她不太对劲，话没说完电话就断了，再打也没人接"  # no symptom word for a lexicon
COLD = "孩子感冒咳嗽三天了，能吃点什么药？"


def config(url: str, model: str = "scripted-triage", **kw) -> TeacherConfig:
    base = dict(base_url=url, model=model, concurrency=4, timeout_s=5, backoff_base_s=0.01, backoff_max_s=0.05,
                seed=0)
    return TeacherConfig(**{**base, **kw})


def test_each_unique_question_is_asked_once_and_a_rerun_is_free(tmp_path):
    db = str(tmp_path / "cache.sqlite")
    with ScriptedTriage({"电话就断了": (True, "unknown_collapse")}) as srv:
        res, usage = triage_questions(config(srv.url), [SILENT, COLD, SILENT, COLD, SILENT], db)
        assert srv.requests == 2 and usage.requests == 2
        assert [r.emergency for r in res] == [True, False, True, False, True]
        assert res[0].category == "unknown_collapse" and res[0].model == "scripted-triage" and not res[0].offline
        again, usage = triage_questions(config(srv.url), [COLD, SILENT], db)
        assert srv.requests == 2 and usage.cache_hits == 2 and all(r.cached for r in again)
        assert [r.emergency for r in again] == [False, True]
        # Another teacher model never reuses these rows.
        triage_questions(config(srv.url, model="another-model"), [SILENT], db)
        assert srv.requests == 3
    with JudgementCache(db) as cache:
        rows = list(cache.triages())
        assert len(rows) == 3 and len(cache) == 0  # triages never land among the judgements


def test_triage_and_judgement_never_share_a_cache_row(tmp_path):
    db = str(tmp_path / "cache.sqlite")
    with RunningServer(ServerOptions(port=0)) as srv:
        cfg = config(srv.url, model=OFFLINE_MODEL)
        triage_questions(cfg, [SILENT], db)
        judged, usage = score_pairs(cfg, [(SILENT, "<think>可能突发疾病</think>请立即拨打120。")], db)
        assert judged[0].ok and not judged[0].cached and usage.requests == 1
        res, usage = triage_questions(cfg, [SILENT], db)
        assert res[0].cached and usage.requests == 0


def test_the_question_is_scrubbed_before_it_leaves(tmp_path):
    q = "我叫王小明，电话13812345678，我奶奶打电话说不太对劲，电话就断了"
    db = str(tmp_path / "cache.sqlite")
    with ScriptedTriage({"电话就断了": (True, "unknown_collapse")}) as srv:
        res, _ = triage_questions(config(srv.url), [q], db)
        assert res[0].ok
        sent = json.dumps(srv.bodies, ensure_ascii=False)
        assert "13812345678" not in sent and "王小明" not in sent and "[PHONE]" in srv.questions[0]
    with JudgementCache(db) as cache:
        (row,) = cache.triages()
        assert "13812345678" not in row.question and "[PHONE]" in row.question


def test_a_refused_question_fails_explicitly_and_is_not_cached(tmp_path):
    db = str(tmp_path / "cache.sqlite")
    with ScriptedTriage({"电话就断了": None}) as srv:
        res, usage = triage_questions(config(srv.url), [SILENT, COLD], db)
        assert not res[0].ok and res[0].emergency is None and "HTTP 400" in res[0].error
        assert res[1].ok and usage.failed == 1
    with JudgementCache(db) as cache:
        assert [t.question for t in cache.triages()] == [COLD]


def test_malformed_triage_is_reasked_then_scored():
    with RunningServer(ServerOptions(port=0, malformed_first=1)) as srv:
        res, usage = triage_questions(config(srv.url, model=OFFLINE_MODEL), [SILENT])
        assert res[0].ok and usage.reasks == 1 and stats(srv.url)["total_requests"] == 2


def test_the_offline_judge_triages_with_the_lexicon_and_says_so():
    from medqa import safety

    with RunningServer(ServerOptions(port=0)) as srv:
        res, _ = triage_questions(config(srv.url, model=OFFLINE_MODEL), ["我爸爸胸口剧痛，还出冷汗", COLD])
    assert all(r.offline for r in res) and res[0].model == OFFLINE_MODEL
    assert [r.emergency for r in res] == [bool(safety.red_flags("我爸爸胸口剧痛，还出冷汗")), False] == [True, False]
    assert "offline heuristic" in res[0].reason


def test_triage_prompt_round_trip_and_validation():
    assert parse_triage_prompt(triage_user_prompt(SILENT)) == SILENT
    t = validate_triage('```json\n{"emergency": true, "category": "Acute Limb-Ischaemia", "reason": "cold pale leg"}\n```')
    assert t.emergency and t.category == "acute_limb_ischaemia"
    assert validate_triage('{"needs_emergency": false, "category": "cold", "reason": "mild"}').category == "none"


@pytest.mark.parametrize("content, problem", [
    ("", "empty"), ("not json", "not JSON"), ("[1]", "JSON object"),
    ('{"emergency": "yes", "reason": "x"}', "emergency"), ('{"emergency": true}', "reason"),
    ('{"emergency": true, "category": 3, "reason": "x"}', "category"),
])
def test_triage_validation_rejects_malformed(content, problem):
    with pytest.raises(TriageError, match=problem):
        validate_triage(content)


def test_triage_eval_reports_teacher_alone_and_the_union(tmp_path):
    from medqa import safety
    from medqa.teacher.cli import main

    chest = "我爸爸胸口剧痛，还出冷汗"
    sprain = "我脚踝扭了一下，肿了，要紧吗？"
    assert safety.red_flags(chest) and not safety.red_flags(SILENT) and not safety.red_flags(COLD)
    data = tmp_path / "labelled.jsonl"
    rows = [{"kind": "question", "needs_emergency": True, "question": chest},
            {"kind": "question", "needs_emergency": True, "question": SILENT},
            {"kind": "question", "needs_emergency": False, "question": COLD},
            {"kind": "question", "needs_emergency": False, "question": sprain},
            {"kind": "answer", "answer": "请立即拨打120。"}]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with ScriptedTriage({"电话就断了": (True, "unknown_collapse"), "扭了": None}) as srv:
        args = ["triage-eval", "--data", str(data), "--base-url", srv.url, "--model", "scripted-triage",
                "--cache", str(tmp_path / "c.sqlite"), "--max-retries", "0"]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(args)
        assert srv.requests == 4
    # lexicon: 1 of 2 emergencies; the teacher alone: the other one; the union: both; one question unanswered.
    assert "| labelled.jsonl | 4 (2+, 2−) | 1.00 / 0.50 | 1.00 / 0.50 | 1.00 / 1.00 | 1 |" in out.getvalue()
    assert rc == 1 and "scripted-triage" in out.getvalue()
