"""File I/O shared by every stage: atomic writes and JSONL reading with precise error locations."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import socket
import sys
import tempfile
import time
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


class OutputError(ValueError):
    """An output path that must not be written as asked (the message says why and what to do)."""


# Every folder medqa writes holds this manifest: who wrote it and the entries it wrote. A folder is replaced
# only when everything in it is either listed there or about to be rewritten, or it is empty.
MANIFEST = ".medqa-output.json"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """`a` and `b` name the same file (resolving links and `..`), whether or not it exists yet."""
    pa, pb = Path(a), Path(b)
    if pa.exists() and pb.exists():
        return os.path.samefile(pa, pb)
    return pa.resolve() == pb.resolve()


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def protected_reason(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()) -> str | None:
    """Why replacing the folder `out` would destroy something it must never destroy, or None."""
    o = Path(out).resolve()
    for inp in inputs:
        i = Path(inp).resolve()
        if _within(i, o):
            return f"it {'is' if i == o else 'contains'} the input {inp}"
    for what, place in (("the project folder", PROJECT_ROOT), ("the current folder", Path.cwd().resolve()),
                        ("your home folder", Path.home().resolve())):
        if _within(place, o):
            return f"it {'is' if place == o else 'contains'} {what} ({place})"
    return None


def read_manifest(folder: str | os.PathLike) -> dict:
    """The manifest of `folder` ({} when there is none or it does not parse)."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("written_by", "").startswith("medqa") else {}


def write_manifest(folder: str | os.PathLike, kind: str | None, entries: Iterable[str],
                   files: dict[str, str] | None = None) -> None:
    """Record that medqa (the command `kind`) wrote `entries` (names or fnmatch patterns) and `files` (name ->
    the kind that wrote that single file) in `folder`."""
    data: dict[str, Any] = {"written_by": "medqa", "kind": kind, "entries": sorted(set(entries))}
    if files:
        data["files"] = dict(sorted(files.items()))
    with atomic_write(Path(folder) / MANIFEST) as fh:
        fh.write(json.dumps(data, indent=1) + "\n")


def manifest_files(folder: str | os.PathLike) -> dict[str, str]:
    """The single files recorded in `folder`'s manifest: name -> the command that writes it."""
    files = read_manifest(folder).get("files", {})
    return files if isinstance(files, dict) else {}


def _is_known(name: str, patterns: Iterable[str]) -> bool:
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def own_entries(folder: str | os.PathLike) -> set[str]:
    """The names in `folder` medqa's manifest accounts for (the manifest and lock included)."""
    m = read_manifest(folder)
    entries, files = m.get("entries", []), m.get("files", {})
    patterns = [str(p) for p in (entries if isinstance(entries, list) else [])] + list(
        files if isinstance(files, dict) else {})
    return {p.name for p in Path(folder).iterdir() if p.name == MANIFEST or _is_known(p.name, patterns)}


def check_output_dir(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False,
                     new_entries: Iterable[str] | None = None, kind: str | None = None) -> None:
    """Raise OutputError unless the folder `out` may be (re)written.

    A missing or empty folder is fine; an existing file is not. A non-empty folder is replaced only when every
    entry in it was written by medqa (its manifest) or is one of `new_entries` (what is about to be written) and,
    with `kind`, the manifest names that same kind; or with `overwrite` — and never, not even with `overwrite`,
    when it is or contains an input, the project, the current folder or the home folder."""
    o = Path(out)
    if o.exists() and not o.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another --out (or delete the file yourself)")
    reason = protected_reason(o, inputs)
    if reason is not None:
        raise OutputError(f"{out}: refusing to write the output folder here: {reason}; choose another --out")
    if not o.is_dir() or overwrite:
        return
    present = {p.name for p in o.iterdir()}
    foreign = sorted(present - own_entries(o) - set(new_entries or ()))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(f"{out}: folder holds files medqa did not write ({shown}); choose another --out, or pass "
                          "--overwrite to replace the whole folder")
    manifest = read_manifest(o)
    other = manifest.get("kind")
    # A manifest from before commands were recorded (no "kind" key) is medqa's own output of an unknown command.
    if kind is not None and present - {MANIFEST} and "kind" in manifest and other != kind:
        raise OutputError(f"{out}: folder holds the output of {f'medqa {other}' if other else 'another medqa command'}"
                          f", not of {kind}; choose another --out, or pass --overwrite to replace it")


