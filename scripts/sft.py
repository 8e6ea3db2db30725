"""Entry point for SFT: `accelerate launch [--config_file accelerate_configs/X.yaml] scripts/sft.py --config RECIPE [overrides]`.

Parsing and training live in medqa/sft.py; see docs/sft.md.
"""

from __future__ import annotations

import sys

from medqa.checkpoints import ResumeError
from medqa.io import OutputError
from medqa.preemption import RankZeroError, exit_with_launcher
from medqa.sft import main, parse_args

if __name__ == "__main__":
    exit_with_launcher()
    try:
        script_args, training_args, model_args = parse_args(sys.argv[1:])
    except (ValueError, FileNotFoundError) as e:
        print(f"sft: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        main(script_args, training_args, model_args)
    except (OutputError, ResumeError, RankZeroError) as e:
        print(f"sft: {e}", file=sys.stderr)
        raise SystemExit(2) from None
