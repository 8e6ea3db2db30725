"""Entry point for SFT: `accelerate launch [--config_file accelerate_configs/X.yaml] scripts/sft.py --config RECIPE [overrides]`.

Parsing and training live in medqa/sft.py; see docs/sft.md.
"""

from __future__ import annotations

import sys

from medqa.sft import main, parse_args

if __name__ == "__main__":
    try:
        script_args, training_args, model_args = parse_args(sys.argv[1:])
    except (ValueError, FileNotFoundError) as e:
        print(f"sft: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    main(script_args, training_args, model_args)
