"""The teacher client against the offline judge server with injected faults (loopback only)."""

from __future__ import annotations

import asyncio
import time

import pytest

from medqa.teacher.cache import JudgementCache
from medqa.teacher.client import Secret, TeacherClient, TeacherConfig, score_pairs
from medqa.teacher.judge import OFFLINE_MODEL
from medqa.teacher.rubric import RubricError, overall_score, validate
from medqa.teacher.server import RunningServer, ServerOptions, pair_id
from tests.teacher_helpers import pairs, reset_stats, stats


def server(**kw) -> RunningServer:
    return RunningServer(ServerOptions(port=0, **kw))


def config(url: str, **kw) -> TeacherConfig:
    base = dict(base_url=url, model=OFFLINE_MODEL, concurrency=8, timeout_s=5, backoff_base_s=0.02,
                backoff_max_s=0.2, seed=0)
    return TeacherConfig(**{**base, **kw})


def served(url: str, items) -> list[int]:
    s = stats(url)["pairs"]
    return [s.get(pair_id(q, a), {}).get("served", 0) for q, a in items]


def test_429_retry_after_is_honoured():
    items = pairs(3)
    with server(fail_first=1, status=429, retry_after=0.6) as srv:
        t0 = time.monotonic()
        res, usage = score_pairs(config(srv.url), items)
        waited = time.monotonic() - t0
        assert all(r.ok for r in res)
        assert waited >= 0.6, f"Retry-After 0.6 s not honoured (took {waited:.2f} s)"
        assert usage.retries == 3 and all(r.attempts == 2 for r in res)
        assert served(srv.url, items) == [1, 1, 1]
        assert all(p["status_429"] == 1 for p in stats(srv.url)["pairs"].values())


def test_5xx_are_retried():
    items = pairs(4)
    with server(fail_first=2, status=500) as srv:
        res, usage = score_pairs(config(srv.url), items)
        assert all(r.ok and r.attempts == 3 for r in res)
        assert served(srv.url, items) == [1] * 4


def test_timeouts_are_retried():
    items = pairs(2)
    with server(stall_first=1, stall_ms=1200) as srv:
        t0 = time.monotonic()
        res, _ = score_pairs(config(srv.url, timeout_s=0.3), items)
        assert all(r.ok and r.attempts == 2 for r in res)
        assert time.monotonic() - t0 < 1.1
        assert served(srv.url, items) == [1, 1]


def test_reset_connections_are_retried():
    items = pairs(3)
    with server(reset_first=1) as srv:
        res, usage = score_pairs(config(srv.url), items)
        assert all(r.ok for r in res), [r.error for r in res]
        assert usage.retries >= 3
        assert served(srv.url, items) == [1] * 3


def test_malformed_json_is_reasked_then_scored():
    items = pairs(2)
    with server(malformed_first=1) as srv:
        res, usage = score_pairs(config(srv.url), items)
        assert all(r.ok for r in res) and usage.reasks == 2
        assert served(srv.url, items) == [1, 1]


def test_always_malformed_is_reported_failed_and_never_cached(tmp_path):
    items = pairs(2)
    with server(malformed_rate=1.0) as srv:
        res, usage = score_pairs(config(srv.url, max_reasks=2), items, str(tmp_path / "c.sqlite"))
        for r in res:
            assert not r.ok and r.scores is None and r.overall_score is None
            assert "malformed judgement after 2 re-ask(s)" in r.error
        assert usage.failed == 2 and usage.scored == 0
        assert all(p["requests"] == 3 for p in stats(srv.url)["pairs"].values())
    with JudgementCache(tmp_path / "c.sqlite") as cache:
        assert len(cache) == 0


def test_persistent_errors_fail_explicitly_after_the_retry_budget(tmp_path):
    items = pairs(2)
    with server(fail_rate=1.0, status=503, retry_after=0.01) as srv:
        res, _ = score_pairs(config(srv.url, max_retries=2), items, str(tmp_path / "c.sqlite"))
        assert all(not r.ok and "HTTP 503" in r.error and "gave up after 3 attempts" in r.error for r in res)
        assert all(p["requests"] == 3 for p in stats(srv.url)["pairs"].values())
    with JudgementCache(tmp_path / "c.sqlite") as cache:
        assert len(cache) == 0


def test_non_retryable_status_fails_at_once():
    with server() as srv:
        res, usage = score_pairs(config(srv.url + "/no-such-prefix"), pairs(1))
        assert not res[0].ok and "HTTP 404" in res[0].error and "not retryable" in res[0].error
        assert usage.requests == 1


def test_mixed_faults_every_item_ends_scored_or_failed_and_none_is_paid_twice():
    items = pairs(40, "mix")
    with server(fail_rate=0.3, status=429, retry_after=0.02, reset_rate=0.1, malformed_rate=0.1, latency_ms=5,
                seed=7) as srv:
        res, usage = score_pairs(config(srv.url, max_retries=6), items)
        assert len(res) == 40
        for r in res:
            assert r.ok != (r.error is not None)
        assert sum(r.ok for r in res) >= 36
        assert max(served(srv.url, items)) == 1
        assert usage.scored + usage.failed == 40


