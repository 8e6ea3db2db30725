"""Asynchronous OpenAI-compatible teacher client (asyncio + aiohttp).

One `ClientSession` with a pooled connector; a semaphore caps the requests in flight; an optional
requests-per-minute limiter spaces request starts; each request has a timeout; 429, 408, 5xx, timeouts and
connection errors are retried with exponential backoff and full jitter, honouring `Retry-After`. The reply
is validated strictly (`rubric.validate`) with a bounded re-ask on malformed output; the overall score is
computed here from the sub-scores. A judgement is paid for once (single flight, keyed by the cache key): the
same pair requested twice at once in one client shares one request chain (retries and Retry-After waits
included), a pair already in the cache costs none, and a pair another client or process is judging through the
same cache file right now (its claim, `medqa.teacher.cache`) is waited for, not sent again. Token usage and an
estimated cost are counted.

Failure policy: an item that still fails is returned with `error` set and no scores — never a made-up score —
and nothing is written to the cache for it. Texts are scrubbed of personal identifiers before they are sent.
The API key lives in a `Secret` whose repr hides it; error messages are redacted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from medqa.teacher.cache import (
    CachedJudgement,
    CachedRow,
    CachedTriage,
    CacheWriter,
    JudgementCache,
    cache_key,
    triage_key,
)
from medqa.teacher.protocol import (
    DEFAULT_BASE_URL,
    DEFAULT_MODEL,
    KEY_ENV_VARS,
    OFFLINE_FINGERPRINT,
    OFFLINE_HEADER,
    check_auth,
    check_base_url,
)
from medqa.teacher.rubric import RUBRIC_VERSION, RubricError, build_messages, reask_messages, validate
from medqa.teacher.triage import (
    TRIAGE_RUBRIC_VERSION,
    TriageError,
    triage_messages,
    triage_reask_messages,
    validate_triage,
)
from medqa.text.pii import scrub

log = logging.getLogger("medqa.teacher")

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
AUTH_STATUS = frozenset({401, 403})  # a bad key: no later request can succeed either
# Reply header (and system_fingerprint) by which the offline heuristic judge identifies itself however it is reached.


class Secret:
    """Holds the API key; `repr`/`str` never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def api_key_from_env(env: dict[str, str] | None = None) -> Secret | None:
    env = os.environ if env is None else env
    for name in KEY_ENV_VARS:
        if env.get(name):
            return Secret(env[name])
    return None


@dataclass(frozen=True)
class TeacherConfig:
    base_url: str = DEFAULT_BASE_URL
    model: str = DEFAULT_MODEL
    api_key: Secret | None = field(default=None, repr=False)
    concurrency: int = 16  # max requests in flight (semaphore and connection pool)
    rpm: float | None = None  # optional requests-per-minute limit
    timeout_s: float = 60.0  # per request
    max_retries: int = 5  # transport retries per request (so up to max_retries + 1 attempts)
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0  # cap on a server's Retry-After
    max_reasks: int = 2  # re-asks after a malformed judgement
    temperature: float = 0.0
    max_tokens: int = 512
    json_mode: bool = True  # response_format={"type": "json_object"}
    price_in_per_mtok: float = 0.27  # USD per million prompt tokens (deepseek-chat list price; an estimate)
    price_out_per_mtok: float = 1.10  # USD per million completion tokens
    scrub_pii: bool = True
    seed: int | None = None  # jitter RNG seed (tests)
    endpoint_label: str | None = None  # recorded instead of the URL (the in-process offline judge's random port)
    cache_busy_timeout_s: float = 30.0  # wait for another process's cache write lock, then go on without the cache
    claim_poll_s: float = 0.2  # how often a client waiting for another's judgement of the same pair looks again

    def __post_init__(self) -> None:
        check_base_url(self.base_url)
        check_auth(self.base_url, bool(self.api_key))  # key or user:password, never both (one Authorization)
        if not self.model:
            raise ValueError("teacher model must be a non-empty name")
        if self.concurrency < 1:
            raise ValueError(f"teacher concurrency must be >= 1 (got {self.concurrency})")
        if not self.timeout_s > 0:
            raise ValueError(f"teacher timeout must be > 0 seconds (got {self.timeout_s})")
        if self.rpm is not None and not self.rpm > 0:
            raise ValueError(f"teacher rpm must be > 0 (got {self.rpm})")
        if self.max_retries < 0 or self.max_reasks < 0:
            raise ValueError("teacher max_retries and max_reasks must be >= 0")

    @classmethod
    def from_env(cls, **overrides: Any) -> TeacherConfig:
        """Defaults + overrides whose value is not None; the key from MEDQA_TEACHER_API_KEY or DEEPSEEK_API_KEY."""
        kwargs = {k: v for k, v in overrides.items() if v is not None}
        kwargs.setdefault("api_key", api_key_from_env())
        return cls(**kwargs)

    @property
    def endpoint(self) -> str:
        base = self.base_url.rstrip("/")
        if base.endswith("/chat/completions"):
            return base
        return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")

    @property
    def endpoint_id(self) -> str:
        """The endpoint as recorded in caches and outputs: no user:password, query or fragment."""
        from medqa.teacher.protocol import public_url

        return self.endpoint_label or public_url(self.endpoint)

    @property
    def claim_ttl_s(self) -> float:
        """The longest one judgement may take (every attempt timing out after the longest wait, every re-ask):
        a claim older than that is stale even if its owner's pid still runs."""
        per_attempt = self.timeout_s + max(self.backoff_max_s, self.max_retry_after_s)
        return (self.max_reasks + 1) * (self.max_retries + 1) * per_attempt + 60.0


