"""`medqa data prepare`: sources -> validated, scrubbed, de-duplicated, split training files.

Writes train/dev/test/gold_set/red_team JSONL, stats.json and DATA_CARD.md into --out, all or
nothing: everything is written into a temporary folder beside --out and swapped in at the end.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from medqa.data.formats import list_files, read_source
from medqa.data.normalize import normalize, question_key
from medqa.data.splits import GOLD_CRITERIA, gold_set, red_team_set, stratified_split
from medqa.data.triage import TriageReport, record_triage, triage_counts
from medqa.runs.io import InputError, atomic_dir, write_jsonl


@dataclass
class PrepareReport:
    rows_read: int = 0
    duplicates: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count (with --on-error skip)
    pii_removed: Counter = field(default_factory=Counter)
    meta_coerced: Counter = field(default_factory=Counter)  # "meta.complexity: int -> str" -> rows
    files: list[str] = field(default_factory=list)
    ids_renamed: int = 0  # rows whose id repeated an earlier one (with --on-error skip)


def _is_red_team(record: dict, path: str) -> bool:
    return record["meta"].get("source") == "red_team" or "red_team" in Path(path).stem


def load_records(inputs: list[str], fmt: str = "auto", on_error: str = "fail", exclude: str | Path | None = None
                 ) -> tuple[list[dict], list[dict], PrepareReport]:
    """Read every input (never the output folder `exclude`); return (records, shipped red-team records, report).
    Raises InputError in fail mode. Ids are unique: a repeated id fails, or with `skip` gets a `~N` suffix."""
    report = PrepareReport()

    def skip(err: InputError) -> None:
        if on_error == "fail":
            raise err
        report.skipped[f"{err.field or 'row'}: {err.reason.split(' (')[0]}"] += 1

    records, red_team, seen = [], [], set()
    ids: dict[str, str] = {}  # id -> where it was first seen
    for spec in inputs:
        for path in list_files(spec, exclude=exclude):
            report.files.append(path)
            for row in tqdm(read_source(path, fmt, on_error=skip), desc=Path(path).name, unit="row", disable=None, leave=False):
                report.rows_read += 1
                try:
                    record = normalize(row, report.pii_removed, report.meta_coerced)
                except InputError as err:
                    skip(err)
                    continue
                key = question_key(record["input"])
                if key in seen:
                    report.duplicates += 1
                    continue
                seen.add(key)
                rid = record["id"]
                if rid in ids:
                    if on_error == "fail":
                        raise InputError(row.path, row.line, "id", f"duplicate id {rid!r} (first at {ids[rid]}); "
                                                                   "--on-error skip renames repeats to ID~N")
                    n = 2
                    while f"{rid}~{n}" in ids:
                        n += 1
                    record["id"] = rid = f"{rid}~{n}"
                    report.ids_renamed += 1
                ids[rid] = f"{row.path}:{row.line}"
                (red_team if _is_red_team(record, path) else records).append(record)
    return records, red_team, report


def _counts(rows: list[dict], key: str) -> dict[str, int]:
    return dict(sorted(Counter(r["meta"].get(key, "?") for r in rows).items()))


def _length_stats(values: list[int]) -> dict:
    if not values:
        return {}
    values = sorted(values)
    return {"mean": round(statistics.fmean(values), 1), "p50": values[len(values) // 2],
            "p95": values[min(len(values) - 1, int(0.95 * len(values)))], "max": values[-1]}


def compute_stats(sets: dict[str, list[dict]], report: PrepareReport, tokenizer=None,
                  triage: TriageReport | None = None) -> dict:
    stats: dict = {
        "inputs": report.files, "rows_read": report.rows_read, "duplicates_removed": report.duplicates,
        "skipped": dict(report.skipped), "ids_renamed": report.ids_renamed, "pii_removed": dict(report.pii_removed),
        "meta_coerced": dict(sorted(report.meta_coerced.items())),
        "triage": (triage or TriageReport()).as_dict(), "splits": {},
    }
    for name, rows in sets.items():
        entry = {"count": len(rows), "risk_level": _counts(rows, "risk_level"), "specialty": _counts(rows, "specialty"),
                 "lang_style": _counts(rows, "lang_style"), "triage": triage_counts([r["meta"] for r in rows]),
                 "chars_per_example": _length_stats([len(r["output"]) + len(r["input"]) for r in rows])}
        if tokenizer is not None and rows:
            lengths = [len(tokenizer(tokenizer.apply_chat_template(r["messages"], tokenize=False))["input_ids"]) for r in rows]
            entry["tokens_per_example"] = _length_stats(lengths)
        stats["splits"][name] = entry
    return stats


def data_card(stats: dict) -> str:
    lines = ["# Data card", "", "Generated by `medqa data prepare`; numbers come from `stats.json` of the same run.", "",
             f"Inputs: {', '.join(f'`{f}`' for f in stats['inputs'])}", "",
             f"Rows read: {stats['rows_read']}; duplicates removed: {stats['duplicates_removed']}; "
             f"skipped: {sum(stats['skipped'].values())}; personal identifiers scrubbed: {sum(stats['pii_removed'].values())} "
             f"({', '.join(f'{k} {v}' for k, v in stats['pii_removed'].items()) or 'none'}).", "",
             "| set | rows | low | medium | high | critical | zh | en | tokens/example (mean, p95) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in stats["splits"].items():
        risk, lang = s["risk_level"], s["lang_style"]
        tok = s.get("tokens_per_example")
        tok_text = f"{tok['mean']}, {tok['p95']}" if tok else "n/a (no --tokenizer)"
        lines.append(f"| {name} | {s['count']} | {risk.get('low', 0)} | {risk.get('medium', 0)} | {risk.get('high', 0)} | "
                     f"{risk.get('critical', 0)} | {lang.get('zh', 0)} | {lang.get('en', 0)} | {tok_text} |")
    specialties = sorted({sp for s in stats["splits"].values() for sp in s["specialty"]})
    lines += ["", "## Specialties", "", "| specialty | " + " | ".join(stats["splits"]) + " |", "|---|" + "---|" * len(stats["splits"])]
    for sp in specialties:
        lines.append(f"| {sp} | " + " | ".join(str(s["specialty"].get(sp, 0)) for s in stats["splits"].values()) + " |")
    lines += ["", "## Emergency label (`meta.triage`)", "", _triage_note(stats.get("triage") or {}), "",
              "| set | emergency (union) | lexicon | teacher | dataset | teacher only | teacher failed | teacher not asked |",
              "|---|---|---|---|---|---|---|---|"]
    for name, s in stats["splits"].items():
        t = s.get("triage") or {}
        lines.append(f"| {name} | {t.get('emergency', 0)} | {t.get('lexicon', 0)} | {t.get('teacher', 0)} | "
                     f"{t.get('dataset', 0)} | {t.get('teacher_only', 0)} | {t.get('teacher_failed', 0)} | "
                     f"{t.get('teacher_not_asked', 0)} |")
    lines += ["", "## How the sets are made", "",
              "- train/dev/test: 80/10/10, stratified by (risk_level, specialty), deterministic with the seed.",
              "- gold_set: " + "; ".join(GOLD_CRITERIA) + ".",
              "- red_team: the shipped red-team prompts plus the high/critical-risk items of dev + test.",
              "- Every record's text is scrubbed of personal identifiers (phones, ID numbers, emails, record numbers, "
              "dates of birth, names after 患者/patient patterns) and marked `is_deidentified: true`.",
              "- Duplicates: same question after NFKC, case-folding and removing whitespace/punctuation; the first is kept.", ""]
    if stats.get("meta_coerced"):
        lines += ["## Meta values coerced to strings", "", "| field | rows |", "|---|---|"] + \
            [f"| {k} | {v} |" for k, v in stats["meta_coerced"].items()] + [""]
    if stats["skipped"]:
        lines += ["## Skipped rows", "", "| reason | rows |", "|---|---|"] + [f"| {k} | {v} |" for k, v in stats["skipped"].items()] + [""]
    return "\n".join(lines)


def _triage_note(t: dict) -> str:
    """One paragraph: what the emergency label is and who the teacher was in this run."""
    who = t.get("teacher")
    if who is None:
        teacher = "the teacher was not asked"
    elif who == "teacher-offline":
        teacher = ("the teacher was the OFFLINE heuristic judge (`teacher-offline`: the lexicon again, not an LLM, so "
                   "it adds no emergency the lexicon misses)")
    else:
        teacher = f"the teacher was `{who}`"
    failed = f"; {t['failed']} of {t['questions']} questions got no teacher answer and keep lexicon + dataset" \
        if t.get("failed") else ""
    return ("Items marked as needing emergency care now: the union of the lexicon (`medqa.safety.red_flags`), the "
            "teacher's triage (one call per unique question, cached) and the dataset's own `risk_level: critical`; "
            f"each item records which source said so. In this run {teacher}{failed}. The RL reward's emergency term "
            "and eval's emergency coverage read the same label (`medqa.safety.needs_emergency`).")


def write_outputs(out: Path, sets: dict[str, list[dict]], stats: dict, inputs: list[str] = (),
                  overwrite: bool = False) -> None:
    """Write every output into a temp folder, then swap it in place of `out` (never a partial folder, never over
    files medqa did not write unless `overwrite`, never over an input)."""
    with atomic_dir(out, inputs=[i for i in inputs if Path(i).exists()], overwrite=overwrite, kind="data") as tmp:
        for name, rows in sets.items():
            write_jsonl(tmp / f"{name}.jsonl", rows)
        (tmp / "stats.json").write_text(json.dumps(stats, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        (tmp / "DATA_CARD.md").write_text(data_card(stats), encoding="utf-8")


def prepare(inputs: list[str], out: str | Path, *, fmt: str = "auto", on_error: str = "fail", seed: int = 42,
            tokenizer_path: str | None = None, overwrite: bool = False, teacher=None, on_triage=None) -> dict:
    """The whole `medqa data prepare` run; returns stats (also written to out/stats.json).

    `teacher` (a `medqa.teacher.setup.Teacher`, or a function that builds one when the questions are ready): its
    triage of each unique question joins the lexicon and the dataset in `meta.triage` (`medqa.data.triage`);
    without one the label records that it was not asked.
    `on_triage` receives the run's `TriageReport` (with the requests and cache hits, which stats.json leaves out)."""
    from medqa.runs.io import preflight_output_dir

    preflight_output_dir(out, [i for i in inputs if Path(i).exists()], overwrite=overwrite, kind="data")
    records, shipped_red_team, report = load_records(inputs, fmt, on_error, exclude=out)
    if not records:
        raise InputError(", ".join(inputs), None, None, "no usable rows")
    triage = record_triage([(r["input"], r["meta"]) for r in records + shipped_red_team], teacher)
    if on_triage is not None:
        on_triage(triage)
    splits = stratified_split(records, seed=seed)
    sets = {**splits, "gold_set": gold_set(splits), "red_team": red_team_set(shipped_red_team, splits)}
    tokenizer = None
    if tokenizer_path:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    stats = compute_stats(sets, report, tokenizer, triage)
    write_outputs(Path(out), sets, stats, inputs, overwrite)
    return stats
