"""Who judged is part of every judgement: the cache key holds the endpoint and the requested model, rows record the
model the server reported, the offline judge is labelled offline however it is reached, and one function builds
the teacher for `medqa teacher` and `medqa eval` with one set of flags and one default cache."""

from __future__ import annotations

import ast
import json
import sqlite3
from pathlib import Path

import pytest

from conftest import ROOT
from medqa.teacher.server import RunningServer, ServerOptions
from tests.teacher_helpers import pairs, reset_stats, stats


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    for var in ("DEEPSEEK_API_KEY", "MEDQA_TEACHER_API_KEY"):
        monkeypatch.delenv(var, raising=False)


def _write(path: Path, items) -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": a}, ensure_ascii=False) + "\n" for q, a in items),
                    encoding="utf-8")
    return path


def _summary(err: str) -> dict:
    return json.loads([line for line in err.splitlines() if line.startswith("{")][-1])


def test_offline_judge_behind_a_base_url_is_labelled_and_never_answers_for_another_endpoint(tmp_path, capsys):
    from medqa.teacher.cli import main
    from medqa.teacher.client import DEFAULT_MODEL

    inp, cache = _write(tmp_path / "in.jsonl", pairs(4, "id")), tmp_path / "c.sqlite"
    with RunningServer(ServerOptions(port=0)) as offline:
        assert main(["score", "--input", str(inp), "--output", str(tmp_path / "o1.jsonl"), "--base-url", offline.url,
                     "--cache", str(cache), "--quiet"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "o1.jsonl").read_text(encoding="utf-8").splitlines()]
    for r in rows:  # asked for deepseek-chat, answered by the offline heuristic: the rows say so
        assert r["teacher"]["requested_model"] == DEFAULT_MODEL
        assert r["teacher"]["model"] == "medqa-offline-judge-v1" and r["teacher"]["offline"] is True
    with sqlite3.connect(cache) as db:
        assert {row for row in db.execute("SELECT model, offline FROM judgements")} == {("medqa-offline-judge-v1", 1)}
    capsys.readouterr()
    # Another endpoint with the same cache: every item is asked again, none is answered from the offline rows.
    with RunningServer(ServerOptions(port=0, model_name="judge-elsewhere")) as other:
        assert main(["score", "--input", str(inp), "--output", str(tmp_path / "o2.jsonl"), "--base-url", other.url,
                     "--cache", str(cache), "--quiet"]) == 0
        assert stats(other.url)["total_requests"] == 4
    s = _summary(capsys.readouterr().err)
    assert s["usage"]["cache_hits"] == 0 and s["served_by"] == ["judge-elsewhere"]


def test_teacher_and_eval_share_flags_and_the_default_cache(tmp_path, capsys):
    """`medqa eval score --teacher-offline` pays for judgements that `medqa teacher score --offline` then reuses."""
    from medqa.eval.cli import main as eval_main
    from medqa.teacher.cli import build_parser
    from medqa.teacher.cli import main as teacher_main
    from medqa.teacher.setup import DEFAULT_CACHE

    teacher_ns = build_parser().parse_args(["score", "--input", "x", "--output", "y", "--teacher-offline"])
    assert teacher_ns.teacher_offline and teacher_ns.teacher_cache == DEFAULT_CACHE
    assert build_parser().parse_args(["score", "--input", "x", "--output", "y", "--offline"]).teacher_offline

    cache = tmp_path / "shared.sqlite"
    items = [(f"头痛{i}天了怎么办？", f"多休息，如果加重请及时就医（{i}）。") for i in range(3)]
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": f"p{i}", "question": q, "prediction": f"<think>想想</think>{a}"},
                                        ensure_ascii=False) + "\n" for i, (q, a) in enumerate(items)), encoding="utf-8")
    assert eval_main(["score", "--predictions", str(preds), "--out", str(tmp_path / "ev"), "--teacher-offline",
                      "--teacher-cache", str(cache)]) == 0
    capsys.readouterr()
    whole = [(q, f"<think>想想</think>{a}") for q, a in items]  # eval's judge, like RL's, sees the whole text
    assert teacher_main(["score", "--input", str(_write(tmp_path / "qa.jsonl", whole)), "--output",
                         str(tmp_path / "t.jsonl"), "--offline", "--cache", str(cache), "--quiet"]) == 0
    s = _summary(capsys.readouterr().err)
    assert s["usage"]["requests"] == 0 and s["usage"]["cache_hits"] == 3 and s["offline_judge"] is True