def check_output_file(path: str | os.PathLike, kind: str, inputs: Iterable[str | os.PathLike] = (),
                      overwrite: bool = False) -> None:
    """Raise OutputError unless the file `path` may be (re)written by the command `kind`: it is missing, or its
    folder's manifest records it as written by `kind`, or `overwrite`; never when it is an input or a folder."""
    p = Path(path)
    for inp in inputs:
        if same_file(p, inp):
            raise OutputError(f"{path}: is the input {inp}; write the output elsewhere")
    if p.is_dir():
        raise OutputError(f"{path}: is a folder; the output is a file, choose another path")
    if not p.exists() or overwrite:
        return
    if manifest_files(p.parent).get(p.name) != kind:
        raise OutputError(f"{path}: exists and was not written by medqa {kind}; choose another output path, or pass "
                          "--overwrite to replace it")


def record_output_file(path: str | os.PathLike, kind: str) -> None:
    """Note in the manifest of `path`'s folder that medqa `kind` writes `path` (before writing it, so a run cut
    short can be resumed or rerun)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    m, files = read_manifest(p.parent), manifest_files(p.parent)
    if files.get(p.name) != kind:
        write_manifest(p.parent, m.get("kind"), m.get("entries", []), {**files, p.name: kind})


# ---------------------------------------------------------------- one run per output

class OutputLocked(OutputError):
    """Another live medqa run holds the output."""


def lock_path(out: str | os.PathLike) -> Path:
    """The lock of the output `out` (a file or a folder) lies beside it, so moving the folder aside keeps it."""
    o = Path(out).absolute()
    return o.parent / f".{o.name}.lock"


def _pid_alive(pid: int) -> bool:
    """A process with this pid exists on this host (signal 0 only checks)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """An exclusive claim on an output for one run's life: a lock file beside it holding the owner's pid and
    host. A second run is refused with OutputLocked; a lock whose process on this host is gone is taken over."""

    def __init__(self, out: str | os.PathLike, what: str = "run"):
        self.out, self.path, self.what = Path(out), lock_path(out), what
        self.held = False

    def acquire(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(me) + "\n")
            self.held = True
            return self
        raise OutputLocked(f"{self.out}: could not take the lock {self.path}")

    def _take_over_if_stale(self) -> None:
        try:
            owner = json.loads(self.path.read_text(encoding="utf-8"))
            pid, host = int(owner["pid"]), str(owner["host"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError):
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return
            if age < 10:  # being written right now
                time.sleep(0.5)
                return
            owner, pid, host = {}, -1, socket.gethostname()  # unreadable and old: a torn write
        if host == socket.gethostname() and (pid <= 0 or pid == os.getpid() or not _pid_alive(pid)):
            why = f"pid {pid} is gone" if pid > 0 and pid != os.getpid() else "left by this process or unreadable"
            print(f"medqa: taking over the stale lock {self.path} ({why})", file=sys.stderr)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        raise OutputLocked(f"{self.out}: another medqa {owner.get('what', 'run')} is writing here (pid {pid} on "
                           f"{host}, since {owner.get('since', '?')}); wait for it to finish, or delete {self.path} "
                           "if that run is gone")

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.held = False

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def ensure_out_folder(out: str | os.PathLike) -> Path:
    """Create the folder `out` for outputs written file by file (nothing in it is deleted); OutputError when it is
    an existing file or cannot be created."""
    o = Path(out)
    if o.exists() and not o.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another --out")
    try:
        o.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the output folder ({e.strerror or e})") from None
    return o


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
               overwrite: bool = False, kind: str | None = None) -> Iterator[Path]:
    """Fill a temp folder beside `path`, then swap it in place of `path`: never a partial folder.

    A previous `path` is replaced only once the new one is complete, and only if `check_output_dir` allows it
    (nothing medqa did not write is ever deleted unless `overwrite`); on an error it is left untouched. The new
    folder gets a manifest of its entries and of the command (`kind`) that wrote them."""
    path = Path(path)
    inputs = list(inputs)
    check_output_dir(path, inputs, overwrite=True)  # the hard limits, before any work
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise OutputError(f"{path}: cannot create the output folder ({e.strerror or e})") from None
    try:
        yield tmp
        entries = sorted(p.name for p in tmp.iterdir())
        # an older output that records no command is replaced by any medqa command (nothing foreign is lost)
        check_output_dir(path, inputs, overwrite=overwrite, new_entries=entries,
                         kind=kind if read_manifest(path).get("kind") else None)
        write_manifest(tmp, kind, entries)
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