@dataclass(frozen=True)
class TeacherResult:
    """One judgement, or an explicit failure (`error` set, no scores). `model` is the model that judged (as the
    server reported it); `requested_model` what was asked for; `offline` marks the offline heuristic judge."""

    key: str
    model: str
    scores: dict[str, float] | None = None
    overall_score: float | None = None
    critique: str | None = None
    cached: bool = False
    error: str | None = None
    attempts: int = 0  # HTTP requests made for this item by this call (0 for a cache hit)
    requested_model: str = ""
    endpoint: str = ""
    offline: bool = False
    needs_emergency: bool | None = None  # the teacher's second opinion on the question, when it gave one

    @property
    def ok(self) -> bool:
        return self.error is None and self.scores is not None

    def teacher_field(self) -> dict[str, Any]:
        """The `teacher` object of an output row."""
        out = {"scores": self.scores, "overall_score": self.overall_score, "critique": self.critique,
               "model": self.model, "requested_model": self.requested_model or self.model, "endpoint": self.endpoint,
               "offline": self.offline, "rubric_version": RUBRIC_VERSION, "cached": self.cached}
        if self.needs_emergency is not None:
            out["needs_emergency"] = self.needs_emergency
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"teacher": self.teacher_field()} if self.ok else {"teacher_error": self.error}


@dataclass(frozen=True)
class TriageResult:
    """One triage of a question (`medqa.teacher.triage`), or an explicit failure (`error` set, no label).
    `model` is the model that triaged (as the server reported it); `offline` marks the offline heuristic judge."""

    key: str
    model: str
    emergency: bool | None = None
    category: str | None = None
    reason: str | None = None
    cached: bool = False
    error: str | None = None
    attempts: int = 0  # HTTP requests made for this question by this call (0 for a cache hit)
    requested_model: str = ""
    endpoint: str = ""
    offline: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.emergency is not None

    def teacher_field(self) -> dict[str, Any]:
        return {"emergency": self.emergency, "category": self.category, "reason": self.reason, "model": self.model,
                "requested_model": self.requested_model or self.model, "endpoint": self.endpoint,
                "offline": self.offline, "rubric_version": TRIAGE_RUBRIC_VERSION, "cached": self.cached}


@dataclass
class Usage:
    """Counters of one client (not global): requests, retries, re-asks, tokens, cost, outcomes."""

    requests: int = 0
    retries: int = 0
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    dedup_hits: int = 0  # shared with an identical judgement in flight in this client
    shared_hits: int = 0  # judged meanwhile by another client of the same cache file, which this one waited for
    cache_unwritten: int = 0  # judgements not in the cache at the end: its file stayed write-locked by another process
    scored: int = 0
    failed: int = 0
    max_in_flight: int = 0

    def cost_usd(self, config: TeacherConfig) -> float:
        return (self.prompt_tokens * config.price_in_per_mtok + self.completion_tokens * config.price_out_per_mtok) / 1e6

    def summary(self, config: TeacherConfig) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["estimated_cost_usd"] = round(self.cost_usd(config), 6)
        return d


