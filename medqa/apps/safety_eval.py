"""Precision and recall of the `medqa.safety` checks on a labelled set of questions and answers.

The labelled sets (`tests/data/safety_eval.jsonl`; `tests/data/safety_blind_r2.jsonl`, round 2) are written the way
people ask, independently of the patterns' own examples (medqa/safety/data/*.yaml). Each row is one of:

- `{"id", "kind": "question", "lang", "category", "needs_emergency": bool, "question"}`
- `{"id", "kind": "answer", "lang", "question", "answer", "urgent_referral": bool,
  "conditional_referral": bool, "risky_prescription": bool}`

`category` names the topic (a red-flag category or the look-alike it could be confused with), so hard negatives
sit in the same category as the emergencies they resemble. Rows are split deterministically into `tune` and
`holdout` by a hash of their id (`split_of`), so a pattern author can look at the misses of one part and keep
the other for an honest held-out number (`medqa safety-eval --misses` lists tune misses only).
An optional `batch` names rows added later ("fresh-1"…): each batch was written after the patterns of its time
and measured blind before any pattern was fitted to it (docs/safety.md keeps those first numbers).

The report also measures personal-identifier scrubbing (`medqa.text.pii.scrub`) on the labelled PII sets: identifier
recall (an identifier counts as found when it no longer appears in the scrubbed text) and the false-scrub rate on
clinical text without identifiers (rows with an empty `pii` list, and every row of `pii_clinical.jsonl`).
"""

from __future__ import annotations

import argparse
import os
import sys
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medqa import safety
from medqa.errors import ExitCode
from medqa.runs.io import InputError, iter_jsonl

DEFAULT_SET = Path("tests/data/safety_eval.jsonl")
DEFAULT_SETS = (DEFAULT_SET, Path("tests/data/safety_blind_r2.jsonl"))
_TEST_DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
PII_SETS = tuple(_TEST_DATA / f for f in ("pii_labelled.jsonl", "pii_blind_r2.jsonl", "pii_clinical.jsonl",
                                          "pii_blind_r3.jsonl", "pii_clinical_r3.jsonl", "pii_blind_r4.jsonl",
                                          "pii_clinical_r4.jsonl"))
DOC_PATH = Path("docs/safety.md")
TABLE_START, TABLE_END = "<!-- safety-eval-table:start -->", "<!-- safety-eval-table:end -->"

_QUESTION_FIELDS = {"id": str, "kind": str, "lang": str, "category": str, "needs_emergency": bool, "question": str}
_ANSWER_FIELDS = {"id": str, "kind": str, "lang": str, "question": str, "answer": str, "urgent_referral": bool,
                  "conditional_referral": bool, "risky_prescription": bool}
LANGS = ("zh", "en")


def split_of(row_id: str) -> str:
    """`holdout` for about a third of the ids (crc32 % 3 == 0), `tune` for the rest; stable across runs."""
    return "holdout" if zlib.crc32(row_id.encode("utf-8")) % 3 == 0 else "tune"


def load(path: str | os.PathLike = DEFAULT_SET) -> list[dict[str, Any]]:
    """The labelled rows, checked: bad rows raise `InputError` naming file, line and field."""
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for line, row in iter_jsonl(path):
        kind = row.get("kind")
        fields = {"question": _QUESTION_FIELDS, "answer": _ANSWER_FIELDS}.get(kind)
        if fields is None:
            raise InputError(path, line, "kind", f"expected 'question' or 'answer', got {kind!r}")
        for name, typ in fields.items():
            if not isinstance(row.get(name), typ):
                raise InputError(path, line, name, f"expected {typ.__name__}, got {type(row.get(name)).__name__}")
        if row["lang"] not in LANGS:
            raise InputError(path, line, "lang", f"expected one of {', '.join(LANGS)}, got {row['lang']!r}")
        if not isinstance(row.get("batch", ""), str):
            raise InputError(path, line, "batch", f"expected str, got {type(row['batch']).__name__}")
        if row["id"] in seen:
            raise InputError(path, line, "id", f"duplicate id {row['id']!r} (first on line {seen[row['id']]})")
        seen[row["id"]] = line
        rows.append(row)
    return rows


def load_sets(paths: Iterable[str | os.PathLike] = DEFAULT_SETS) -> list[dict[str, Any]]:
    """The rows of several labelled files; an id used in two files raises `InputError` naming the second."""
    rows: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for path in paths:
        for row in load(path):
            if row["id"] in seen:
                line = next(n for n, r in iter_jsonl(path) if r.get("id") == row["id"])
                raise InputError(path, line, "id", f"duplicate id {row['id']!r} (also in {seen[row['id']]})")
            seen[row["id"]] = str(path)
            rows.append(row)
    return rows


