"""Entry point for PPO: `accelerate launch [--config_file accelerate_configs/X.yaml] scripts/ppo.py --config RECIPE [overrides]`.

The loop lives in medqa/ppo/; see docs/rl_quickstart.md.
"""

from __future__ import annotations

import sys

from medqa.ppo.config import parse_args
from medqa.ppo.scoring import TeacherUnavailable

if __name__ == "__main__":
    try:
        model_args, ppo_config, teacher_args = parse_args(sys.argv[1:])
    except (ValueError, FileNotFoundError) as e:
        print(f"ppo: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    from medqa.io import InputError
    from medqa.ppo.trainer import main

    try:
        main(model_args, ppo_config, teacher_args)
    except (InputError, FileNotFoundError) as e:
        print(f"ppo: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except TeacherUnavailable as e:
        print(f"ppo: stopped: {e}", file=sys.stderr)
        raise SystemExit(3) from None
