"""Entry point for GRPO: `accelerate launch [--config_file accelerate_configs/X.yaml] scripts/grpo.py --config RECIPE [overrides]`.

The same as `medqa grpo` in one process: `medqa.commands.launch.grpo` parses the recipe and flags and trains (medqa/train/grpo.py; see docs/rl_quickstart.md).
"""

from __future__ import annotations

import sys

from medqa.commands.launch import grpo

if __name__ == "__main__":
    raise SystemExit(grpo(sys.argv[1:]))
