"""One source row -> one validated, scrubbed record in the project format (plus chat `messages`)."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

from medqa.data.formats import RawRow, validate_fields
from medqa.data.meta import complete_meta, infer_language
from medqa.data.schema import DEFAULT_INSTRUCTION, RISK_LEVELS, to_messages
from medqa.data.triage import dataset_critical, triage_label
from medqa.runs.io import InputError
from medqa.safety import red_flags
from medqa.text.pii import scrub_with_counts
from medqa.text.think import THINK_CLOSE, THINK_OPEN, join_think, split_think

MIN_THINK_CHARS = 20
_TERMINAL = tuple("。！？.!?)）」”\"'…~～") + ("**",)
_PUNCT_WS = re.compile(r"[\W_]+", re.UNICODE)


def question_key(question: str) -> str:
    """De-duplication key: NFKC, case-folded, with whitespace and punctuation removed."""
    norm = _PUNCT_WS.sub("", unicodedata.normalize("NFKC", question).casefold())
    return hashlib.sha1(norm.encode("utf-8")).hexdigest()


def _fields(row: RawRow) -> tuple[str, str, str, str, dict, tuple[str, str, str]]:
    """(instruction, question, think, answer, meta, (question_field, think_field, answer_field))."""
    d = row.data
    if row.fmt == "project":
        output = d["output"]
        if THINK_OPEN in output and THINK_CLOSE not in output:
            raise InputError(row.path, row.line, "output", f"{THINK_OPEN} has no closing {THINK_CLOSE} (truncated?)")
        if THINK_OPEN not in output:
            raise InputError(row.path, row.line, "output", f"no {THINK_OPEN}…{THINK_CLOSE} reasoning block")
        parts = split_think(output)
        return d.get("instruction") or "", d["input"], parts.think or "", parts.answer, d.get("meta") or {}, ("input", "output", "output")
    if row.fmt == "medical_o1":
        return "", d["Question"], d["Complex_CoT"], d["Response"], {}, ("Question", "Complex_CoT", "Response")
    think = d["think"]
    if THINK_OPEN in think or THINK_CLOSE in think:
        think = think.replace(THINK_OPEN, "").replace(THINK_CLOSE, "")
    meta = {"metrics": d["metrics"]} if isinstance(d.get("metrics"), dict) else {}
    return d.get("instruction") or "", d["question"], think, d["answer"], meta, ("question", "think", "answer")


DESCRIPTIVE_META = ("specialty", "complexity", "lang_style", "source")


def _check_meta(row: RawRow, meta: dict, coerced: Counter | None = None) -> dict:
    """The meta with descriptive scalars (a number or boolean `complexity`, `specialty`…) coerced to strings,
    each coercion counted in `coerced` ("meta.complexity: int -> str"); a null one is dropped (then inferred).
    Only what cannot be read is an error: a `risk_level` outside the vocabulary, or a list/object where a
    descriptive string belongs."""
    risk = meta.get("risk_level")
    if risk is not None and risk not in RISK_LEVELS:
        raise InputError(row.path, row.line, "meta.risk_level", f"{risk!r} is not one of {', '.join(RISK_LEVELS)}")
    meta = dict(meta)
    for key in DESCRIPTIVE_META:
        if key not in meta or isinstance(meta[key], str):
            continue
        value = meta[key]
        if isinstance(value, (list, dict)):
            raise InputError(row.path, row.line, f"meta.{key}", f"expected a string, got {type(value).__name__}")
        if coerced is not None:
            coerced[f"meta.{key}: {type(value).__name__} -> {'dropped' if value is None else 'str'}"] += 1
        if value is None:
            del meta[key]
        else:
            meta[key] = json.dumps(value) if isinstance(value, bool) else str(value)
    return meta


def normalize(row: RawRow, pii_counts: Counter | None = None, meta_coerced: Counter | None = None) -> dict:
    """Validate and convert one row; raises InputError (FILE:LINE: field: reason) on bad content.
    `meta_coerced` counts descriptive meta values coerced to strings (see `_check_meta`)."""
    validate_fields(row)
    instruction, question, think, answer, meta, (qf, tf, af) = _fields(row)
    meta = _check_meta(row, meta, meta_coerced)
    question, think, answer = question.strip(), think.strip(), answer.strip()
    if not question:
        raise InputError(row.path, row.line, qf, "empty question")
    if THINK_OPEN in answer or THINK_CLOSE in answer:
        raise InputError(row.path, row.line, af, "more than one think block")
    if not think:
        raise InputError(row.path, row.line, tf, "empty reasoning")
    if not answer:
        raise InputError(row.path, row.line, af, f"empty answer{' after ' + THINK_CLOSE if af == 'output' else ''}")

    removed: Counter = Counter()
    scrubbed = []
    for text in (instruction, question, think, answer):
        text, counts = scrub_with_counts(text)
        removed.update(counts)
        scrubbed.append(text)
    instruction, question, think, answer = scrubbed
    if pii_counts is not None:
        pii_counts.update(removed)

    source = meta.get("source") or Path(row.path).stem
    flags = red_flags(question)
    given_critical = dataset_critical(meta)  # the dataset's own mark, before a risk level is inferred
    meta = complete_meta(meta, question, think, answer, source=source, flags=flags)
    meta["is_deidentified"] = True
    # The emergency label from the lexicon and the dataset; `make data` adds the teacher's triage (data/triage.py).
    meta["triage"] = triage_label(flags, given_critical, None)
    flags = []
    if len(think) < MIN_THINK_CHARS:
        flags.append("short_think")
    if not answer.rstrip().endswith(_TERMINAL):
        flags.append("answer_maybe_truncated")
    if flags:
        meta["quality_flags"] = flags
    instruction = instruction or DEFAULT_INSTRUCTION[meta.get("lang_style") if meta.get("lang_style") in DEFAULT_INSTRUCTION else infer_language(question)]
    output = join_think(think, answer)
    rid = row.data.get("id") if row.fmt == "project" else None
    rid = str(rid) if rid not in (None, "") else f"{Path(row.path).stem}-{question_key(question)[:10]}"
    return {
        "id": rid, "instruction": instruction, "input": question, "output": output, "meta": meta,
        "messages": to_messages(instruction, question, output),
    }