class TeacherError(RuntimeError):
    """A request that failed for good (after retries, or a non-retryable status)."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


@dataclass
class _Reply:
    content: str
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    model: str = ""  # as the server reported it
    offline: bool = False


class _RateLimiter:
    def __init__(self, rpm: float):
        self.interval = 60.0 / rpm
        self.next = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class _Judgement:
    """Judging a (question, answer) pair with the rubric: what differs from a triage. The request, retry, re-ask,
    single-flight and cache path is the same for both (`TeacherClient._judge_prepared`)."""

    errors: tuple[type[Exception], ...] = (RubricError,)
    noun = "judgement"

    @staticmethod
    def messages(q: str, a: str) -> list[dict[str, str]]:
        return build_messages(q, a)

    @staticmethod
    def reask(messages: list[dict[str, str]], content: str, problem: str) -> list[dict[str, str]]:
        return reask_messages(messages, content, problem)

    @staticmethod
    def parse(content: str) -> Any:
        return validate(content)

    @staticmethod
    def result(key: str, served: str, parsed: Any, attempts: int, config: TeacherConfig,
               offline: bool) -> TeacherResult:
        return TeacherResult(key, served, parsed.as_dict(), parsed.overall, parsed.critique, attempts=attempts,
                             requested_model=config.model, endpoint=config.endpoint_id, offline=offline,
                             needs_emergency=parsed.needs_emergency)

    @staticmethod
    def row(key: str, served: str, q: str, a: str, parsed: Any, tokens: tuple[int, int], config: TeacherConfig,
            offline: bool) -> CachedJudgement:
        return CachedJudgement(key, RUBRIC_VERSION, served, q, a, parsed.as_dict(), parsed.overall, parsed.critique,
                               tokens[0], tokens[1], config.endpoint_id, config.model, offline, parsed.needs_emergency)

    @staticmethod
    def failure(key: str, config: TeacherConfig, error: str, attempts: int) -> TeacherResult:
        return TeacherResult(key, config.model, error=error, attempts=attempts, requested_model=config.model,
                             endpoint=config.endpoint_id)

    @staticmethod
    def from_cache(key: str, hit: CachedRow) -> TeacherResult:
        assert isinstance(hit, CachedJudgement)
        return TeacherResult(key, hit.model, hit.scores, hit.overall_score, hit.critique, cached=True,
                             requested_model=hit.requested_model, endpoint=hit.endpoint, offline=hit.offline,
                             needs_emergency=hit.needs_emergency)


class _Triage:
    """Triaging a question (`medqa.teacher.triage`): its prompt, validation, result and cache row; the answer
    slot of the shared path is empty."""

    errors: tuple[type[Exception], ...] = (TriageError,)
    noun = "triage"

    @staticmethod
    def messages(q: str, a: str) -> list[dict[str, str]]:
        return triage_messages(q)

    @staticmethod
    def reask(messages: list[dict[str, str]], content: str, problem: str) -> list[dict[str, str]]:
        return triage_reask_messages(messages, content, problem)

    @staticmethod
    def parse(content: str) -> Any:
        return validate_triage(content)

    @staticmethod
    def result(key: str, served: str, parsed: Any, attempts: int, config: TeacherConfig,
               offline: bool) -> TriageResult:
        return TriageResult(key, served, parsed.emergency, parsed.category, parsed.reason, attempts=attempts,
                            requested_model=config.model, endpoint=config.endpoint_id, offline=offline)

    @staticmethod
    def row(key: str, served: str, q: str, a: str, parsed: Any, tokens: tuple[int, int], config: TeacherConfig,
            offline: bool) -> CachedTriage:
        return CachedTriage(key, TRIAGE_RUBRIC_VERSION, served, q, parsed.emergency, parsed.category, parsed.reason,
                            tokens[0], tokens[1], config.endpoint_id, config.model, offline)

    @staticmethod
    def failure(key: str, config: TeacherConfig, error: str, attempts: int) -> TriageResult:
        return TriageResult(key, config.model, error=error, attempts=attempts, requested_model=config.model,
                            endpoint=config.endpoint_id)

    @staticmethod
    def from_cache(key: str, hit: CachedRow) -> TriageResult:
        assert isinstance(hit, CachedTriage)
        return TriageResult(key, hit.model, hit.emergency, hit.category, hit.reason, cached=True,
                            requested_model=hit.requested_model, endpoint=hit.endpoint, offline=hit.offline)


_Task = _Judgement | _Triage
_JUDGEMENT, _TRIAGE = _Judgement(), _Triage()


class TeacherClient:
    """`async with TeacherClient(config, cache) as c: results = await c.judge_many(pairs)`."""

    def __init__(self, config: TeacherConfig, cache: JudgementCache | None = None,
                 on_result: Callable[[int, TeacherResult], None] | None = None):
        self.config = config
        self.cache = cache
        self.usage = Usage()
        self._on_result = on_result
        self._rng = random.Random(config.seed)
        self._inflight: dict[str, asyncio.Future[TeacherResult]] = {}
        self._in_flight_now = 0
        self._session: Any = None
        self._sem: asyncio.Semaphore | None = None
        self._rate: _RateLimiter | None = None
        self._writer: CacheWriter | None = None
        self._auth_error: str | None = None  # set by a 401/403: every later request fails at once

    def __repr__(self) -> str:
        return f"TeacherClient(endpoint={self.config.endpoint_id!r}, model={self.config.model!r})"

    async def __aenter__(self) -> TeacherClient:
        import aiohttp

        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key.reveal()}"
        connector = aiohttp.TCPConnector(limit=self.config.concurrency, limit_per_host=self.config.concurrency,
                                         ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector, headers=headers)
        self._sem = asyncio.Semaphore(self.config.concurrency)
        self._rate = _RateLimiter(self.config.rpm) if self.config.rpm else None
        self._writer = (CacheWriter(self.cache.path, claim_ttl_s=self.config.claim_ttl_s,
                                    busy_timeout_s=self.config.cache_busy_timeout_s)
                        if self.cache is not None else None)
        return self

    @property
    def cache_unavailable(self) -> str | None:
        """Why this client stopped writing to its cache file (another process held its write lock), or None."""
        return self._writer.unavailable if self._writer is not None else None

    async def __aexit__(self, *exc: Any) -> None:
        if self._writer is not None:
            await self._writer.aclose()
            self.usage.cache_unwritten = len(self._writer.unwritten)
            self._writer = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -------------------------------------------------------------------------------------------- public

    def prepare(self, question: str, answer: str) -> tuple[str, str, str]:
        """(scrubbed question, scrubbed answer, cache key) — what is sent and what the cache is keyed on."""
        if self.config.scrub_pii:
            question, answer = scrub(question), scrub(answer)
        return question, answer, cache_key(question, answer, self.config.model, endpoint=self.config.endpoint_id)

    async def judge(self, question: str, answer: str) -> TeacherResult:
        q, a, key = self.prepare(question, answer)
        return await self._judge_prepared(q, a, key, self.cache.get(key) if self.cache is not None else None)

    def prepare_triage(self, question: str) -> tuple[str, str]:
        """(scrubbed question, triage cache key) — what is sent and what the cache is keyed on."""
        if self.config.scrub_pii:
            question = scrub(question)
        return question, triage_key(question, self.config.model, endpoint=self.config.endpoint_id)

    async def _judge_prepared(self, q: str, a: str, key: str, hit: CachedRow | None,
                              task: _Task = _JUDGEMENT) -> Any:
        if hit is not None:
            self.usage.cache_hits += 1
            return task.from_cache(key, hit)
        pending = self._inflight.get(key)
        if pending is not None:
            self.usage.dedup_hits += 1
            res = await asyncio.shield(pending)
            return replace(res, attempts=0)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            res = await self._single_flight(key, q, a, task)
            fut.set_result(res)
            return res
        except BaseException:
            fut.cancel()
            raise
        finally:
            del self._inflight[key]

    async def _single_flight(self, key: str, q: str, a: str, task: _Task) -> Any:
        """Judge `key` once across every client of the cache file: claim it, or wait for the client that has."""
        if self._writer is None:
            return await self._judge_uncached(key, q, a, task)
        while True:
            state, row = await self._writer.claim(key)
            if state == "row":  # stored by another client since this batch read the cache
                self.usage.cache_hits += 1
                return task.from_cache(key, row)
            if state == "mine":
                stored = False
                try:
                    res = await self._judge_uncached(key, q, a, task)
                    stored = res.ok  # a stored judgement ends the claim in the same transaction
                    return res
                finally:
                    if not stored:  # failed or cancelled: let another client try
                        await asyncio.shield(self._writer.release(key))
            row = await self._wait_for_other(key)
            if row is not None:
                self.usage.shared_hits += 1
                return task.from_cache(key, row)
            # the other client gave the key up without a judgement (failed, or ended): claim it again

    async def _wait_for_other(self, key: str) -> CachedRow | None:
        """Wait while another client's claim on `key` is live; its stored row, or None when it gave up."""
        assert self.cache is not None
        while True:
            row = self.cache.find(key)
            if row is not None:
                return row
            if not self.cache.claim_live(key):
                return self.cache.find(key)
            await asyncio.sleep(self.config.claim_poll_s)

    async def judge_many(self, pairs: Iterable[tuple[str, str]]) -> list[TeacherResult]:
        """Judge every (question, answer) concurrently (bounded by the cap); results in input order.

        The cache is read once for the whole batch; only misses go to the endpoint."""
        prepared = [self.prepare(q, a) for q, a in pairs]
        hits = self.cache.get_many([key for _, _, key in prepared]) if self.cache is not None else {}

        async def one(i: int, q: str, a: str, key: str) -> TeacherResult:
            res = await self._judge_prepared(q, a, key, hits.get(key))
            if self._on_result is not None:
                self._on_result(i, res)
            return res

        return list(await asyncio.gather(*(one(i, q, a, key) for i, (q, a, key) in enumerate(prepared))))

    async def triage_many(self, questions: Iterable[str]) -> list[TriageResult]:
        """Triage every question (`medqa.teacher.triage`) concurrently through the same path as a judgement:
        scrubbed, cached under its own key, single flight, retries and re-asks; results in input order. A question
        that fails comes back with `error` set and no label."""
        prepared = [self.prepare_triage(q) for q in questions]
        hits = self.cache.get_triage_many([key for _, key in prepared]) if self.cache is not None else {}
        return list(await asyncio.gather(*(self._judge_prepared(q, "", key, hits.get(key), _TRIAGE)
                                           for q, key in prepared)))

    # -------------------------------------------------------------------------------------------- internals

    async def _judge_uncached(self, key: str, q: str, a: str, task: _Task = _JUDGEMENT) -> Any:
        messages = task.messages(q, a)
        attempts = 0
        tokens_in = tokens_out = 0
        for reask in range(self.config.max_reasks + 1):
            try:
                reply = await self._post(messages)
            except TeacherError as e:
                self.usage.failed += 1
                return task.failure(key, self.config, self._redact(str(e)), attempts + e.attempts)
            attempts += reply.attempts
            tokens_in += reply.prompt_tokens
            tokens_out += reply.completion_tokens
            try:
                parsed = task.parse(reply.content)
            except task.errors as e:
                if reask == self.config.max_reasks:
                    self.usage.failed += 1
                    return task.failure(key, self.config, self._redact(
                        f"malformed {task.noun} after {self.config.max_reasks} re-ask(s): {e}"), attempts)
                self.usage.reasks += 1
                log.info("teacher reply malformed (%s); re-asking", e)
                messages = task.reask(messages, reply.content, str(e))
                continue
            served = reply.model or self.config.model
            result = task.result(key, served, parsed, attempts, self.config, reply.offline)
            if self._writer is not None:  # durable before the result is handed out
                await self._writer.put(task.row(key, served, q, a, parsed, (tokens_in, tokens_out), self.config,
                                                reply.offline))
            self.usage.scored += 1
            return result
        raise AssertionError("unreachable")

    def _payload(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.config.model, "messages": messages,
                                   "temperature": self.config.temperature, "max_tokens": self.config.max_tokens}
        if self.config.json_mode:
            payload["response_format"] = {"type": "json_object"}
        return payload

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # The server said when: wait that long (capped), plus a little jitter so clients don't stampede.
            return min(retry_after, self.config.max_retry_after_s) + self._rng.uniform(0, self.config.backoff_base_s / 4)
        return self._rng.uniform(0, min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** attempt))

    async def _post(self, messages: list[dict[str, str]]) -> _Reply:
        import aiohttp

        assert self._session is not None and self._sem is not None, "use `async with TeacherClient(...)`"
        payload = self._payload(messages)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        last = "no attempt"
        for attempt in range(self.config.max_retries + 1):
            if self._rate is not None:
                await self._rate.wait()
            retry_after: float | None = None
            offline_header = ""
            async with self._sem:
                if self._auth_error is not None:  # checked once a slot is free: waiting requests are not sent
                    raise TeacherError(f"{self._auth_error}; not sent after an earlier refusal", attempt)
                self._in_flight_now += 1
                self.usage.max_in_flight = max(self.usage.max_in_flight, self._in_flight_now)
                self.usage.requests += 1
                try:
                    async with self._session.post(self.config.endpoint, json=payload, timeout=timeout) as resp:
                        status = resp.status
                        body = await resp.text()
                        retry_after = _retry_after(resp.headers.get("Retry-After"))
                        offline_header = resp.headers.get(OFFLINE_HEADER, "")
                except asyncio.TimeoutError:
                    status, body, last = None, "", f"timeout after {self.config.timeout_s:g}s"
                except aiohttp.ClientError as e:
                    status, body, last = None, "", f"connection error ({type(e).__name__})"
                finally:
                    self._in_flight_now -= 1
            if status == 200:
                try:
                    data = json.loads(body)
                    content = data["choices"][0]["message"]["content"]
                    usage = data.get("usage") or {}
                    served = data.get("model") if isinstance(data.get("model"), str) else ""
                    offline = bool(offline_header) or data.get("system_fingerprint") == OFFLINE_FINGERPRINT
                    reply = _Reply(content if isinstance(content, str) else "", int(usage.get("prompt_tokens", 0)),
                                   int(usage.get("completion_tokens", 0)), attempt + 1, served, offline)
                    self.usage.prompt_tokens += reply.prompt_tokens
                    self.usage.completion_tokens += reply.completion_tokens
                    return reply
                except (ValueError, KeyError, IndexError, TypeError):
                    last = "HTTP 200 with an invalid chat-completion body"
            elif status is not None:
                last = f"HTTP {status}: {self._redact(body)[:200]}"
                if status in AUTH_STATUS:
                    self._auth_error = f"HTTP {status} (authentication refused: check the API key)"
                if status not in RETRYABLE_STATUS:
                    raise TeacherError(f"{last} (not retryable)", attempt + 1)
            if attempt == self.config.max_retries:
                break
            self.usage.retries += 1
            delay = self._backoff(attempt, retry_after)
            log.warning("teacher request failed (%s); retry %d/%d in %.2fs", last, attempt + 1,
                        self.config.max_retries, delay)
            await asyncio.sleep(delay)
        raise TeacherError(f"{last}; gave up after {self.config.max_retries + 1} attempts", self.config.max_retries + 1)

    def _redact(self, text: str) -> str:
        """`text` without the API key or the base URL's password (redact before cutting: a cut key is not found)."""
        from urllib.parse import urlsplit

        secrets = [self.config.api_key.reveal() if self.config.api_key else "", urlsplit(self.config.base_url).password]
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


