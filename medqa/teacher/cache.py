"""Durable judgement cache: SQLite in WAL mode, one row per real, validated judgement.

Key = sha256(rubric version, endpoint, requested model, question, answer) over the *scrubbed* texts (what the
teacher saw), so the cache never holds personal identifiers and a different rubric, endpoint or model never reuses
a row. Triages of a question (`medqa.teacher.triage`) live in their own table `triage`, keyed by (triage rubric
version, endpoint, requested model, scrubbed question) — `triage_key` — and share the claims and the writer.
Each row records who judged: the endpoint, the requested model, the model the server reported (`model`) and whether
the reply came from the offline heuristic judge. WAL with
`synchronous=FULL` makes every committed judgement survive SIGKILL and power loss; several processes (ranks,
concurrent `medqa teacher score` runs) may open the same file — SQLite serialises writers (busy timeout) and
`INSERT OR IGNORE` keeps the first row for a key. Only the client writes, and only after validation.

Single flight across processes: before a client sends a judgement it *claims* the key (table `claims`: owner,
host, pid, expiry); another client that needs the same key while the claim is live waits for the row instead of
paying for the same judgement again, and takes the key over when the claim is released without a row (the
owner's judgement failed) or its owner is gone (its pid no longer runs on this host, or the claim expired).

A cache that another process keeps write-locked (an open `sqlite3` shell, a backup) past the busy timeout is
reported in one line and left alone for the rest of the run: the judgements are kept in memory, handed out and
written to the command's output, and added to the cache when the client closes if the lock is gone by then.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
_CLAIMS = """
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires REAL NOT NULL
)
"""
# One row per validated triage of a question (`medqa.teacher.triage`): keyed like a judgement but by the triage
# rubric version and the question alone, so the two never share a key.
_TRIAGE = """
CREATE TABLE IF NOT EXISTS triage (
    key TEXT PRIMARY KEY,
    rubric_version TEXT NOT NULL,
    model TEXT NOT NULL,
    question TEXT NOT NULL,
    emergency INTEGER NOT NULL,
    category TEXT NOT NULL,
    reason TEXT NOT NULL,
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


_EMERGENCY_KEY = "needs_emergency"  # kept inside the scores JSON column


log = logging.getLogger("medqa.teacher")

BUSY_TIMEOUT_S = 60.0  # how long a connection waits for another process's write lock


class CacheError(RuntimeError):
    """The cache file cannot be used (not SQLite, truncated, corrupt); the message names the file."""


class CacheLocked(CacheError):
    """Another process held the cache's write lock for longer than the busy timeout."""


def _is_lock_error(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def _alive(host: str, pid: int, expires: float, now: float) -> bool:
    """A claim's owner may still be judging: not expired, and on this host its process still runs."""
    if expires < now:
        return False
    if host != socket.gethostname():
        return True  # another machine: only the expiry tells
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    needs_emergency: bool | None = None  # the teacher's view of the question (stored with the scores JSON)

    def export_row(self) -> dict:
        """The original project's `data/rl/teacher_judgements.jsonl` row (+ rubric version, who judged and the
        teacher's needs_emergency when it gave one)."""
        row = {"question": self.question, "answer": self.answer, "scores": dict(self.scores),
               "overall_score": self.overall_score, "critique": self.critique, "model": self.model,
               "rubric_version": self.rubric_version, "endpoint": self.endpoint,
               "requested_model": self.requested_model, "offline": self.offline}
        if self.needs_emergency is not None:
            row["needs_emergency"] = self.needs_emergency
        return row


def triage_key(question: str, model: str, endpoint: str = "") -> str:
    """The triage row key: who is asked (endpoint + requested model), with which triage rubric, about which
    scrubbed question."""
    from medqa.teacher.triage import TRIAGE_RUBRIC_VERSION

    payload = json.dumps(["triage", TRIAGE_RUBRIC_VERSION, endpoint, model, question], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedTriage:
    """One validated triage of a question (table `triage`)."""

    key: str
    rubric_version: str
    model: str
    question: str
    emergency: bool
    category: str
    reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    endpoint: str = ""
    requested_model: str = ""
    offline: bool = False


CachedRow = CachedJudgement | CachedTriage


class CacheWriter:
    """Durable cache writes and claims off the event loop, with group commit.

    `await writer.put(j)` returns once `j` is committed (so a judgement is never reported done before it
    would survive SIGKILL), but every operation that arrives while a commit is running joins the next one:
    one transaction and one fsync per batch instead of per judgement, on a thread with its own connection.
    `await writer.claim(key)` is ("mine", None), ("row", judgement) when another client already stored it, or
    ("busy", None) while another live client judges it; `release(key)` gives a claim up without a row.

    When the file stays write-locked past `busy_timeout_s` (or SQLite cannot write it at all) the writer says so
    once and stops touching it: puts are kept (`unwritten`) and retried once in `aclose`, claims are granted.
    """

    def __init__(self, path: str | Path, owner: str = "", claim_ttl_s: float = 3600.0,
                 busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self.owner = owner or os.urandom(8).hex()
        self.claim_ttl_s = claim_ttl_s
        self.busy_timeout_s = busy_timeout_s
        self.unavailable: str | None = None  # why the file is left alone for the rest of the run
        self.unwritten: list[CachedRow] = []  # judgements and triages kept while the file was unavailable
        self._pending: list[tuple[str, Any, asyncio.Future]] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medqa-cache-writer")
        self._db: JudgementCache | None = None  # opened on the writer thread
        self._flusher: asyncio.Future | None = None

    async def put(self, j: CachedRow) -> None:
        await self._submit("put", j)

    async def claim(self, key: str) -> tuple[str, CachedRow | None]:
        return await self._submit("claim", key)

    async def release(self, key: str) -> None:
        await self._submit("release", key)

    async def _submit(self, op: str, arg: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((op, arg, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.ensure_future(self._flush())
        return await asyncio.shield(fut)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results = await loop.run_in_executor(self._executor, self._write, [(op, arg) for op, arg, _ in batch])
            except Exception as e:  # handed to every waiter of this batch
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
            else:
                for (_, _, fut), result in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)

    def _write(self, ops: list[tuple[str, Any]]) -> list[Any]:
        if self.unavailable is None:
            try:
                if self._db is None:
                    self._db = JudgementCache(self.path, busy_timeout_s=self.busy_timeout_s)
                return self._db.apply(ops, self.owner, time.time() + self.claim_ttl_s)
            except (sqlite3.OperationalError, CacheLocked) as e:
                self._give_up(e)
        # The file is unavailable: keep what was judged, let this client judge what it needs.
        out: list[Any] = []
        for op, arg in ops:
            if op == "put":
                self.unwritten.append(arg)
            out.append(("mine", None) if op == "claim" else None)
        return out

    def _give_up(self, e: BaseException) -> None:
        if _is_lock_error(e) or isinstance(e, CacheLocked):
            self.unavailable = (f"locked by another process for over {self.busy_timeout_s:g}s (an open sqlite3 shell "
                                f"or a backup holding a write transaction?)")
        else:
            self.unavailable = f"cannot be written ({e})"
        log.warning("teacher cache %s: %s; this run goes on without writing to it: its judgements are kept, used and "
                    "written to the output, and added to the cache at the end if it can be written by then (to "
                    "cache them sooner, end the other process's transaction)", self.path, self.unavailable)

    def _finish(self) -> None:
        """On the writer thread: the kept judgements (one more try) and this owner's claims; close."""
        try:
            if self.unavailable is not None:
                kept, self.unwritten = self.unwritten, []
                try:
                    if self._db is None:
                        self._db = JudgementCache(self.path, busy_timeout_s=self.busy_timeout_s)
                    self._db.apply([("put", j) for j in kept], self.owner, 0.0)
                    if kept:
                        log.warning("teacher cache %s: writable again; the %d judgements kept during the run are now "
                                    "cached", self.path, len(kept))
                except (sqlite3.OperationalError, CacheLocked):
                    self.unwritten = kept
                    if kept:
                        log.warning("teacher cache %s: still %s; %d judgements of this run are in its output but not "
                                    "in the cache", self.path, self.unavailable, len(kept))
                    return
            if self._db is not None:
                self._db.release_owner(self.owner)
        except (sqlite3.Error, CacheError) as e:
            log.warning("teacher cache %s: could not release this run's claims (%s); other runs take them over "
                        "when this process has ended", self.path, e)
        finally:
            if self._db is not None:
                self._db.close()
                self._db = None

    async def aclose(self) -> None:
        if self._flusher is not None:
            await self._flusher
        await asyncio.get_running_loop().run_in_executor(self._executor, self._finish)
        self._executor.shutdown(wait=True)


class JudgementCache:
    """A process-local handle on the shared cache file. Use one per process (or per thread)."""

    def __init__(self, path: str | Path, busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        if self.path.is_dir():
            raise CacheError(f"{self.path}: is a folder, not a judgement cache file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            # Only a new or older file is written to here: an up-to-date one opens (and is read) under any lock.
            if "judgements" not in tables:
                self._db.execute(_SCHEMA)
            if "claims" not in tables:
                self._db.execute(_CLAIMS)
            if "triage" not in tables:
                self._db.execute(_TRIAGE)
            have = {r[1] for r in self._db.execute("PRAGMA table_info(judgements)")}
            for col, decl in _ADDED.items():
                if col not in have:
                    self._db.execute(f"ALTER TABLE judgements ADD COLUMN {col} {decl}")
            self._db.execute("SELECT COUNT(*) FROM judgements").fetchone()
        except sqlite3.DatabaseError as e:
            if _is_lock_error(e):
                raise CacheLocked(f"{self.path}: locked by another process for over {busy_timeout_s:g}s; end that "
                                  f"process's transaction, or pass another --teacher-cache ('' for none)") from None
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
        scores = json.loads(r[5])
        emergency = scores.pop(_EMERGENCY_KEY, None)
        return CachedJudgement(r[0], r[1], r[2], r[3], r[4], scores, r[6], r[7], r[8], r[9], r[10], r[11],
                               bool(r[12]), emergency)

    _COLS = ("key, rubric_version, model, question, answer, scores, overall_score, critique, "
             "prompt_tokens, completion_tokens, endpoint, requested_model, offline")

    def get(self, key: str) -> CachedJudgement | None:
        return self.get_many([key]).get(key)

    _TRIAGE_COLS = ("key, rubric_version, model, question, emergency, category, reason, prompt_tokens, "
                    "completion_tokens, endpoint, requested_model, offline")

    @staticmethod
    def _triage_row(r: tuple) -> CachedTriage:
        return CachedTriage(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6], r[7], r[8], r[9], r[10], bool(r[11]))

    def get_triage_many(self, keys: list[str]) -> dict[str, CachedTriage]:
        out: dict[str, CachedTriage] = {}
        try:
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = f"SELECT {self._TRIAGE_COLS} FROM triage WHERE key IN ({','.join('?' * len(chunk))})"
                out.update({r[0]: self._triage_row(r) for r in self._db.execute(q, chunk)})
        except sqlite3.DatabaseError as e:
            raise CacheError(f"{self.path}: judgement cache unreadable ({e})") from None
        return out

    def find(self, key: str) -> CachedRow | None:
        """The stored judgement or triage with this key (their keys never collide), or None."""
        return self.get(key) or self.get_triage_many([key]).get(key)

    def _stored(self, key: str) -> CachedRow | None:
        row = self._db.execute(f"SELECT {self._COLS} FROM judgements WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return self._row(row)
        row = self._db.execute(f"SELECT {self._TRIAGE_COLS} FROM triage WHERE key = ?", (key,)).fetchone()
        return self._triage_row(row) if row is not None else None

    def triages(self) -> Iterator[CachedTriage]:
        yield from (self._triage_row(r) for r in self._db.execute(f"SELECT {self._TRIAGE_COLS} FROM triage "
                                                                   "ORDER BY created"))

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
        self.apply([("put", j) for j in items], "", 0.0)

    def apply(self, ops: list[tuple[str, Any]], owner: str, expires: float) -> list[Any]:
        """Run ("put", judgement), ("claim", key) and ("release", key) in ONE transaction; one result per op
        (see `CacheWriter`). A stored judgement ends every claim on its key."""
        for op, arg in ops:
            if op == "put" and isinstance(arg, CachedJudgement) and set(arg.scores) != set(CRITERIA):
                raise ValueError(f"judgement scores must be exactly {CRITERIA}")
        if not ops:
            return []
        now = time.time()
        host, pid = socket.gethostname(), os.getpid()
        out: list[Any] = []
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for op, arg in ops:
                if op == "put" and isinstance(arg, CachedTriage):
                    t = arg
                    self._db.execute(
                        "INSERT OR IGNORE INTO triage (key, rubric_version, model, question, emergency, category, "
                        "reason, prompt_tokens, completion_tokens, created, endpoint, requested_model, offline) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (t.key, t.rubric_version, t.model, t.question, int(t.emergency), t.category, t.reason,
                         t.prompt_tokens, t.completion_tokens, now, t.endpoint, t.requested_model, int(t.offline)))
                    self._db.execute("DELETE FROM claims WHERE key = ?", (t.key,))
                    out.append(None)
                elif op == "put":
                    j = arg
                    self._db.execute(
                        "INSERT OR IGNORE INTO judgements (key, rubric_version, model, question, answer, scores, "
                        "overall_score, critique, prompt_tokens, completion_tokens, created, endpoint, requested_model, "
                        "offline) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (j.key, j.rubric_version, j.model, j.question, j.answer, json.dumps(
                            {**j.scores, **({_EMERGENCY_KEY: j.needs_emergency} if j.needs_emergency is not None
                                            else {})}),
                         j.overall_score, j.critique, j.prompt_tokens, j.completion_tokens, now, j.endpoint,
                         j.requested_model, int(j.offline)))
                    self._db.execute("DELETE FROM claims WHERE key = ?", (j.key,))
                    out.append(None)
                elif op == "claim":
                    stored = self._stored(arg)
                    if stored is not None:
                        out.append(("row", stored))
                        continue
                    held = self._db.execute("SELECT owner, host, pid, expires FROM claims WHERE key = ?",
                                            (arg,)).fetchone()
                    if held is not None and held[0] != owner and _alive(held[1], held[2], held[3], now):
                        out.append(("busy", None))
                        continue
                    self._db.execute("INSERT OR REPLACE INTO claims (key, owner, host, pid, expires) VALUES (?,?,?,?,?)",
                                     (arg, owner, host, pid, expires))
                    out.append(("mine", None))
                elif op == "release":
                    self._db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (arg, owner))
                    out.append(None)
                else:
                    raise ValueError(f"unknown cache operation {op!r}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return out

    def claim_live(self, key: str) -> bool:
        """Another client holds a live claim on `key` (it is judging it now)."""
        held = self._db.execute("SELECT host, pid, expires FROM claims WHERE key = ?", (key,)).fetchone()
        return held is not None and _alive(held[0], held[1], held[2], time.time())

    def release_owner(self, owner: str) -> None:
        self._db.execute("DELETE FROM claims WHERE owner = ?", (owner,))

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]

    def __iter__(self) -> Iterator[CachedJudgement]:
        yield from (self._row(r) for r in self._db.execute(f"SELECT {self._COLS} FROM judgements ORDER BY created"))

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def export_jsonl(self, path: str | Path, model: str | None = None) -> int:
        """Write every judgement (optionally of one teacher model) as `teacher_judgements.jsonl` rows."""
        from medqa.runs.io import write_jsonl

        return write_jsonl(path, (j.export_row() for j in self if model is None or j.model == model))
