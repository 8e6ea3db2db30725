"""Entry point for PPO: `accelerate launch [--config_file accelerate_configs/X.yaml] scripts/ppo.py --config RECIPE [overrides]`.

The same as `medqa ppo` in one process: `medqa.commands.launch.ppo` parses the recipe and flags and trains (medqa/train/ppo/; see docs/rl_quickstart.md).
"""

from __future__ import annotations

import sys

from medqa.commands.launch import ppo

if __name__ == "__main__":
    raise SystemExit(ppo(sys.argv[1:]))
