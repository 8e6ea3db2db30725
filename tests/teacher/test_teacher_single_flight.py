"""Each judgement is paid for once (issue #31, item 18): under injected 429s with Retry-After, with duplicate pairs
in the input, and with two runs sharing one cache file, the endpoint answers 200 (a paid call) once per unique
pair. The early duplicate of 0b34e14 came from a second client (another `medqa teacher score`, eval, a second
run) that could not see a judgement in flight elsewhere: the cache only held finished ones."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from medqa.teacher.cache import JudgementCache
from medqa.teacher.client import TeacherConfig, score_pairs, score_pairs_async
from medqa.teacher.judge import OFFLINE_MODEL
from medqa.teacher.server import RunningServer, ServerOptions
from tests.teacher_helpers import pairs, stats

REPO = Path(__file__).resolve().parents[2]


def paid(url: str) -> dict[str, int]:
    """Requests the endpoint answered with a judgement (HTTP 200), per pair."""
    return {pid: c.get("served", 0) for pid, c in stats(url)["pairs"].items()}


def config(url: str, **kw) -> TeacherConfig:
    base = dict(base_url=url, model=OFFLINE_MODEL, concurrency=8, timeout_s=30, backoff_base_s=0.02,
                backoff_max_s=0.2, seed=0)
    return TeacherConfig(**{**base, **kw})


def rows_with_duplicates(n: int, tag: str) -> tuple[list[dict], int]:
    """`n` unique pairs, then the first third again verbatim and the next third again with other personal
    identifiers (the same pair once scrubbed): (rows, number of unique pairs as the teacher sees them)."""
    items = pairs(n, tag)
    rows = [{"id": i, "question": f"我叫张伟，电话13800138{i:03d}。{q}", "answer": a} for i, (q, a) in enumerate(items)]
    k = n // 3
    rows += [dict(r, id=f"dup{r['id']}") for r in rows[:k]]
    rows += [dict(r, id=f"pii{r['id']}", question=r["question"].replace("张伟", "李娜").replace("13800138", "13900139"))
             for r in rows[k:2 * k]]
    return rows, n


def test_two_runs_sharing_a_cache_pay_each_judgement_once_under_429(tmp_path):
    """Two `medqa teacher score` runs over the same rows (duplicates included), one cache file, an endpoint that
    answers every pair's first request 429 with Retry-After: paid calls == unique pairs, both outputs complete."""
    rows, unique = rows_with_duplicates(24, "sf")
    inp, cache = tmp_path / "in.jsonl", tmp_path / "cache.sqlite"
    inp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("DEEPSEEK_API_KEY", "MEDQA_TEACHER_API_KEY",
                                                            "MEDQA_TEACHER_BASE_URL")}
    env["PYTHONPATH"] = str(REPO)
    with RunningServer(ServerOptions(port=0, fail_first=1, status=429, retry_after=1.0)) as srv:
        procs = [subprocess.Popen([sys.executable, "-m", "medqa", "teacher", "score", "--input", str(inp),
                                   "--output", str(tmp_path / f"out{i}.jsonl"), "--base-url", srv.url,
                                   "--model", OFFLINE_MODEL, "--cache", str(cache), "--quiet"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for i in range(2)]
        outs = [p.communicate(timeout=240) for p in procs]
        for p, (_, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err[-2000:]
        calls = paid(srv.url)
        status_429 = sum(c.get("status_429", 0) for c in stats(srv.url)["pairs"].values())
    assert len(calls) == unique and status_429 == unique
    assert sum(calls.values()) == unique, f"paid {sum(calls.values())} calls for {unique} unique pairs: {calls}"
    for i in range(2):
        out = [json.loads(line) for line in (tmp_path / f"out{i}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert len(out) == len(rows) and all("teacher" in r for r in out)
    with JudgementCache(cache) as db:
        assert len(db) == unique
        assert db._db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # every claim ended


def test_one_run_shares_one_request_chain_for_identical_pairs_under_429():
    """Within one client, duplicates (verbatim and identical once scrubbed) wait for the one request chain —
    Retry-After included — instead of sending their own."""
    rows, unique = rows_with_duplicates(15, "one")
    with RunningServer(ServerOptions(port=0, fail_first=1, status=429, retry_after=0.5)) as srv:
        results, usage = score_pairs(config(srv.url), [(r["question"], r["answer"]) for r in rows])
        calls = paid(srv.url)
    assert all(r.ok for r in results)
    assert sum(calls.values()) == unique == len(calls)
    assert usage.dedup_hits == len(rows) - unique and usage.requests == 2 * unique


def test_two_clients_of_one_cache_file_pay_once(tmp_path):
    """Two clients at once in one process (as eval and a second scorer would be), same cache file: the second
    waits for the first's claim and reads the judgement from the cache."""
    items = pairs(12, "two")
    cache = str(tmp_path / "c.sqlite")

    async def both(url: str):
        return await asyncio.gather(score_pairs_async(config(url), items, cache),
                                    score_pairs_async(config(url), list(reversed(items)), cache))

    with RunningServer(ServerOptions(port=0, fail_first=1, status=429, retry_after=0.5)) as srv:
        (res_a, use_a), (res_b, use_b) = asyncio.run(both(srv.url))
        calls = paid(srv.url)
    assert all(r.ok for r in res_a + res_b)
    assert sum(calls.values()) == len(items), calls
    assert use_a.scored + use_b.scored == len(items)
    assert use_a.shared_hits + use_b.shared_hits + use_a.cache_hits + use_b.cache_hits == len(items)


def test_a_claim_left_by_a_dead_process_is_taken_over(tmp_path):
    """A run killed while judging leaves its claims; the next run sees the pid is gone and judges at once."""
    items = pairs(3, "dead")
    cache = tmp_path / "c.sqlite"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with RunningServer(ServerOptions(port=0)) as srv:
        cfg = config(srv.url)
        from medqa.teacher.client import TeacherClient

        keys = [TeacherClient(cfg).prepare(q, a)[2] for q, a in items]
        with JudgementCache(cache) as db:
            for key in keys:
                db._db.execute("INSERT INTO claims VALUES (?,?,?,?,?)",
                               (key, "killed-run", socket.gethostname(), dead.pid, time.time() + 3600))
        t0 = time.monotonic()
        results, usage = score_pairs(cfg, items, str(cache))
        assert time.monotonic() - t0 < 20
        assert all(r.ok for r in results) and usage.scored == 3 and sum(paid(srv.url).values()) == 3


def test_a_claim_given_up_without_a_judgement_is_taken_over(tmp_path):
    """Another live client holds the claim, then releases it without a row (its judgement failed): the waiting
    client judges the pair itself, once."""
    (item,) = pairs(1, "gone")
    cache = tmp_path / "c.sqlite"
    with RunningServer(ServerOptions(port=0)) as srv:
        cfg = config(srv.url)
        from medqa.teacher.client import TeacherClient

        key = TeacherClient(cfg).prepare(*item)[2]
        with JudgementCache(cache) as db:
            db._db.execute("INSERT INTO claims VALUES (?,?,?,?,?)",
                           (key, "other", socket.gethostname(), os.getpid(), time.time() + 3600))

        async def run():
            task = asyncio.ensure_future(score_pairs_async(cfg, [item], str(cache)))
            await asyncio.sleep(0.5)
            assert not task.done()  # waiting for the other client
            assert stats(srv.url)["total_requests"] == 0
            with JudgementCache(cache) as db:
                db.release_owner("other")
            return await asyncio.wait_for(task, 30)

        (result,), usage = asyncio.run(run())
        assert result.ok and usage.scored == 1 and sum(paid(srv.url).values()) == 1
