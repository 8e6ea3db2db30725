"""`medqa data prepare …` and `medqa data rl-prompts …`."""

from __future__ import annotations

import argparse
import sys

from medqa.data.formats import FORMATS
from medqa.data.rl_prompts import DEFAULT_PROMPTS
from medqa.errors import ExitCode
from medqa.runs.io import InputError, OutputError
from medqa.teacher.cache import CacheError
from medqa.teacher.setup import TeacherSetupError, add_teacher_args


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medqa data", description="Prepare training data and RL prompts.")
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("prepare", help="normalise, scrub, de-duplicate and split sources into --out")
    pr.add_argument("--input", action="append", required=True, metavar="PATH_OR_HF_ID",
                    help="a file (.jsonl/.json/.parquet), a directory of them, or a hub dataset id (owner/name[:config]); repeatable")
    pr.add_argument("--out", required=True, help="output directory (replaced atomically; only if empty or written by medqa)")
    pr.add_argument("--overwrite", action="store_true",
                    help="replace --out even if it holds files medqa did not write (never an input, the project or home)")
    pr.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="source format (default: detected per file)")
    pr.add_argument("--on-error", default="fail", choices=["fail", "skip"], help="stop at the first bad row, or skip and count")
    pr.add_argument("--seed", type=int, default=42)
    pr.add_argument("--tokenizer", help="tokenizer path/id for tokens-per-example stats (optional)")
    rl = sub.add_parser("rl-prompts", help="write the PPO prompt file from prepared data")
    rl.add_argument("--data", default="data/processed", help="a `medqa data prepare` output directory")
    rl.add_argument("--out", default=DEFAULT_PROMPTS)
    rl.add_argument("--splits", nargs="+", default=["train"], help="splits to draw prompts from")
    for sp in (pr, rl):  # the teacher that triages each question once (meta.triage); offline judge without a key
        add_teacher_args(sp.add_argument_group(
            "teacher triage", "one triage per unique question, cached; without an API key or base URL the OFFLINE "
                              "heuristic judge answers (the lexicon again, labelled teacher-offline)"))
    return p


def _triage_teacher(args: argparse.Namespace):
    """The teacher of `--teacher-*`; without a key, a base URL or `--teacher-offline`, the offline judge, said
    loudly once (its banner) and recorded as `teacher-offline` in every label."""
    from medqa.teacher.client import api_key_from_env
    from medqa.teacher.setup import base_url_from_env, build_teacher

    if not args.teacher_offline and not api_key_from_env() and not (args.teacher_base_url or base_url_from_env()):
        args.teacher_offline = True
        print(f"medqa data {args.cmd}: no API key, no --teacher-base-url and no MEDQA_TEACHER_BASE_URL, so the OFFLINE "
              "judge triages the questions (the lexicon again, not an LLM; labelled teacher-offline).", file=sys.stderr)
    return build_teacher(args)


def _print_triage(report) -> None:
    if report is None or report.teacher is None:
        return
    print(f"teacher triage by {report.teacher}: {report.questions} unique questions, {report.answered} answered "
          f"({report.usage.get('requests', 0)} requests, {report.usage.get('cache_hits', 0)} from the cache)"
          + (f", {report.failed} NOT answered (they keep lexicon + dataset; recorded in meta.triage.teacher.error)"
             if report.failed else ""))
    for err in report.errors:
        print(f"  teacher triage error: {err}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "prepare":
            from medqa.data.prepare import prepare
            from medqa.data.triage import TriageReport

            reports: list[TriageReport] = []
            stats = prepare(args.input, args.out, fmt=args.format, on_error=args.on_error, seed=args.seed,
                            tokenizer_path=args.tokenizer, overwrite=args.overwrite,
                            teacher=lambda: _triage_teacher(args), on_triage=reports.append)
            _print_triage(reports[0] if reports else None)
            counts = ", ".join(f"{k} {v['count']}" for k, v in stats["splits"].items())
            print(f"wrote {args.out}: {counts}; duplicates removed {stats['duplicates_removed']}"
                  + (f"; repeated ids renamed {stats['ids_renamed']}" if stats.get("ids_renamed") else ""))
            for reason, n in stats["skipped"].items():
                print(f"  skipped {n:>5}  {reason}")
        else:
            from medqa.data.rl_prompts import make_rl_prompts
            from medqa.runs.io import write_jsonl

            prompts, report = make_rl_prompts(args.data, tuple(args.splits), lambda: _triage_teacher(args))
            n = write_jsonl(args.out, prompts)
            _print_triage(report)
            print(f"wrote {n} RL prompts to {args.out}")
    except (InputError, OutputError, TeacherSetupError, CacheError) as err:
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except OSError as err:
        print(f"error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    return ExitCode.OK