_BOM = b"\xef\xbb\xbf"
MAX_LINE_BYTES = 4 << 20  # one JSONL row: 4 MiB, far above any real question and answer


def iter_jsonl(
    path: str | os.PathLike, *, tolerant: bool = False, on_error: Callable[[InputError], None] | None = None
) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line (a leading UTF-8 BOM is accepted).

    Non-UTF-8 bytes, malformed JSON, a non-object row or a line over MAX_LINE_BYTES raise InputError naming the
    file and line, or, with `on_error`, are passed to it and skipped. With `tolerant`, such lines (a write torn by
    a crash or SIGKILL) are skipped silently — for append-only caches and resumable outputs, never for user input.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, start=1):
            if i == 1 and raw.startswith(_BOM):  # files saved by Windows editors
                raw = raw[len(_BOM):]
            if not raw.strip():
                continue
            try:
                obj = _parse_line(path, i, raw)
            except InputError as err:
                if tolerant:
                    continue
                if on_error is None:
                    raise
                on_error(err)
                continue
            yield i, obj


def _parse_line(path: Path, i: int, raw: bytes) -> dict:
    if len(raw) > MAX_LINE_BYTES:
        raise InputError(path, i, None, f"line is {len(raw):,} bytes, over the {MAX_LINE_BYTES:,}-byte limit per row")
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
    return obj


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


# ---------------------------------------------------------------- what a model folder holds

FINGERPRINT_FULL_BYTES = 512 * 2**20  # files up to this size are hashed whole
FINGERPRINT_EDGE_BYTES = 8 * 2**20  # of a larger file: its size, mtime and first and last 8 MiB
FINGERPRINT_SKIPPED = {MANIFEST, "README.md", "metrics.jsonl", "samples.jsonl"}  # logs, not the model


def content_fingerprint(path: str | os.PathLike) -> str | None:
    """A hash of what a model or adapter folder (or file) holds: the names and contents of its top-level files
    (weights, config, tokenizer, chat template; not its logs or checkpoint subfolders). A model retrained into the
    same folder gets a new fingerprint, so outputs keyed by it are not reused for it. None when `path` is not on
    disk (a hub id: its name is its identity). Files over 512 MiB are hashed by size, mtime and their first and last
    8 MiB, so a multi-GB checkpoint costs milliseconds."""
    import hashlib

    p = Path(path)
    if not p.exists():
        return None
    files = [p] if p.is_file() else sorted(f for f in p.iterdir() if f.is_file() and f.name not in FINGERPRINT_SKIPPED)
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.name}\0{st.st_size}\0".encode())
        with open(f, "rb") as fh:
            if st.st_size <= FINGERPRINT_FULL_BYTES:
                for block in iter(lambda: fh.read(2**20), b""):
                    h.update(block)
            else:
                h.update(f"{st.st_mtime_ns}\0".encode())
                h.update(fh.read(FINGERPRINT_EDGE_BYTES))
                fh.seek(st.st_size - FINGERPRINT_EDGE_BYTES)
                h.update(fh.read(FINGERPRINT_EDGE_BYTES))
    return h.hexdigest()[:20]
