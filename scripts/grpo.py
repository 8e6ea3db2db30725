"""Entry point for GRPO: `accelerate launch [--config_file accelerate_configs/X.yaml] scripts/grpo.py --config RECIPE [overrides]`.

Parsing and training live in medqa/grpo.py; see docs/rl_quickstart.md.
"""

from __future__ import annotations

import sys

from medqa.grpo import main, parse_args
from medqa.io import InputError
from medqa.rewards import TEACHER_UNAVAILABLE_EXIT, TeacherUnavailable
from medqa.teacher.setup import TeacherSetupError

if __name__ == "__main__":
    try:
        args = parse_args(sys.argv[1:])
    except (ValueError, FileNotFoundError) as e:
        print(f"grpo: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        main(*args)
    except (TeacherSetupError, InputError, FileNotFoundError) as e:
        print(f"grpo: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except TeacherUnavailable as e:
        print(f"grpo: stopped: {e}", file=sys.stderr)
        raise SystemExit(TEACHER_UNAVAILABLE_EXIT) from None
