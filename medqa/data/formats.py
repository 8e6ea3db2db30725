"""Source formats and their readers: every row becomes a `RawRow` that knows where it came from.

Formats (auto-detected per file from the first row's fields, or forced with --format):
  project      {"instruction", "input", "output": "<think>…</think>\\nanswer", "meta": {…}}
  medical_o1   {"Question", "Complex_CoT", "Response"}            FreedomIntelligence/medical-o1-reasoning-SFT
  delicate_r1  {"instruction", "question", "think", "answer", "metrics"}   krisfu/delicate_medical_r1_data
Evaluation-only formats are recognised so they are never mistaken for training data: inside a directory input
such a file is skipped with a one-line note; named on its own it is an error that says which command uses it.
  exam_mc      {"question", "options", "answer"}   multiple-choice exams (CMB / MedQA-MCMLE style), `make eval`
Files: .jsonl, .json (an array of objects, or JSON lines), .parquet; a directory means every such file
in it, recursively, in sorted order; a Hugging Face dataset id (`owner/name` or `owner/name:config`)
is loaded with `datasets.load_dataset`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from medqa.runs.io import InputError, iter_jsonl

FORMATS: dict[str, dict[str, type | tuple[type, ...]]] = {
    # format -> required fields and their types
    "project": {"input": str, "output": str},
    "medical_o1": {"Question": str, "Complex_CoT": str, "Response": str},
    "delicate_r1": {"question": str, "think": str, "answer": str},
}
OPTIONAL_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "project": {"instruction": str, "meta": dict, "id": (str, int)},
    "medical_o1": {},
    "delicate_r1": {"instruction": str, "metrics": (dict, type(None))},
}
# format -> (fields that identify it, what it is and which command uses it)
EVAL_ONLY_FORMATS: dict[str, tuple[frozenset[str], str]] = {
    "exam_mc": (
        frozenset({"question", "options", "answer"}),
        "a multiple-choice exam set (question, options, answer letter): evaluation data, not training data; "
        "`make eval` scores a model on it (EVAL_EXAM=FILE)",
    ),
}
HF_CONFIGS = {"FreedomIntelligence/medical-o1-reasoning-SFT": "mix"}
SUFFIXES = (".jsonl", ".json", ".parquet")
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")


@dataclass
class RawRow:
    data: dict
    path: str
    line: int | str  # line number in a JSON/JSONL file, "row N" in Parquet/hub data
    fmt: str


def detect_format(row: dict) -> str | None:
    """The training format of a row (or an EVAL_ONLY_FORMATS name) from its field names; None if unknown."""
    keys = set(row)
    for name, (fields, _) in EVAL_ONLY_FORMATS.items():
        if fields <= keys:
            return name
    if {"Question", "Response"} <= keys:
        return "medical_o1"
    if {"question", "think", "answer"} & keys and "question" in keys:
        return "delicate_r1"
    if {"input", "output"} & keys:
        return "project"
    return None


def validate_fields(row: RawRow) -> None:
    """Required fields present and of the right type; optional ones of the right type when present."""
    for name, typ in FORMATS[row.fmt].items():
        if name not in row.data or row.data[name] is None:
            raise InputError(row.path, row.line, name, f"missing required field for format {row.fmt!r}")
        if not isinstance(row.data[name], typ):
            raise InputError(row.path, row.line, name, f"expected {_tname(typ)}, got {type(row.data[name]).__name__}")
    for name, typ in OPTIONAL_FIELDS[row.fmt].items():
        if name in row.data and not isinstance(row.data[name], typ):
            raise InputError(row.path, row.line, name, f"expected {_tname(typ)}, got {type(row.data[name]).__name__}")


def _tname(typ) -> str:
    names = [t.__name__ for t in (typ if isinstance(typ, tuple) else (typ,)) if t is not type(None)]
    return {"str": "string", "dict": "object", "int": "integer"}.get(names[0], names[0]) if len(names) == 1 else " or ".join(names)


def _iter_json_array(path: Path, on_error=None) -> Iterator[tuple[int, dict]]:
    """Elements of a top-level JSON array with the line each starts on (JSON lines also accepted)."""
    try:
        yield from _iter_json_array_strict(path, on_error)
    except InputError as err:
        if on_error is None:
            raise
        on_error(err)


def _iter_json_array_strict(path: Path, on_error) -> Iterator[tuple[int, dict]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(path, line, None, f"not valid UTF-8 (byte {e.start})") from None
    stripped = text.lstrip()
    if not stripped.startswith("["):
        yield from iter_jsonl(path, on_error=on_error)
        return
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise InputError(path, text.count("\n") + 1, None, "malformed JSON (unterminated array)")
        if text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            obj, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise InputError(path, text.count("\n", 0, e.pos) + 1, None, f"malformed JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise InputError(path, line, None, f"expected a JSON object, got {type(obj).__name__}")
        yield line, obj


def _iter_parquet(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
        yield f"row {i}", row


def _iter_hub(spec: str) -> Iterator[tuple[str, dict]]:
    """A dataset on the Hugging Face hub (needs network; `owner/name:config` picks a config)."""
    from datasets import load_dataset

    name, _, config = spec.partition(":")
    ds = load_dataset(name, config or HF_CONFIGS.get(name), split="train")
    for i, row in enumerate(ds, start=1):
        yield f"row {i}", dict(row)


def _skipped_in_folder(p: Path, top: Path, exclude: Path | None) -> bool:
    """A file inside an input folder that is not input: under the output folder, a hidden folder (temp folders
    of an output being written) or any folder medqa wrote (it holds a manifest)."""
    from medqa.runs.io import MANIFEST

    if exclude is not None and (p == exclude or exclude in p.parents):
        return True
    for parent in p.relative_to(top).parents:
        if parent.name.startswith(".") or (top / parent / MANIFEST).is_file():
            return True
    return False


def _first_row(path: Path) -> dict | None:
    """The first row of a local file (Parquet: its column names), or None when it cannot be read: the real
    read reports that with its location."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return dict.fromkeys(pq.read_schema(path).names)
        rows = iter_jsonl(path) if path.suffix == ".jsonl" else _iter_json_array_strict(path, None)
        return next((row for _, row in rows), None)
    except (InputError, OSError, ValueError):
        return None


