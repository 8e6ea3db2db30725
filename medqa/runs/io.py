"""File I/O shared by every stage: atomic writes and JSONL reading with precise error locations."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import json
import os
import shutil
import socket
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
PROJECT_ROOT = Path(__file__).resolve().parents[2]


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
    """The manifest of `folder`, or {} when there is none, it does not parse, or it is not of medqa's form
    (`written_by` "medqa…", `kind` a string or null, `entries` a list of strings, `files` an object of strings): an
    edited or foreign manifest vouches for nothing, so the folder counts as not written by medqa."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not (isinstance(data, dict) and isinstance(data.get("written_by"), str)
            and data["written_by"].startswith("medqa")):
        return {}
    entries, files = data.get("entries", []), data.get("files", {})
    if (not isinstance(data.get("kind"), (str, type(None)))
            or not (isinstance(entries, list) and all(isinstance(e, str) for e in entries))
            or not (isinstance(files, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in files.items()))):
        return {}
    return data


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
    return read_manifest(folder).get("files", {})


def _is_known(name: str, patterns: Iterable[str]) -> bool:
    return any(name == p or fnmatch.fnmatchcase(name, p) for p in patterns)


def own_entries(folder: str | os.PathLike) -> set[str]:
    """The names in `folder` medqa's manifest accounts for (the manifest and lock included)."""
    m = read_manifest(folder)
    patterns = [*m.get("entries", []), *m.get("files", {})]
    return {p.name for p in Path(folder).iterdir() if p.name == MANIFEST or _is_known(p.name, patterns)}


def check_output_dir(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False,
                     kind: str | None = None) -> None:
    """Raise OutputError unless the folder `out` may be (re)written.

    A missing or empty folder is fine; an existing file is not. A non-empty folder is replaced only when every
    entry in it was written by medqa (listed in its manifest: a file of the same name that medqa *would* write is
    not one it *did* write) and, with `kind`, the manifest names that same command; or with `overwrite` — and
    never, not even with `overwrite`, when it is or contains an input, the project, the current folder or the home
    folder."""
    o = Path(out)
    if o.exists() and not o.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another --out (or delete the file yourself)")
    reason = protected_reason(o, inputs)
    if reason is not None:
        raise OutputError(f"{out}: refusing to write the output folder here: {reason}; choose another --out")
    if not o.is_dir() or overwrite:
        return
    present = {p.name for p in o.iterdir()}
    foreign = sorted(present - own_entries(o))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(f"{out}: folder holds files medqa did not write ({shown}); choose another --out, or pass "
                          "--overwrite to replace the whole folder")
    other = read_manifest(o).get("kind")
    # A manifest that records no command (older outputs) is medqa's own output of an unknown command.
    if kind is not None and other is not None and present - {MANIFEST} and other != kind:
        raise OutputError(f"{out}: folder holds the output of medqa {other}, not of {kind}; choose another --out, "
                          "or pass --overwrite to replace it")


def preflight_output_dir(out: str | os.PathLike, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False,
                         kind: str | None = None) -> None:
    """What a command that writes the folder `out` whole (`atomic_dir`) checks before its work: the output policy
    (`check_output_dir`) and that the new folder can be built where it will be (beside `out`'s real place: a probe
    folder is made there and removed; missing parents are created), so a path under a file or in a read-only place
    fails in one line before minutes of work, not after."""
    check_output_dir(out, inputs, overwrite=overwrite, kind=kind)
    path = output_path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent))
    except OSError as e:
        raise OutputError(f"{out}: cannot create the output folder ({e.strerror or e})") from None


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


def output_path(out: str | os.PathLike) -> Path:
    """Where an output really lies: links and `..` resolved, so a symbolic link to a folder is written through
    (the folder it names is replaced or claimed, the link stays) and every name of one folder shares one lock."""
    return Path(out).resolve()


def lock_path(out: str | os.PathLike) -> Path:
    """The lock of the output `out` (a file or a folder) lies beside its real place, so moving the folder aside
    keeps it and a link to the folder takes the same lock."""
    o = output_path(out)
    return o.parent / f".{o.name}.lock"


# A file system without file locks answers flock with one of these; the lock is then an O_EXCL file.
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class OutputLock:
    """An exclusive claim on an output for one run's life: `fcntl.flock` on a lock file beside it.

    The kernel (the NFS server, for NFS: Linux sends flock there as a byte-range lock, which NFSv3 with lockd and
    NFSv4 share between hosts) holds the lock while the run's process lives and drops it when the process dies,
    even by SIGKILL, so a dead run's lock needs no take-over, and two runs can never both hold it. The file holds
    the owner's pid, host and start, for the message a second run gets (OutputLocked). The holder deletes the file
    while it still holds the lock, and a run that locked a file no longer at the path (deleted by its holder in the
    meantime) starts again, so a release never removes another run's lock. On a file system without locks
    (Lustre mounted without flock, say) the file is created with O_EXCL instead: a lock left by a killed run is
    then refused with a message naming the file to delete."""

    def __init__(self, out: str | os.PathLike, what: str = "run"):
        self.out, self.path, self.what = Path(out), lock_path(out), what
        self.held = False
        self._fd: int | None = None

    def _owner_line(self) -> str:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                           "since": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n"

    def _locked(self) -> OutputLocked:
        try:
            owner = json.loads(self.path.read_text(encoding="utf-8"))
            owner = owner if isinstance(owner, dict) else {}
        except (OSError, ValueError):
            owner = {}
        return OutputLocked(f"{self.out}: another medqa {owner.get('what', 'run')} is writing here (pid "
                            f"{owner.get('pid', '?')} on {owner.get('host', '?')}, since {owner.get('since', '?')}); "
                            "wait for it to finish")

    def acquire(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):  # each turn loses only to a holder that released (deleted the file) meanwhile
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._locked() from None
            except OSError as e:
                os.close(fd)
                if e.errno in _NO_FLOCK:
                    return self._acquire_exclusive_file()
                raise
            try:
                here = os.stat(self.path)
            except FileNotFoundError:
                here = None
            mine = os.fstat(fd)
            if here is None or (here.st_dev, here.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)  # locked a file its holder deleted on release: lock the one at the path now
                continue
            os.ftruncate(fd, 0)
            os.write(fd, self._owner_line().encode("utf-8"))
            self._fd, self.held = fd, True
            return self
        raise OutputLocked(f"{self.out}: could not take the lock {self.path}")

    def _acquire_exclusive_file(self) -> OutputLock:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            err = self._locked()
            raise OutputLocked(f"{err}; this file system has no file locks, so if that run is gone delete "
                               f"{self.path}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(self._owner_line())
        self.held = True
        return self

    def release(self) -> None:
        if not self.held:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # while still holding the lock: nobody else's file
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
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

    `check_output_dir` decides, before any work and again before the swap, whether a previous `path` may be
    replaced (nothing medqa did not write is ever deleted unless `overwrite`); on an error it is left untouched.
    A `path` that is a symbolic link is written through: the folder it names is replaced and the link kept. The
    new folder gets a manifest of its entries and of the command (`kind`) that wrote them."""
    shown, path = path, output_path(path)
    inputs = list(inputs)
    check_output_dir(shown, inputs, overwrite=overwrite, kind=kind)  # before any work
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise OutputError(f"{shown}: cannot create the output folder ({e.strerror or e})") from None
    try:
        yield tmp
        entries = sorted(p.name for p in tmp.iterdir())
        check_output_dir(shown, inputs, overwrite=overwrite, kind=kind)  # nothing foreign arrived meanwhile
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


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


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
