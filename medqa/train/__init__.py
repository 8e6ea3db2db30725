"""The training stages in pipeline order: `pretrain` (the demo's tiny base), `sft`, then RL with `ppo/` or `grpo`.

A stage imports the shared layers (medqa.runs.io, medqa.models.loading, medqa.runs.recipes, medqa.rewards, medqa.teacher), never a
sibling stage; `medqa.commands.launch` parses a recipe and calls a stage's `main`.
"""
