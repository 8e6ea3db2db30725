"""Entry point for SFT: `accelerate launch [--config_file accelerate_configs/X.yaml] scripts/sft.py --config RECIPE [overrides]`.

The same as `medqa sft` in one process: `medqa.commands.launch.sft` parses the recipe and flags and trains (medqa/train/sft.py; see docs/sft.md).
"""

from __future__ import annotations

import sys

from medqa.commands.launch import sft

if __name__ == "__main__":
    raise SystemExit(sft(sys.argv[1:]))
