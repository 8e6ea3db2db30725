"""A judgement cache write-locked by another process (issue #31, item 13): one line that names the file and says
what to do, every judgement kept and written to the output, and cached at the end when the lock is gone."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from medqa.teacher.cache import JudgementCache
from medqa.teacher.client import TeacherConfig, score_pairs
from medqa.teacher.judge import OFFLINE_MODEL
from medqa.teacher.server import RunningServer, ServerOptions
from tests.teacher_helpers import pairs

BUSY_S = 0.5  # the test's busy timeout (the default is 30 s)

HOLD = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes stdin
db.execute("COMMIT")
"""


class LockHolder:
    """Another process holding `BEGIN EXCLUSIVE` on the cache file until `release()`."""

    def __init__(self, path: Path):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(30)

    def __enter__(self) -> LockHolder:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


@pytest.fixture
def cache_file(tmp_path) -> Path:
    path = tmp_path / "cache.sqlite"
    JudgementCache(path).close()  # an existing, up-to-date cache
    return path


def lock_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "locked by another process" in r.getMessage()]


def test_a_locked_cache_loses_no_judgement_and_says_so_once(cache_file, caplog):
    items = pairs(8, "lock")
    caplog.set_level(logging.WARNING, logger="medqa.teacher")
    with RunningServer(ServerOptions(port=0)) as srv, LockHolder(cache_file):
        cfg = TeacherConfig(base_url=srv.url, model=OFFLINE_MODEL, timeout_s=30, cache_busy_timeout_s=BUSY_S)
        results, usage = score_pairs(cfg, items, str(cache_file))
    assert all(r.ok for r in results) and usage.scored == 8
    assert usage.cache_unwritten == 8  # still locked when the run ended: in the results, not in the cache
    lines = lock_lines(caplog)
    assert len(lines) == 2, lines  # when it gave up waiting, and what was left uncached at the end
    assert str(cache_file) in lines[0] and "\n" not in lines[0] and "end the other process's transaction" in lines[0]
    with JudgementCache(cache_file) as db:
        assert len(db) == 0


def test_judgements_kept_while_locked_are_cached_when_the_lock_ends(cache_file, caplog):
    """The lock ends before the client closes: what was kept in memory is written then."""
    import asyncio

    from medqa.teacher.cache import JudgementCache as Cache
    from medqa.teacher.client import TeacherClient

    items = pairs(5, "later")
    with RunningServer(ServerOptions(port=0)) as srv:
        cfg = TeacherConfig(base_url=srv.url, model=OFFLINE_MODEL, timeout_s=30, cache_busy_timeout_s=BUSY_S)

        async def run(holder: LockHolder):
            cache = Cache(cache_file)
            try:
                async with TeacherClient(cfg, cache) as client:
                    results = await client.judge_many(items)
                    assert client.cache_unavailable and "locked" in client.cache_unavailable
                    holder.release()
                return results, client.usage
            finally:
                cache.close()

        with LockHolder(cache_file) as holder:
            results, usage = asyncio.run(run(holder))
    assert all(r.ok for r in results) and usage.cache_unwritten == 0
    with JudgementCache(cache_file) as db:
        assert len(db) == 5


def test_teacher_score_writes_its_output_under_a_locked_cache(cache_file, tmp_path, caplog, monkeypatch):
    """`medqa teacher score` with the cache locked for longer than its busy timeout: exit 0, every row judged in
    the output, one warning line naming the cache file (no sqlite3.OperationalError traceback)."""
    import medqa.teacher.client as client_mod
    from medqa.teacher.cli import main

    real = client_mod.score_pairs_async

    async def with_short_timeout(cfg, *args, **kw):  # the test's busy timeout instead of the default 30 s
        return await real(dataclasses.replace(cfg, cache_busy_timeout_s=BUSY_S), *args, **kw)

    monkeypatch.setattr(client_mod, "score_pairs_async", with_short_timeout)
    items = pairs(6, "cli-lock")
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"question": q, "answer": a}, ensure_ascii=False) + "\n" for q, a in items),
                   encoding="utf-8")
    caplog.set_level(logging.WARNING, logger="medqa.teacher")
    with RunningServer(ServerOptions(port=0)) as srv, LockHolder(cache_file):
        rc = main(["score", "--input", str(inp), "--output", str(out), "--base-url", srv.url, "--model",
                   OFFLINE_MODEL, "--cache", str(cache_file), "--quiet"])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 6 and all("teacher" in r for r in rows)
    lines = lock_lines(caplog)
    assert lines and all(str(cache_file) in line for line in lines)
