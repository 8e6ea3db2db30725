"""`medqa eval score|compare` — score a predictions file, or compare two scored runs into a report."""

from __future__ import annotations

import argparse
import json
import sys

import medqa.eval.metrics as registry
from medqa.engine import EngineUnavailable
from medqa.errors import ExitCode
from medqa.eval.decoding import add_decoding_args, add_engine_args, decoding_settings
from medqa.runs.io import InputError
from medqa.teacher.cache import CacheError
from medqa.teacher.setup import TeacherSetupError, add_teacher_args


def _score_with_teacher(args, score_file):
    if not (args.teacher or args.teacher_offline or args.teacher_base_url):
        return score_file(args.predictions, args.out, seed=args.seed, overwrite=args.overwrite)
    from medqa.rewards import run_reward_weights
    from medqa.teacher.setup import build_teacher

    weights = run_reward_weights(args.reward_from)

    with build_teacher(args) as teacher:
        print(f"eval: teacher sub-scores from {teacher.describe}", file=sys.stderr)
        return score_file(args.predictions, args.out, seed=args.seed, teacher=teacher.config,
                          teacher_cache=teacher.cache_path, overwrite=args.overwrite, weights=weights)


def _print_rules_vs_teacher(second: dict | None) -> None:
    if not second:
        return
    print(f"needs_emergency, rules vs teacher: agreement {second['agreement']:.3f} ({second['agree']}/{second['n']}); "
          f"teacher only {second['teacher_only']}, rules only {second['rules_only']}")
    for d in second["disagreements"]:
        who = "teacher says emergency, rules do not" if d["teacher"] else f"rules say emergency ({', '.join(d['red_flags']) or 'meta'}), teacher does not"
        print(f"  {d['id']}: {who}: {d['question'][:120]}")


def _run_sets(args) -> int:
    """Every set's outputs are checked before any work; rank 0 holds OUT's lock for the run."""
    import contextlib
    import os
    from pathlib import Path

    sets = []
    for spec in args.sets:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--set {spec!r}: expected NAME=FILE")
        sets.append((name, Path(path)))
    args.settings = decoding_settings(args)  # contradictory decoding flags fail before any work
    from medqa.apps.predict import KIND as PREDICT
    from medqa.eval.score import check_score_outputs
    from medqa.runs.io import OutputLock, check_output_file

    present = [(name, path) for name, path in sets if path.is_file()]
    for name, _ in present:  # every output checked before any work
        out = Path(args.out) / name
        check_output_file(out / "predictions.jsonl", PREDICT, overwrite=args.overwrite)
        check_score_outputs(out, out / "predictions.jsonl", overwrite=args.overwrite)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    with OutputLock(args.out, "eval run") if rank0 else contextlib.nullcontext():
        for name, path in sets:
            if (name, path) not in present:
                print(f"eval run: {name}: {path} does not exist, skipped")
                continue
            _run_set(args, name, path, Path(args.out) / name, rank0)
    return ExitCode.OK