def test_teacher_args_work_with_hf_argument_parser_and_validate():
    from transformers import HfArgumentParser

    from medqa.teacher.setup import DEFAULT_CACHE, TeacherArgs, TeacherSetupError, build_teacher

    (ta,) = HfArgumentParser(TeacherArgs).parse_args_into_dataclasses(
        ["--teacher_base_url", "http://127.0.0.1:9/v1", "--teacher_concurrency", "3", "--teacher_timeout", "5"])
    assert ta.teacher_cache == DEFAULT_CACHE and ta.teacher_concurrency == 3
    cfg, cache_path = build_teacher(ta)
    assert cfg.endpoint == "http://127.0.0.1:9/v1/chat/completions" and cfg.concurrency == 3 and cfg.timeout_s == 5
    assert cache_path == DEFAULT_CACHE
    for bad in ({"teacher_concurrency": 0}, {"teacher_timeout": 0}, {"teacher_base_url": "not a url"},
                {"teacher_base_url": "ftp://x"}):
        with pytest.raises(TeacherSetupError):
            TeacherArgs(**bad)
    with pytest.raises(TeacherSetupError, match="no API key"):
        build_teacher(TeacherArgs())
    with build_teacher(TeacherArgs(teacher_offline=True), quiet=True) as t:
        assert t.offline and t.config.endpoint_id == "in-process:medqa-offline-judge"


def test_cache_key_depends_on_endpoint_and_model():
    from medqa.teacher.cache import cache_key

    k = cache_key("q", "a", "m", endpoint="http://a/v1/chat/completions")
    assert k != cache_key("q", "a", "m", endpoint="http://b/v1/chat/completions")
    assert k != cache_key("q", "a", "m2", endpoint="http://a/v1/chat/completions")


def test_teacher_package_does_not_import_rewards():
    """Data flows rewards -> teacher is wrong way round: the teacher package never imports medqa.rewards."""
    offenders = []
    for path in (ROOT / "medqa" / "teacher").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n == "medqa.rewards" or n.startswith("medqa.rewards.")]
    assert offenders == []


def test_an_auth_failure_stops_further_requests(tmp_path, capsys):
    from medqa.teacher.cli import main

    inp = _write(tmp_path / "in.jsonl", pairs(8, "auth"))
    with RunningServer(ServerOptions(port=0, fail_rate=1.0, status=401)) as srv:
        reset_stats(srv.url)
        rc = main(["score", "--input", str(inp), "--output", str(tmp_path / "o.jsonl"), "--base-url", srv.url,
                   "--concurrency", "1", "--cache", "", "--quiet"])
        assert rc == 1 and stats(srv.url)["total_requests"] == 1
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text(encoding="utf-8").splitlines()]
    assert all("HTTP 401" in r["teacher_error"] for r in rows)


def test_a_corrupt_cache_is_named_and_exits_2(tmp_path, capsys):
    from medqa.teacher.cli import main

    cache = tmp_path / "broken.sqlite"
    cache.write_bytes(b"SQLite format 3\x00" + b"\x00" * 50)  # a truncated database file
    inp = _write(tmp_path / "in.jsonl", pairs(1, "c"))
    assert main(["score", "--input", str(inp), "--output", str(tmp_path / "o.jsonl"), "--offline",
                 "--cache", str(cache), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(cache) in err and "Traceback" not in err
