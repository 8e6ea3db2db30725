"""Data preparation: sources -> project-format records -> splits, gold set, red team, RL prompts."""

from medqa.data.prepare import prepare
from medqa.data.rl_prompts import build_rl_prompts

__all__ = ["prepare", "build_rl_prompts"]
