"""The training stages in pipeline order: `pretrain` (the demo's tiny base), `sft`, then RL with `ppo/` or `grpo`.

A stage imports the shared layers (medqa.io, medqa.modeling, medqa.recipes, medqa.rewards, medqa.teacher), never a
sibling stage; `medqa.launch` parses a recipe and calls a stage's `main`.
"""