def _run_set(args, name: str, path, out, rank0: bool) -> None:
    from medqa.apps.predict import run_predict
    from medqa.eval.score import score_file

    print(f">> eval run: {name} ({path})", flush=True)
    run_predict(args.model, path, out / "predictions.jsonl", adapter=args.adapter, batch_size=args.batch_size,
                limit=args.limit, device=args.device, progress=not args.no_progress, overwrite=args.overwrite,
                settings=args.settings, num_samples=args.num_samples, engine=args.engine, server_url=args.vllm_url)
    if rank0:
        m = score_file(out / "predictions.jsonl", out, seed=args.bootstrap_seed, overwrite=args.overwrite)
        per = f", {m['num_samples']} samples per item" if m.get("num_samples", 1) > 1 else ""
        values = [f"{spec.name}={'n/a' if m[spec.name] is None else spec.format(m[spec.name])}"
                  for spec in registry.METRICS if spec.name in m]
        print(f"   {name}: " + ", ".join(values) + f" (n={m['n_items']}{per}) -> {out}/metrics.json", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="medqa eval", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score", help="score a predictions JSONL into metrics.json + items.jsonl")
    s.add_argument("--predictions", required=True, help="JSONL rows {id, question, prediction, reference?, meta?, options?}")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    s.add_argument("--overwrite", action="store_true", help="replace metrics.json / items.jsonl medqa eval did not write")
    s.add_argument("--teacher", action="store_true",
                   help="add teacher sub-scores and the RL reward (w_rules·rules + w_teacher·teacher/10) via the configured "
                        "judge (DEEPSEEK_API_KEY / --teacher-base-url); exit code 1 when a judgement failed")
    s.add_argument("--reward-from", metavar="RL_OUT",
                   help="with --teacher: mix the reward with the weights this PPO/GRPO output folder optimised (its "
                        "reward.json); default the project's 0.6 / 0.4")
    add_teacher_args(s.add_argument_group("teacher (the same flags and cache as `medqa teacher`)"))
    c = sub.add_parser("compare", help="markdown + HTML report with plots: run A vs run B")
    c.add_argument("run_a", help="scored folder, or a folder of scored sets (A, e.g. SFT)")
    c.add_argument("run_b", help="the same for B (e.g. PPO)")
    c.add_argument("--out", required=True, help="report folder")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--overwrite", action="store_true", help="write into a --out folder that holds other files")
    r = sub.add_parser("run", help="predict + score several sets in one process: --set NAME=FILE …")
    r.add_argument("--model", required=True)
    r.add_argument("--adapter")
    r.add_argument("--set", dest="sets", action="append", required=True, metavar="NAME=FILE",
                   help="evaluation set (repeatable); files that do not exist are skipped with a note")
    r.add_argument("--out", required=True, help="run folder: OUT/NAME/{predictions.jsonl,metrics.json,items.jsonl}")
    r.add_argument("--limit", type=int)
    r.add_argument("--batch-size", type=int, default=8)
    add_decoding_args(r)
    add_engine_args(r)
    r.add_argument("--device")
    r.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the confidence intervals' bootstrap")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--overwrite", action="store_true", help="replace outputs medqa eval run did not write")
    ac = sub.add_parser("auto-compare", help="compare the newest SFT run with the newest RL runs (ppo/grpo/rl), and PPO with GRPO, under ROOT")
    ac.add_argument("root", help="folder of runs, e.g. outputs/eval")
    ac.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        if args.cmd == "score":
            from medqa.eval.score import score_file

            m = _score_with_teacher(args, score_file)
            keys = (*registry.metric_names(), "reward", "n_items")
            print(json.dumps({k: m.get(k) for k in keys}, ensure_ascii=False))
            _print_rules_vs_teacher(m.get("rules_vs_teacher"))
            print(f"wrote {args.out}/metrics.json and {args.out}/items.jsonl")
            judged = m["source"].get("teacher")
            if judged and judged["failed"]:
                print(f"medqa eval score: {judged['failed']} of {judged['failed'] + judged['judged']} teacher "
                      f"judgements failed ({'; '.join(judged['errors'])}); their reward uses the mean teacher term "
                      "of the judged items", file=sys.stderr)
                return ExitCode.FAILED
        elif args.cmd == "run":
            return _run_sets(args)
        elif args.cmd == "auto-compare":
            from medqa.eval.compare import find_auto_comparisons, write_report

            pairs = find_auto_comparisons(args.root)
            if not pairs:
                print(f"eval: no SFT + RL (or PPO + GRPO) pair of runs under {args.root}; nothing to compare")
                return ExitCode.OK
            for run_a, run_b in pairs:
                out = f"{args.root}/compare-{run_a.name}-vs-{run_b.name}"
                print(f"eval: comparing {run_a} (A) with {run_b} (B)")
                r = write_report(str(run_a), str(run_b), out, seed=args.seed)
                for m, v in r["overall"].items():
                    print(f"{m}: {v['verdict']}")
                print(f"wrote {out}/report.md and {out}/report.html")
        else:
            from medqa.eval.compare import write_report

            r = write_report(args.run_a, args.run_b, args.out, seed=args.seed, overwrite=args.overwrite)
            for m, v in r["overall"].items():
                print(f"{m}: {v['verdict']}")
            if r.get("warning"):
                print(f"medqa eval compare: warning: {r['warning']}", file=sys.stderr)
            print(f"wrote {args.out}/report.md and {args.out}/report.html")
    except (InputError, TeacherSetupError, CacheError, OSError, ValueError, EngineUnavailable) as e:
        print(f"medqa eval {args.cmd}: error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    return ExitCode.OK
