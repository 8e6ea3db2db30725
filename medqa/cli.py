"""`medqa <command> …` — dispatches to the module that owns the command.

Each command module exposes `main(argv: list[str]) -> int`; modules are imported only when their
command runs, so `medqa --help` and light commands never import torch.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module, one-line help). Keep in sync with `make help` (tests check both).
COMMANDS: dict[str, tuple[str, str]] = {
    "tiny-model": ("medqa.tiny_model", "build the tiny random-init Qwen3 + tokenizer (tests, CPU profile); --pretrain: the demo's pretrained base"),
    "data": ("medqa.data.cli", "prepare datasets (prepare) and RL prompts (rl-prompts)"),
    "rewards": ("medqa.rewards.__main__", "reward rules: print, --write or --check data/rl/reward_rules.md"),
    "teacher": ("medqa.teacher.cli", "LLM judge: score a file, serve the offline judge, check an endpoint"),
    "predict": ("medqa.predict", "batched generation from a base model, adapter or merged model"),
    "eval": ("medqa.eval.cli", "score predictions (score) and compare two runs (compare)"),
    "serve": ("medqa.serve", "Gradio chat demo"),
    "bench": ("medqa.bench", "run the performance benchmarks"),
    "demo": ("medqa.demo", "tiny base -> data -> SFT -> PPO -> eval of base/SFT/RL -> one report (CPU, minutes)"),
}


def _usage() -> str:
    lines = ["usage: medqa <command> [options]", "", "commands:"]
    width = max(map(len, COMMANDS))
    for name, (_, help_text) in COMMANDS.items():
        lines.append(f"  {name:<{width}}  {help_text}")
    lines += ["", "Run `medqa <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    if argv[0] in {"-V", "--version"}:
        from medqa import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"medqa: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