async def score_pairs_async(config: TeacherConfig, pairs: list[tuple[str, str]], cache_path: str | None = None,
                            on_result: Callable[[int, TeacherResult], None] | None = None
                            ) -> tuple[list[TeacherResult], Usage]:
    cache = JudgementCache(cache_path) if cache_path else None
    try:
        async with TeacherClient(config, cache, on_result=on_result) as client:
            return await client.judge_many(pairs), client.usage
    finally:
        if cache is not None:
            cache.close()


def score_pairs(config: TeacherConfig, pairs: list[tuple[str, str]], cache_path: str | None = None
                ) -> tuple[list[TeacherResult], Usage]:
    """Blocking convenience wrapper: judge the pairs in a fresh event loop."""
    return asyncio.run(score_pairs_async(config, pairs, cache_path))



async def triage_questions_async(config: TeacherConfig, questions: list[str], cache_path: str | None = None
                                 ) -> tuple[list[TriageResult], Usage]:
    """Triage each question once (`TeacherClient.triage_many`): results in input order, and the client's usage."""
    cache = JudgementCache(cache_path) if cache_path else None
    try:
        async with TeacherClient(config, cache) as client:
            return await client.triage_many(questions), client.usage
    finally:
        if cache is not None:
            cache.close()


def triage_questions(config: TeacherConfig, questions: list[str], cache_path: str | None = None
                     ) -> tuple[list[TriageResult], Usage]:
    """Blocking convenience wrapper: triage the questions in a fresh event loop."""
    return asyncio.run(triage_questions_async(config, questions, cache_path))
