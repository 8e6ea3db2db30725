"""The pipeline's stages in order, each with its `medqa` commands and make targets: the one map behind
`medqa --help` and `make help` (both grouped by stage) and the table in docs/architecture.md.

Stdlib only: `make help` runs `python -m medqa.commands.stages make-help Makefile` with the system Python, before `make setup`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from medqa.errors import ExitCode


@dataclass(frozen=True)
class Stage:
    name: str
    commands: tuple[str, ...]  # keys of medqa.cli.COMMANDS
    targets: tuple[str, ...]  # make targets


STAGES: tuple[Stage, ...] = (
    Stage("setup and data", ("tiny-model", "real-base", "pretrain", "data"),
          ("setup", "tiny-model", "real-base", "tiny-base", "data", "rl-prompts", "clean")),
    Stage("SFT", ("sft", "merge", "launch-config"), ("sft-lora", "sft-qlora", "sft-full", "merge")),
    Stage("RL: rewards, teacher, PPO, GRPO", ("rewards", "teacher", "ppo", "vllm-serve", "grpo"),
          ("teacher-rules-doc", "teacher-serve", "teacher-check", "ppo", "ppo-full", "vllm-setup", "vllm-serve", "grpo")),
    Stage("eval and use", ("predict", "eval", "bench-medical", "serve", "safety-eval", "demo"),
          ("eval", "bench-medical", "predict", "compare", "serve", "safety-eval", "safety-doc", "demo", "demo-real",
           "demo-seeds", "demo-real-seeds")),
    Stage("bench", ("bench",), ("bench", "bench-p1", "bench-p2", "bench-p3", "bench-p4", "bench-p9", "bench-gpu", "bench-shape")),
    Stage("cluster (Slurm)", ("preflight",), ("slurm-sft", "slurm-ppo", "slurm-eval", "slurm-preflight", "slurm-local", "test-slurm")),
    Stage("dev", (), ("help", "test", "test-fast", "test-seeds", "lint", "browser-deps")),
)

_HELP_LINE = re.compile(r"^([a-zA-Z0-9_-]+):[^#]*## (.*)$")


def make_targets(makefiles: list[str | Path]) -> dict[str, str]:
    """target -> its `## help` text, in file order."""
    found: dict[str, str] = {}
    for path in makefiles:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            m = _HELP_LINE.match(line)
            if m:
                found.setdefault(m.group(1), m.group(2).strip())
    return found


def grouped(items: dict[str, str], field: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(stage name, [(item, help)]) in pipeline order; items no stage names come last under "other"."""
    groups, placed = [], set()
    for stage in STAGES:
        names = [n for n in getattr(stage, field) if n in items]
        placed.update(names)
        if names:
            groups.append((stage.name, [(n, items[n]) for n in names]))
    rest = [(n, h) for n, h in items.items() if n not in placed]
    if rest:
        groups.append(("other", rest))
    return groups


def format_groups(groups: list[tuple[str, list[tuple[str, str]]]], width: int) -> str:
    lines = []
    for name, entries in groups:
        lines.append(f"{name}:")
        lines += [f"  {item:<{width}}  {text}" for item, text in entries]
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "make-help" or len(argv) < 2:
        print("usage: python -m medqa.commands.stages make-help MAKEFILE…", file=sys.stderr)
        return ExitCode.BAD_INPUT
    print(format_groups(grouped(make_targets(argv[1:]), "targets"), 17))
    return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
