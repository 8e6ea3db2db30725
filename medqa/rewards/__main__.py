"""`medqa rewards [--write|--check] [--path P]` (or `python -m medqa.rewards`): print, write or check
data/rl/reward_rules.md."""

from __future__ import annotations

import argparse
import sys

from medqa.errors import ExitCode
from medqa.rewards import doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="medqa rewards", description=__doc__)
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="write the rules document")
    group.add_argument("--check", action="store_true", help="exit 1 when the document differs from the code")
    ap.add_argument("--path", default=str(doc.DOC_PATH))
    args = ap.parse_args(argv)
    if args.write:
        print(f"wrote {doc.write(args.path)}")
    elif args.check:
        if not doc.check(args.path):
            print(f"{args.path} is out of date: run `python -m medqa.rewards --write`", file=sys.stderr)
            return ExitCode.FAILED
        print(f"{args.path} matches the rule registry")
    else:
        sys.stdout.write(doc.render())
    return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
