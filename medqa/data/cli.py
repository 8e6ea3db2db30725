"""`medqa data prepare …` and `medqa data rl-prompts …`."""

from __future__ import annotations

import argparse
import sys

from medqa.data.formats import FORMATS
from medqa.io import InputError, OutputError


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
    rl.add_argument("--out", default="data/rl/training_prompts.jsonl")
    rl.add_argument("--splits", nargs="+", default=["train"], help="splits to draw prompts from")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "prepare":
            from medqa.data.prepare import prepare

            stats = prepare(args.input, args.out, fmt=args.format, on_error=args.on_error, seed=args.seed, tokenizer_path=args.tokenizer,
                            overwrite=args.overwrite)
            counts = ", ".join(f"{k} {v['count']}" for k, v in stats["splits"].items())
            print(f"wrote {args.out}: {counts}; duplicates removed {stats['duplicates_removed']}"
                  + (f"; repeated ids renamed {stats['ids_renamed']}" if stats.get("ids_renamed") else ""))
            for reason, n in stats["skipped"].items():
                print(f"  skipped {n:>5}  {reason}")
        else:
            from medqa.data.rl_prompts import build_rl_prompts

            n = build_rl_prompts(args.data, args.out, tuple(args.splits))
            print(f"wrote {n} RL prompts to {args.out}")
    except (InputError, OutputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {err.filename or ''}: {err.strerror or err}", file=sys.stderr)
        return 2
    return 0