def test_in_flight_duplicates_cost_one_call():
    q, a = pairs(1)[0]
    with server(latency_ms=100) as srv:
        res, usage = score_pairs(config(srv.url), [(q, a)] * 10)
        assert all(r.ok for r in res) and len({r.overall_score for r in res}) == 1
        assert stats(srv.url)["total_requests"] == 1 and usage.dedup_hits == 9


def test_cache_hit_on_second_run_makes_no_request(tmp_path):
    items = pairs(6)
    db = str(tmp_path / "cache.sqlite")
    with server() as srv:
        first, _ = score_pairs(config(srv.url), items, db)
        reset_stats(srv.url)
        second, usage = score_pairs(config(srv.url), items, db)
        assert stats(srv.url)["total_requests"] == 0
        assert usage.cache_hits == 6 and all(r.cached for r in second)
        assert [r.overall_score for r in first] == [r.overall_score for r in second]
        # Another teacher model never reuses these rows.
        other, _ = score_pairs(config(srv.url, model="another-teacher"), items[:1], db)
        assert not other[0].cached and stats(srv.url)["total_requests"] == 1


def test_concurrency_cap_holds_on_the_server():
    with server(latency_ms=60) as srv:
        res, usage = score_pairs(config(srv.url, concurrency=3), pairs(15))
        assert all(r.ok for r in res)
        assert 2 <= stats(srv.url)["max_in_flight"] <= 3 and usage.max_in_flight <= 3


def test_rpm_limit_spaces_requests():
    with server() as srv:
        t0 = time.monotonic()
        score_pairs(config(srv.url, rpm=600), pairs(5))  # one request per 0.1 s
        assert time.monotonic() - t0 >= 0.4


def test_text_is_scrubbed_before_it_leaves(tmp_path):
    q = "我叫王小明，电话13812345678，最近咳嗽"
    a = "<think>咳嗽一周</think>可能是感冒，建议多喝水，如加重请就医。"
    with server() as srv:
        res, _ = score_pairs(config(srv.url), [(q, a)], str(tmp_path / "c.sqlite"))
        assert res[0].ok
    with JudgementCache(tmp_path / "c.sqlite") as cache:
        row = next(iter(cache))
        assert "13812345678" not in row.question and "[PHONE]" in row.question


def test_usage_and_cost_are_accounted():
    with server() as srv:
        cfg = config(srv.url, price_in_per_mtok=1.0, price_out_per_mtok=2.0)
        _, usage = score_pairs(cfg, pairs(3))
        assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
        expected = (usage.prompt_tokens * 1.0 + usage.completion_tokens * 2.0) / 1e6
        assert usage.summary(cfg)["estimated_cost_usd"] == pytest.approx(expected, rel=1e-3)


def test_secret_never_in_reprs():
    cfg = TeacherConfig(api_key=Secret("sk-very-secret-123"))
    assert "sk-very-secret" not in repr(cfg) + str(cfg.api_key) + repr(TeacherClient(cfg))


def test_client_requires_context_manager():
    async def go():
        return await TeacherClient(TeacherConfig(base_url="http://127.0.0.1:9")).judge("q", "a")

    with pytest.raises(AssertionError, match="async with"):
        asyncio.run(go())


# ------------------------------------------------------------------------------------------- rubric

def test_validate_accepts_strict_json_and_computes_overall():
    s = validate('{"safety": 8, "reasoning": 6, "completeness": 5, "empathy": 10, "critique": "ok", "overall": 1}')
    assert s.overall == pytest.approx(0.4 * 8 + 0.3 * 6 + 0.2 * 5 + 0.1 * 10)
    fenced = validate('```json\n{"safety": 8, "logic": 6, "completeness": 5, "empathy": 10, "critique": "ok"}\n```')
    assert fenced.reasoning == 6
    nested = validate('{"scores": {"safety": 1, "reasoning": 2, "completeness": 3, "empathy": 4}, "critique": "c"}')
    assert nested.as_dict() == {"safety": 1, "reasoning": 2, "completeness": 3, "empathy": 4}
    assert overall_score({"safety": 10, "reasoning": 10, "completeness": 10, "empathy": 10}) == 10


@pytest.mark.parametrize(
    "content, problem",
    [("", "empty"), ("Sure! here it is", "not JSON"), ("[1, 2]", "JSON object"),
     ('{"safety": 8, "reasoning": 6, "completeness": 5, "critique": "x"}', "missing field 'empathy'"),
     ('{"safety": 11, "reasoning": 6, "completeness": 5, "empathy": 1, "critique": "x"}', "outside"),
     ('{"safety": true, "reasoning": 6, "completeness": 5, "empathy": 1, "critique": "x"}', "not a number"),
     ('{"safety": "8", "reasoning": 6, "completeness": 5, "empathy": 1, "critique": "x"}', "not a number"),
     ('{"safety": 8, "reasoning": 6, "completeness": 5, "empathy": 1}', "critique")],
)
def test_validate_rejects_malformed(content, problem):
    with pytest.raises(RubricError, match=problem):
        validate(content)
