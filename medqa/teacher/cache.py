"""Durable judgement cache: SQLite in WAL mode, one row per real, validated judgement.

Key = sha256(rubric version, endpoint, requested model, question, answer) over the *scrubbed* texts (what the
teacher saw), so the cache never holds personal identifiers and a different rubric, endpoint or model never reuses
a row. Each row records who judged: the endpoint, the requested model, the model the server reported (`model`)
and whether the reply came from the offline heuristic judge. WAL with
`synchronous=FULL` makes every committed judgement survive SIGKILL and power loss; several processes (ranks,
concurrent `medqa teacher score` runs) may open the same file — SQLite serialises writers (busy timeout) and
`INSERT OR IGNORE` keeps the first row for a key. Only the client writes, and only after validation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from medqa.teacher.rubric import CRITERIA, RUBRIC_VERSION

_SCHEMA = """
CREATE TABLE IF NOT EXISTS judgements (
    key TEXT PRIMARY KEY,
    rubric_version TEXT NOT NULL,
    model TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    scores TEXT NOT NULL,
    overall_score REAL NOT NULL,
    critique TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    endpoint TEXT NOT NULL DEFAULT '',
    requested_model TEXT NOT NULL DEFAULT '',
    offline INTEGER NOT NULL DEFAULT 0
)
"""
# Columns added after the first schema: an older cache file gets them on open (its old rows' keys never match).
_ADDED = {"endpoint": "TEXT NOT NULL DEFAULT ''", "requested_model": "TEXT NOT NULL DEFAULT ''",
          "offline": "INTEGER NOT NULL DEFAULT 0"}


class CacheError(RuntimeError):
    """The cache file cannot be used (not SQLite, truncated, corrupt); the message names the file."""


def cache_key(question: str, answer: str, model: str, rubric_version: str = RUBRIC_VERSION, endpoint: str = "") -> str:
    """The row key: who is asked (endpoint + requested model), with which rubric, about which scrubbed pair."""
    payload = json.dumps([rubric_version, endpoint, model, question, answer], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedJudgement:
    key: str
    rubric_version: str
    model: str
    question: str
    answer: str
    scores: dict[str, float]
    overall_score: float
    critique: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    endpoint: str = ""
    requested_model: str = ""
    offline: bool = False

    def export_row(self) -> dict:
        """The original project's `data/rl/teacher_judgements.jsonl` row (+ rubric_version)."""
        return {"question": self.question, "answer": self.answer, "scores": dict(self.scores),
                "overall_score": self.overall_score, "critique": self.critique, "model": self.model,
                "rubric_version": self.rubric_version, "endpoint": self.endpoint,
                "requested_model": self.requested_model, "offline": self.offline}


class CacheWriter:
    """Durable cache writes off the event loop, with group commit.

    `await writer.put(j)` returns once `j` is committed (so a judgement is never reported done before it
    would survive SIGKILL), but every judgement that arrives while a commit is running joins the next one:
    one transaction and one fsync per batch instead of per judgement, on a thread with its own connection.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._pending: list[tuple[CachedJudgement, asyncio.Future]] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medqa-cache-writer")
        self._db: JudgementCache | None = None  # opened on the writer thread
        self._flusher: asyncio.Future | None = None

    async def put(self, j: CachedJudgement) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((j, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        await asyncio.shield(fut)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await loop.run_in_executor(self._executor, self._write, [j for j, _ in batch])
            except Exception as e:  # handed to every waiter of this batch
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
            else:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)

    def _write(self, items: list[CachedJudgement]) -> None:
        if self._db is None:
            self._db = JudgementCache(self.path)
        self._db.put_many(items)

    async def aclose(self) -> None:
        if self._flusher is not None:
            await self._flusher
        self._executor.submit(lambda: self._db and self._db.close()).result()
        self._executor.shutdown(wait=True)


class JudgementCache:
    """A process-local handle on the shared cache file. Use one per process (or per thread)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise CacheError(f"{self.path}: is a folder, not a judgement cache file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout=60000")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
            have = {r[1] for r in self._db.execute("PRAGMA table_info(judgements)")}
            for col, decl in _ADDED.items():
                if col not in have:
                    self._db.execute(f"ALTER TABLE judgements ADD COLUMN {col} {decl}")
            self._db.execute("SELECT COUNT(*) FROM judgements").fetchone()
        except sqlite3.DatabaseError as e:
            raise CacheError(f"{self.path}: not a usable judgement cache ({e}); move it away or pass another "
                             "--teacher-cache") from None

    def __repr__(self) -> str:
        return f"JudgementCache({str(self.path)!r})"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JudgementCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _row(r: tuple) -> CachedJudgement:
        return CachedJudgement(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8], r[9], r[10], r[11],
                               bool(r[12]))

    _COLS = ("key, rubric_version, model, question, answer, scores, overall_score, critique, "
             "prompt_tokens, completion_tokens, endpoint, requested_model, offline")

    def get(self, key: str) -> CachedJudgement | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: list[str]) -> dict[str, CachedJudgement]:
        out: dict[str, CachedJudgement] = {}
        try:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = f"SELECT {self._COLS} FROM judgements WHERE key IN ({','.join('?' * len(chunk))})"
                out.update({r[0]: self._row(r) for r in self._db.execute(q, chunk)})
        except sqlite3.DatabaseError as e:
            raise CacheError(f"{self.path}: judgement cache unreadable ({e})") from None
        return out

    def put(self, j: CachedJudgement) -> None:
        self.put_many([j])

    def put_many(self, items: list[CachedJudgement]) -> None:
        """Write judgements in ONE transaction: a single fsync makes them all durable (group commit)."""
        for j in items:
            if set(j.scores) != set(CRITERIA):
                raise ValueError(f"judgement scores must be exactly {CRITERIA}")
        now = time.time()
        rows = [(j.key, j.rubric_version, j.model, j.question, j.answer, json.dumps(j.scores), j.overall_score,
                 j.critique, j.prompt_tokens, j.completion_tokens, now, j.endpoint, j.requested_model, int(j.offline))
                for j in items]
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR IGNORE INTO judgements (key, rubric_version, model, question, answer, scores, overall_score, "
                "critique, prompt_tokens, completion_tokens, created, endpoint, requested_model, offline) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]

    def __iter__(self) -> Iterator[CachedJudgement]:
        yield from (self._row(r) for r in self._db.execute(f"SELECT {self._COLS} FROM judgements ORDER BY created"))

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def export_jsonl(self, path: str | Path, model: str | None = None) -> int:
        """Write every judgement (optionally of one teacher model) as `teacher_judgements.jsonl` rows."""
        from medqa.io import write_jsonl

        return write_jsonl(path, (j.export_row() for j in self if model is None or j.model == model))