def eval_only_format(path: str | Path) -> str | None:
    """The EVAL_ONLY_FORMATS name of a local file, detected from its first row; None for anything else."""
    row = _first_row(Path(path))
    fmt = detect_format(row) if row is not None else None
    return fmt if fmt in EVAL_ONLY_FORMATS else None


def _print_note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def list_files(spec: str, exclude: str | Path | None = None, note: Callable[[str], None] = _print_note) -> list[str]:
    """Expand one --input into files (or a hub id). `exclude` (the output folder) is never read; evaluation-only
    files inside a directory are left out, each with a one-line `note`."""
    path = Path(spec)
    if path.is_dir():
        top, skip = path.resolve(), Path(exclude).resolve() if exclude is not None else None
        files = sorted(str(p) for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()
                       and not _skipped_in_folder(p.resolve(), top, skip))
        if not files:
            raise InputError(spec, None, None, f"no {'/'.join(SUFFIXES)} files in this directory")
        kept = []
        for file in files:
            fmt = eval_only_format(file)
            if fmt is None:
                kept.append(file)
            else:
                note(f"skipping {file}: {EVAL_ONLY_FORMATS[fmt][1]}")
        if not kept:
            raise InputError(spec, None, None, "no training files in this directory (only evaluation-only ones)")
        return kept
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise InputError(spec, None, None, f"unsupported file type {path.suffix!r} (expected one of {', '.join(SUFFIXES)})")
        return [spec]
    if _HF_ID.match(spec):
        return [spec]
    raise InputError(spec, None, None, "no such file or directory (and not a Hugging Face dataset id)")


def read_source(spec: str, fmt: str = "auto", on_error: Callable[[InputError], None] | None = None) -> Iterator[RawRow]:
    """Rows of one file (or hub dataset) with their location and format.

    Bad bytes or JSON raise InputError, or go to `on_error` (JSONL: line by line; a broken JSON array
    file is skipped whole since nothing after the error can be located reliably).
    """
    path = Path(spec)
    if path.suffix == ".parquet":
        rows = _iter_parquet(path)
    elif path.suffix == ".jsonl":
        rows = iter_jsonl(path, on_error=on_error)
    elif path.suffix == ".json":
        rows = _iter_json_array(path, on_error)
    else:
        rows = _iter_hub(spec)
    file_fmt = None if fmt == "auto" else fmt
    for line, data in rows:
        if file_fmt is None:
            file_fmt = detect_format(data)
            if file_fmt is None:
                raise InputError(spec, line, None, f"cannot detect the format from fields {sorted(data)}; use --format {{{','.join(FORMATS)}}}")
            if file_fmt in EVAL_ONLY_FORMATS:
                raise InputError(spec, None, None, f"this is {EVAL_ONLY_FORMATS[file_fmt][1]}; leave it out of --input")
        yield RawRow(data, spec, line, file_fmt)