@dataclass(frozen=True)
class Check:
    name: str
    kind: str  # which rows it applies to: question | answer
    predict: Callable[[dict[str, Any]], bool]


def _conditional(row: dict[str, Any]) -> bool | None:
    fn = getattr(safety, "has_conditional_referral", None)
    return None if fn is None else bool(fn(row["answer"]))


CHECKS: tuple[Check, ...] = (
    Check("needs_emergency", "question", lambda r: safety.needs_emergency(r["question"])),
    Check("urgent_referral", "answer", lambda r: safety.has_emergency_referral(r["answer"])),
    Check("conditional_referral", "answer", _conditional),
    Check("risky_prescription", "answer", lambda r: safety.risky_prescription(r["answer"], r["question"])),
)


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, label: bool, pred: bool) -> None:
        if label and pred:
            self.tp += 1
        elif pred:
            self.fp += 1
        elif label:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    def as_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn, "n": self.tp + self.fp + self.fn + self.tn,
                "precision": self.precision, "recall": self.recall}


def predictions(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (row, applicable check): {id, check, lang, category, split, label, pred}."""
    out = []
    for row in rows:
        for check in CHECKS:
            if check.kind != row["kind"]:
                continue
            pred = check.predict(row)
            if pred is None:  # the check does not exist in this version of medqa.safety
                continue
            out.append({"id": row["id"], "check": check.name, "lang": row["lang"],
                        "category": row.get("category", "-"), "split": split_of(row["id"]),
                        "batch": row.get("batch") or "set-1",
                        "label": bool(row[check.name]), "pred": bool(pred),
                        "text": row.get("answer") or row["question"]})
    return out


def measure(preds: Iterable[dict[str, Any]], split: str | None = None, batch: str | None = None) -> dict[str, Any]:
    """{"checks": {check: counts}, "by_lang": {check: {lang: counts}},
    "categories": {category: {lang: counts}} (needs_emergency only)} over one split or all rows."""
    checks: dict[str, Counts] = defaultdict(Counts)
    by_lang: dict[str, dict[str, Counts]] = defaultdict(lambda: defaultdict(Counts))
    cats: dict[str, dict[str, Counts]] = defaultdict(lambda: defaultdict(Counts))
    for p in preds:
        if (split and p["split"] != split) or (batch and p["batch"] != batch):
            continue
        checks[p["check"]].add(p["label"], p["pred"])
        by_lang[p["check"]][p["lang"]].add(p["label"], p["pred"])
        if p["check"] == "needs_emergency":
            cats[p["category"]][p["lang"]].add(p["label"], p["pred"])
            cats[p["category"]]["all"].add(p["label"], p["pred"])
    return {
        "checks": {k: v.as_dict() for k, v in checks.items()},
        "by_lang": {k: {lang: c.as_dict() for lang, c in v.items()} for k, v in by_lang.items()},
        "categories": {k: {lang: c.as_dict() for lang, c in v.items()} for k, v in sorted(cats.items())},
    }


# ----------------------------------------------------------------------------------------------- report

def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def _pr(c: dict[str, Any] | None) -> str:
    if not c or not c["n"]:
        return "–"
    return f"{_f(c['precision'])} / {_f(c['recall'])} ({c['tp'] + c['fn']}+, {c['fp'] + c['tn']}−)"


def render_coverage() -> str:
    """Markdown: per triage source of red_flags.yaml, its categories covered by a rule whose examples pass."""
    lines = ["Red-flag coverage of the published triage sources (a source category is covered when a rule naming it "
             "passes its examples):", "", "| source | categories covered / total | not covered |", "|---|---|---|"]
    for key, c in safety.source_coverage().items():
        lines.append(f"| {key}: {c['name']} | {len(c['covered'])} / {c['total']} | {', '.join(c['missing']) or '–'} |")
    return "\n".join(lines)


def render_table(preds: list[dict[str, Any]]) -> str:
    """Markdown: source coverage, per check (all rows, holdout, zh, en), then needs_emergency per category and
    language."""
    allm, hold = measure(preds), measure(preds, "holdout")
    lines = [render_coverage(), "", "Precision / recall (positives, negatives).", "",
             "| check | all | holdout only | zh | en |", "|---|---|---|---|---|"]
    for name in (c.name for c in CHECKS):
        if name not in allm["checks"]:
            continue
        lines.append(f"| `{name}` | {_pr(allm['checks'][name])} | {_pr(hold['checks'].get(name))} | "
                     f"{_pr(allm['by_lang'][name].get('zh'))} | {_pr(allm['by_lang'][name].get('en'))} |")
    batches = sorted({p["batch"] for p in preds})
    if len(batches) > 1:
        names = [c.name for c in CHECKS if c.name in allm["checks"]]
        lines += ["", "Per batch of the labelled sets:", "", "| batch | " + " | ".join(f"`{n}`" for n in names) + " |",
                  "|---|" + "---|" * len(names)]
        for b in batches:
            m = measure(preds, batch=b)["checks"]
            lines.append(f"| {b} | " + " | ".join(_pr(m.get(n)) for n in names) + " |")
    lines += ["", "`needs_emergency` per category (a category holds its emergencies and the look-alikes that are not):",
              "", "| category | all | zh | en |", "|---|---|---|---|"]
    for cat, langs in allm["categories"].items():
        lines.append(f"| {cat} | {_pr(langs.get('all'))} | {_pr(langs.get('zh'))} | {_pr(langs.get('en'))} |")
    return "\n".join(lines)


def pii_measure(path: str | os.PathLike) -> dict[str, int]:
    """{"found", "identifiers", "false_scrubs", "clinical"} for one labelled PII file (`{"text", "pii": [...]}` rows;
    a row without identifiers, or any row of a file of clinical text, counts towards false scrubs)."""
    from medqa.text.pii import scrub

    out = {"found": 0, "identifiers": 0, "false_scrubs": 0, "clinical": 0}
    for _, row in iter_jsonl(path):
        scrubbed = scrub(row["text"])
        pii = row.get("pii") or []
        out["identifiers"] += len(pii)
        out["found"] += sum(ident not in scrubbed for ident in pii)
        if not pii:
            out["clinical"] += 1
            out["false_scrubs"] += scrubbed != row["text"]
    return out


def render_pii_table(paths: Iterable[str | os.PathLike] = PII_SETS) -> str:
    lines = ["Personal identifiers (`medqa.text.pii.scrub`): identifiers removed, and clinical texts changed.", "",
             "| set | identifier recall | false scrubs |", "|---|---|---|"]
    for path in paths:
        m = pii_measure(path)
        recall = f"{m['found']}/{m['identifiers']} = {m['found'] / m['identifiers']:.2f}" if m["identifiers"] else "–"
        rate = f"{m['false_scrubs']}/{m['clinical']} = {m['false_scrubs'] / m['clinical']:.3f}" if m["clinical"] else "–"
        lines.append(f"| {Path(path).name} | {recall} | {rate} |")
    return "\n".join(lines)


def full_report(preds: list[dict[str, Any]]) -> str:
    """The checks' table and the PII table: what docs/safety.md shows and `make safety-eval` prints."""
    return render_table(preds) + "\n\n" + render_pii_table()


def update_doc(table: str, path: str | os.PathLike = DOC_PATH) -> bool:
    """Replace the generated table between the markers in `path`; True when the file changed."""
    from medqa.runs.io import atomic_write

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    new = text[:start] + "\n" + table + "\n" + text[end:]
    if new == text:
        return False
    with atomic_write(path) as fh:
        fh.write(new)
    return True


def doc_table(path: str | os.PathLike = DOC_PATH) -> str:
    text = Path(path).read_text(encoding="utf-8")
    return text[text.index(TABLE_START) + len(TABLE_START):text.index(TABLE_END)].strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="medqa safety-eval", description=__doc__.split("\n")[0])
    ap.add_argument("--data", action="append", help="labelled JSONL, repeatable (default: "
                    + ", ".join(str(p) for p in DEFAULT_SETS) + ")")
    ap.add_argument("--misses", action="store_true", help="list the misses of the tune split (never the holdout)")
    ap.add_argument("--write-doc", action="store_true", help=f"write the table into {DOC_PATH}")
    ap.add_argument("--check-doc", action="store_true", help=f"exit 1 when the table in {DOC_PATH} is out of date")
    args = ap.parse_args(argv)
    try:
        preds = predictions(load_sets(args.data or DEFAULT_SETS))
        table = render_table(preds) if args.data else full_report(preds)
    except (InputError, OSError) as e:
        print(f"medqa safety-eval: error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if args.write_doc:
        print(f"{DOC_PATH}: {'updated' if update_doc(table) else 'already up to date'}")
    elif args.check_doc:
        if doc_table() != table.strip():
            print(f"{DOC_PATH} is out of date: run `medqa safety-eval --write-doc` (make safety-doc)", file=sys.stderr)
            return ExitCode.FAILED
        print(f"{DOC_PATH} matches the labelled set")
    else:
        print(table)
    if args.misses:
        for p in preds:
            if p["split"] == "tune" and p["label"] != p["pred"]:
                kind = "FN" if p["label"] else "FP"
                print(f"{kind} {p['check']:<20} {p['id']} [{p['category']}] {p['text']}")
    return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
