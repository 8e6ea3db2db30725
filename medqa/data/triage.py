"""The recorded emergency label of a question: the union of the lexicon, the teacher's triage and the dataset.

`make data` (`medqa data prepare`) and `make rl-prompts` (`medqa data rl-prompts`) write into each item's meta:

    meta["triage"] = {"emergency": bool,            # the union: any source below said so
                      "sources": [...],             # who said so: "lexicon", "teacher:<model>" | "teacher-offline",
                                                    # "dataset"
                      "category": str,              # the first lexicon category, else the teacher's, else
                                                    # "unspecified" (an emergency only the dataset marks), or "none"
                      "lexicon": [...],             # `medqa.safety.red_flags(question)` when it was recorded
                      "teacher": {...} | None}      # the teacher's triage, its failure, or None (not asked)

- lexicon: `medqa.safety.red_flags` on the (scrubbed) question;
- dataset: the source row's own `risk_level: critical` — a risk level `medqa.data.meta` inferred from red flags is
  the lexicon, not the dataset;
- teacher: one triage per unique question (`TeacherClient.triage_many`: scrubbed, cached, single flight). Its
  entry is `{"by", "emergency", "category", "reason", "model", "requested_model", "endpoint", "offline",
  "rubric_version"}`, or `{"by", "error"}` when it did not answer (the item keeps lexicon + dataset; nothing is
  made up). `by` is `teacher-offline` for the offline heuristic judge (which answers with the lexicon, so it adds
  nothing) and `teacher:<model>` for a real teacher.

`medqa.safety.needs_emergency(question, meta)` returns `meta["triage"]["emergency"]` when it is recorded, so the
RL reward's emergency term, eval's emergency coverage and the data card read this one label.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LEXICON, DATASET, TEACHER_OFFLINE = "lexicon", "dataset", "teacher-offline"


def teacher_name(model: str, offline: bool) -> str:
    """The source name of a teacher: `teacher-offline` for the offline heuristic judge, else `teacher:<model>`."""
    return TEACHER_OFFLINE if offline else f"teacher:{model}"


def is_teacher_source(source: str) -> bool:
    return source == TEACHER_OFFLINE or source.startswith("teacher:")


def triage_label(flags: list[str], dataset: bool, teacher: Mapping[str, Any] | None) -> dict[str, Any]:
    """The combined label of one question from its lexicon red flags, the dataset's critical mark and the
    teacher's entry (see the module docstring)."""
    teacher_says = bool(teacher) and teacher.get("emergency") is True
    sources = ([LEXICON] if flags else []) + ([teacher["by"]] if teacher_says else []) + ([DATASET] if dataset else [])
    if flags:
        category = flags[0]
    elif teacher_says:
        category = teacher.get("category") or "unspecified"
    else:
        category = "unspecified" if dataset else "none"
    return {"emergency": bool(sources), "sources": sources, "category": category, "lexicon": list(flags),
            "teacher": dict(teacher) if teacher is not None else None}


def dataset_critical(meta: Mapping[str, Any]) -> bool:
    """The dataset's own emergency mark: from a recorded label when there is one (it knows whether the risk level
    was given or inferred), else `risk_level == "critical"`."""
    label = meta.get("triage")
    if isinstance(label, Mapping) and isinstance(label.get("sources"), list):
        return DATASET in label["sources"]
    return str(meta.get("risk_level", "")).lower() == "critical"


def teacher_entry(result: Any, asked: str) -> dict[str, Any]:
    """A `TriageResult` as the label's `teacher` entry; a failure keeps only who was asked (`asked`, a
    `teacher_name`) and the error."""
    if not result.ok:
        return {"by": asked, "error": result.error or "no answer"}
    f = result.teacher_field()
    f.pop("cached", None)  # how this run got it, not what it says: the recorded data stays the same on a rerun
    return {"by": teacher_name(result.model, result.offline), **f}


@dataclass
class TriageReport:
    """What a run's teacher triage did: who was asked, how many unique questions, answered and failed, usage."""

    teacher: str | None = None
    questions: int = 0
    answered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # a few distinct error messages
    usage: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """What `stats.json` records: the same on a rerun (requests and cache hits are printed, not recorded)."""
        return {"teacher": self.teacher, "questions": self.questions, "answered": self.answered,
                "failed": self.failed, "errors": self.errors}


def record_triage(items: list[tuple[str, dict]], teacher: Any = None) -> TriageReport:
    """Write `meta["triage"]` into each (question, meta) item, in place: the lexicon on the question, the dataset's
    critical mark (`dataset_critical`) and — with `teacher` — its triage, asked once per unique question. Without
    a teacher the label records `"teacher": None` (not asked).

    `teacher` is a `medqa.teacher.setup.Teacher`, or a function that builds one: then it is built here, once the
    questions are read and checked (a bad input fails before any teacher starts), and closed after the triage."""
    from medqa.safety import red_flags

    report = TriageReport()
    answers: dict[str, dict[str, Any]] = {}
    if teacher is not None:
        from medqa.teacher.client import triage_questions_async

        unique = list(dict.fromkeys(q for q, _ in items))
        built = teacher() if callable(teacher) else None
        teacher = built or teacher
        asked = teacher_name(teacher.config.model, teacher.offline)  # the offline judge is gone once closed
        try:
            results, usage = asyncio.run(triage_questions_async(teacher.config, unique, teacher.cache_path))
        finally:
            if built is not None:
                built.close()
        answers = {q: teacher_entry(r, asked) for q, r in zip(unique, results, strict=True)}
        report.teacher = asked
        report.questions = len(unique)
        report.failed = sum(1 for r in results if not r.ok)
        report.answered = report.questions - report.failed
        report.errors = list(dict.fromkeys(r.error for r in results if not r.ok and r.error))[:5]
        report.usage = usage.summary(teacher.config)
    for question, meta in items:
        meta["triage"] = triage_label(red_flags(question), dataset_critical(meta), answers.get(question))
    return report


def triage_counts(metas: list[Mapping[str, Any]]) -> dict[str, int]:
    """Per source, how many items it marks as an emergency; the union; the items only the teacher marks; and the
    items whose teacher did not answer or was not asked."""
    out = {"emergency": 0, LEXICON: 0, "teacher": 0, DATASET: 0, "teacher_only": 0, "teacher_failed": 0,
           "teacher_not_asked": 0}
    for meta in metas:
        label = meta.get("triage")
        if not isinstance(label, Mapping):
            out["teacher_not_asked"] += 1
            continue
        sources = label.get("sources") or []
        out["emergency"] += bool(label.get("emergency"))
        out[LEXICON] += LEXICON in sources
        out[DATASET] += DATASET in sources
        said = [s for s in sources if is_teacher_source(s)]
        out["teacher"] += bool(said)
        out["teacher_only"] += bool(said) and len(sources) == len(said)
        t = label.get("teacher")
        if t is None:
            out["teacher_not_asked"] += 1
        elif "error" in t:
            out["teacher_failed"] += 1
    return out
