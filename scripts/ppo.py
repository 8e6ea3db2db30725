"""Entry point for PPO: `accelerate launch [--config_file accelerate_configs/X.yaml] scripts/ppo.py --config RECIPE [overrides]`.

The loop lives in medqa/ppo/; see docs/rl_quickstart.md.
"""

from __future__ import annotations

import logging
import os
import sys

from medqa.ppo.config import parse_args
from medqa.rewards import TEACHER_UNAVAILABLE_EXIT, TeacherUnavailable
from medqa.teacher.setup import TeacherSetupError

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
    except (InputError, FileNotFoundError, TeacherSetupError) as e:
        print(f"ppo: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except TeacherUnavailable as e:
        print(f"ppo: stopped: {e}", file=sys.stderr)
        raise SystemExit(TEACHER_UNAVAILABLE_EXIT) from None
    # Every rank has passed main's last barrier with its outputs written and synced. A multi-process run ends here
    # without the interpreter's teardown: tearing down the distributed backends' C++ objects (gloo groups,
    # DeepSpeed's shared-memory op) after a finished run now and then met a still-joinable thread and aborted a rank
    # with SIGABRT ("terminate called without an active exception"), failing a run whose outputs were complete.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
