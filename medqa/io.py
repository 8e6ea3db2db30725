"""File I/O shared by every stage: atomic writes and JSONL reading with precise error locations."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


def _read_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


_UMASK = _read_umask()
_FILE_MODE = 0o666 & ~_UMASK


class InputError(ValueError):
    """Bad input, located: `FILE:LINE: field: reason`."""

    def __init__(self, path: str | os.PathLike, line: int | None, field: str | None, reason: str):
        self.path, self.line, self.field, self.reason = str(path), line, field, reason
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {field}: {reason}" if field else f"{where}: {reason}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Write to a temp file beside `path`, fsync, then rename: readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; outputs get the usual umask-derived mode
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Fill a temp folder beside `path`, then swap it in place of `path`: never a partial folder.

    A previous `path` is replaced only once the new one is complete; on an error it is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Atomically write rows as UTF-8 JSON lines; returns the number written."""
    n = 0
    with atomic_write(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def iter_jsonl(
    path: str | os.PathLike, *, tolerant: bool = False, on_error: Callable[[InputError], None] | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line.

    Non-UTF-8 bytes, malformed JSON or a non-object row raise InputError naming the file and line, or,
    with `on_error`, are passed to it and skipped. With `tolerant`, such lines (a write torn by a crash or
    SIGKILL) are skipped silently — for append-only caches and resumable outputs, never for user input.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        data = fh.read()
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(path, i, None, f"not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 4]!r})") from None
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise InputError(path, i, None, f"malformed JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise InputError(path, i, None, f"expected a JSON object, got {type(obj).__name__}")
        except InputError as err:
            if tolerant:
                continue
            if on_error is None:
                raise
            on_error(err)
            continue
        yield i, obj


def read_jsonl(path: str | os.PathLike, **kwargs: Any) -> list[dict]:
    return [obj for _, obj in iter_jsonl(path, **kwargs)]


def append_jsonl(path: str | os.PathLike, rows: Iterable[dict], *, fsync: bool = True) -> None:
    """Append rows durably (one write per row, fsync at the end). Pair with `tolerant=True` on read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        # A crash may have left a torn last line without "\n": start on a fresh line so it stays isolated.
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        for row in rows:
            fh.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())
