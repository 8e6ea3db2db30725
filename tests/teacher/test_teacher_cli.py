"""`medqa teacher …` end to end: resumable scoring, SIGKILL safety, bad input, the API key never written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from medqa.teacher.cache import JudgementCache
from medqa.teacher.client import TeacherConfig
from medqa.teacher.server import RunningServer, ServerOptions, pair_id
from tests.teacher_helpers import pairs, reset_stats, stats

REPO = Path(__file__).resolve().parents[2]
SECRET = "sk-medqa-test-SECRET-0123456789abcdef"


def medqa(*args: str, env_extra: dict | None = None, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_API_KEY", "MEDQA_TEACHER_API_KEY")}
    env.update(PYTHONPATH=str(REPO), **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "medqa", *args], capture_output=True, text=True, env=env,
                          timeout=120, **kw)


def write_input(path: Path, items) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i, (q, a) in enumerate(items):
            row = {"question": q, "answer": a} if i % 2 else {"input": q, "output": a, "id": i}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def test_score_resume_and_api_key_never_written(tmp_path):
    items = pairs(6, "cli")
    inp, out, cache = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "cache.sqlite"
    write_input(inp, items)
    # Every pair fails once with HTTP 500 first: retried, then scored.
    with RunningServer(ServerOptions(port=0, fail_first=1, status=500)) as srv:
        env = {"MEDQA_TEACHER_API_KEY": SECRET}
        args = ["teacher", "score", "--input", str(inp), "--output", str(out), "--base-url", srv.url,
                "--model", "judge-x", "--cache", str(cache), "--concurrency", "4"]
        r = medqa(*args, env_extra=env)
        assert r.returncode == 0, r.stderr
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
        assert len(rows) == 6 and all(row["teacher"]["requested_model"] == "judge-x" for row in rows)
        # the server said who judged: the offline judge, and the rows say so
        assert all(row["teacher"]["model"] == "medqa-offline-judge-v1" and row["teacher"]["offline"] for row in rows)
        assert rows[0]["id"] == 0 and "input" in rows[0] and set(rows[1]["teacher"]["scores"]) == {
            "safety", "reasoning", "completeness", "empathy"}
        reset_stats(srv.url)
        r2 = medqa(*args, env_extra=env)
        assert r2.returncode == 0 and stats(srv.url)["total_requests"] == 0  # resumed: nothing re-judged
    # A failing endpoint: explicit teacher_error rows, exit 1, no cache rows for them.
    with RunningServer(ServerOptions(port=0, fail_rate=1.0, status=500)) as bad:
        out2 = tmp_path / "out2.jsonl"
        r3 = medqa("teacher", "score", "--input", str(inp), "--output", str(out2), "--base-url", bad.url,
                   "--model", "judge-y", "--cache", str(cache), "--max-retries", "1", env_extra=env)
        assert r3.returncode == 1
        assert all("teacher_error" in json.loads(line) for line in out2.read_text(encoding="utf-8").splitlines())
        export = tmp_path / "export.jsonl"
        assert medqa("teacher", "export-cache", "--cache", str(cache), "--output", str(export)).returncode == 0
        exported = [json.loads(line) for line in export.read_text(encoding="utf-8").splitlines()]
        assert len(exported) == 6 and {"question", "answer", "scores", "overall_score", "critique", "model"} <= set(exported[0])
        assert all(e["requested_model"] == "judge-x" for e in exported)
    written = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    logs = r.stdout + r.stderr + r2.stdout + r2.stderr + r3.stdout + r3.stderr
    assert SECRET.encode() not in written and SECRET not in logs
    assert len(list(tmp_path.rglob("*"))) >= 4


def test_bad_input_exits_2_with_file_line_field(tmp_path):
    inp = tmp_path / "bad.jsonl"
    inp.write_text('{"question": "q", "answer": "a"}\n{"question": "q2"}\n', encoding="utf-8")
    r = medqa("teacher", "score", "--input", str(inp), "--output", str(tmp_path / "o.jsonl"), "--offline")
    assert r.returncode == 2 and f"{inp}:2: answer: missing" in r.stderr
    inp.write_text('{"question": "q", "answer": "a"}\nnot json\n', encoding="utf-8")
    r = medqa("teacher", "score", "--input", str(inp), "--output", str(tmp_path / "o.jsonl"), "--offline")
    assert r.returncode == 2 and f"{inp}:2: malformed JSON" in r.stderr


def test_no_key_no_base_url_refuses_instead_of_mocking(tmp_path):
    inp = tmp_path / "in.jsonl"
    write_input(inp, pairs(1))
    r = medqa("teacher", "score", "--input", str(inp), "--output", str(tmp_path / "o.jsonl"))
    assert r.returncode != 0 and "no API key" in r.stderr and not (tmp_path / "o.jsonl").exists()


def test_offline_flag_is_loud_and_labels_rows(tmp_path):
    inp, out = tmp_path / "in.jsonl", tmp_path / "o.jsonl"
    write_input(inp, pairs(2))
    r = medqa("teacher", "score", "--input", str(inp), "--output", str(out), "--offline", "--cache",
              str(tmp_path / "c.sqlite"))
    assert r.returncode == 0 and "OFFLINE JUDGE" in r.stderr
    assert all(json.loads(x)["teacher"]["model"] == "medqa-offline-judge-v1" for x in out.read_text().splitlines())


def test_sigkill_loses_no_paid_judgement(tmp_path):
    items = pairs(12, "kill")
    inp, out, db = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "cache.sqlite"
    write_input(inp, items)
    env = {k: v for k, v in os.environ.items()}
    env["PYTHONPATH"] = str(REPO)
    with RunningServer(ServerOptions(port=0, latency_ms=250)) as srv:
        args = [sys.executable, "-m", "medqa", "teacher", "score", "--input", str(inp), "--output", str(out),
                "--base-url", srv.url, "--model", "judge-k", "--cache", str(db), "--concurrency", "2", "--quiet"]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_bytes().splitlines()) >= 4:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(0.4)  # let the server finish the requests that were in flight
        with JudgementCache(db) as cache:
            assert cache.integrity_ok()
            paid_before = {(j.question, j.answer) for j in cache if j.requested_model == "judge-k"}
        assert 4 <= len(paid_before) < 12, "kill did not land mid-run"
        served_before = {k: v.get("served", 0) for k, v in stats(srv.url)["pairs"].items()}
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        after = stats(srv.url)["pairs"]
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 12 and all("teacher" in row for row in rows)
    for q, a in items:
        pid = pair_id(q, a)
        extra = after.get(pid, {}).get("served", 0) - served_before.get(pid, 0)
        if (q, a) in paid_before:
            assert extra == 0, "a judgement already received was paid again"
        assert after[pid]["served"] <= 2  # at most the request in flight at the kill is repeated
    assert sum(v["served"] for v in after.values()) <= 12 + 2  # concurrency 2: at most two lost in flight


def test_config_from_env_reads_key_only_from_env(monkeypatch):
    monkeypatch.delenv("MEDQA_TEACHER_API_KEY", raising=False)
    monkeypatch.setenv("DEEPSEEK_API_KEY", SECRET)
    cfg = TeacherConfig.from_env()
    assert cfg.api_key.reveal() == SECRET and SECRET not in repr(cfg)
    assert cfg.endpoint == "https://api.deepseek.com/v1/chat/completions"
    assert TeacherConfig(base_url="http://x/v1").endpoint == "http://x/v1/chat/completions"


def test_check_uses_offline_judge_loudly_without_key():
    r = medqa("teacher", "check", "--n", "3", "--input", "/nonexistent.jsonl")
    assert r.returncode == 0, r.stderr
    assert "OFFLINE" in r.stderr and r.stdout.count("overall") == 3


def test_rules_doc_command(tmp_path):
    path = tmp_path / "rules.md"
    assert medqa("rewards", "--write", "--path", str(path)).returncode == 0
    assert medqa("rewards", "--check", "--path", str(path)).returncode == 0
