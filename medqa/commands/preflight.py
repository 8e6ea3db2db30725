"""Checks before a training or eval job launches anything: the files it needs exist and fit together.

    medqa preflight sft  --profile cpu --recipe R --accel A [-- --model_name_or_path M --data_dir D …]
    medqa preflight ppo  --profile cpu --recipe R --accel A [-- overrides]
    medqa preflight eval --model M [--adapter A] --file SET.jsonl …

Used by the Slurm templates (slurm/*.sh, through `make slurm-preflight`) so that a job with a missing recipe,
accelerate config, model or data, or a PROFILE/ACCEL mismatch, fails in seconds with one readable line per problem
instead of after its launch. Prints `KEY=VALUE` lines (shell-quoted) for the template on success; errors go to
stderr, exit code 2. Reads recipes with `medqa.runs.recipes.load_recipe` only (yaml; no torch/trl import).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import yaml

from medqa.errors import ExitCode
from medqa.runs.recipes import load_recipe

# Options that are not inputs, although their names end like paths.
_NOT_INPUTS = {"output_dir", "logging_dir", "teacher_cache", "hub_model_id"}


def overrides(argv: list[str]) -> dict[str, str]:
    """`--key value` / `--key=value` pairs of a command line (the last one wins); flags without a value map to ''."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            if not eq and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                value, i = argv[i + 1], i + 1
            out[key] = value
        i += 1
    return out


def model_problem(name: str | None, what: str = "model") -> str | None:
    """None when `name` is a usable local model/adapter folder or a hub id that can be loaded here."""
    if not name:
        return f"no {what} given (model_name_or_path in the recipe, or MODEL=)"
    path = Path(name)
    if path.is_dir():
        if (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
            return None
        return f"{what} {name} is a folder without config.json or adapter_config.json"
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    looks_local = path.is_absolute() or name.startswith(".") or len(path.parts) != 2
    if not looks_local and not offline:
        return None  # a hub id, downloaded at load time
    if not looks_local:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(name, "config.json"), str):
            return None
    hint = " (make tiny-model builds models/tiny-qwen3)" if "tiny-qwen3" in name else ""
    return (f"{what} {name} not found: neither a local folder nor, with HF_HUB_OFFLINE=1, in the Hugging Face cache"
            f"{hint}")


def file_problem(path: str | os.PathLike, what: str, hint: str = "") -> str | None:
    return None if Path(path).is_file() else f"{what} {path} not found{hint}"


def accel_processes(accel: str) -> int:
    """`num_processes` of an accelerate config (processes on one machine)."""
    config = yaml.safe_load(Path(accel).read_text(encoding="utf-8")) or {}
    return int(config.get("num_processes") or 1)


def profile_accel_problem(profile: str, accel: str) -> str | None:
    cpu_launcher = Path(accel).name.startswith("cpu")
    if profile == "cpu" and not cpu_launcher:
        return f"PROFILE=cpu needs a CPU launcher (accelerate_configs/cpu*.yaml: ACCEL=ddp|zero2|zero3), got {accel}"
    if profile != "cpu" and cpu_launcher:
        return f"PROFILE={profile} is a GPU profile but ACCEL is the CPU launcher {accel}; use PROFILE=cpu or a GPU ACCEL"
    return None


def input_defaults(stage: str) -> dict[str, str]:
    """The trainer's own defaults for input files a recipe may leave out (PPO: prompts_file)."""
    if stage != "ppo":
        return {}
    import dataclasses

    from medqa.train.ppo.config import PPOConfig  # dataclasses only: no torch import

    return {f.name: f.default for f in dataclasses.fields(PPOConfig) if f.name.endswith("_file") and isinstance(f.default, str)}


def check_training(stage: str, profile: str, recipe: str, accel: str, argv: list[str]) -> tuple[list[str], dict]:
    """Problems of an SFT/PPO launch, and what it resolved to."""
    problems = [
        file_problem(recipe, "recipe", f" for PROFILE={profile}; see recipes/{stage}/"),
        file_problem(accel, "accelerate config", "; see accelerate_configs/"),
    ]
    resolved: dict[str, object] = {"recipe": recipe, "accel": accel}
    if problems[1] is None:
        problems.append(profile_accel_problem(profile, accel))
        resolved["accel_processes"] = accel_processes(accel)
    options = overrides(argv)
    if problems[0] is None:
        try:
            options = {**input_defaults(stage), **load_recipe(recipe), **options}
        except (ValueError, OSError, yaml.YAMLError) as e:
            return [p for p in problems if p] + [f"recipe {recipe}: {e}"], resolved
    resolved["model"] = options.get("model_name_or_path")
    if problems[0] is None or "model_name_or_path" in options:
        problems.append(model_problem(options.get("model_name_or_path"),
                                      "SFT output SFT= (the PPO policy)" if stage == "ppo" else "model"))
    if problems[0] is None:
        if stage == "sft":
            data_dir = Path(options.get("data_dir") or "data/processed")
            problems.append(file_problem(data_dir / options.get("train_file", "train.jsonl"), "training data",
                                         ": run `make data`, or set --data_dir / --train_file in ARGS"))
            eval_file = options.get("eval_file", "dev.jsonl")
            if eval_file and str(eval_file).lower() not in {"none", "null"}:
                problems.append(file_problem(data_dir / eval_file, "eval data", ": run `make data`, or ARGS=\"--eval_file none\""))
        else:
            for key, value in options.items():
                if key.endswith("_file") and key not in _NOT_INPUTS and value and str(value).lower() not in {"none", "null"}:
                    problems.append(file_problem(value, f"{key}", " (run `make rl-prompts` for the RL prompts)"))
        resolved["output_dir"] = options.get("output_dir")
    return [p for p in problems if p], resolved


def check_eval(model: str, adapter: str | None, files: list[str]) -> list[str]:
    problems = [model_problem(model)]
    if adapter:
        problems.append(model_problem(adapter, "adapter"))
    problems += [file_problem(f, "eval set", ": run `make data`") for f in files]
    return [p for p in problems if p]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(prog="medqa preflight", description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["sft", "ppo", "eval"])
    parser.add_argument("--profile", default="gpu")
    parser.add_argument("--recipe")
    parser.add_argument("--accel")
    parser.add_argument("--model")
    parser.add_argument("--adapter")
    parser.add_argument("--file", action="append", default=[])
    args = parser.parse_args(argv)
    if args.stage == "eval":
        problems, resolved = check_eval(args.model, args.adapter, args.file), {"model": args.model}
    else:
        if not args.recipe or not args.accel:
            parser.error(f"{args.stage} needs --recipe and --accel")
        problems, resolved = check_training(args.stage, args.profile, args.recipe, args.accel, rest)
    for problem in problems:
        print(f"preflight: {problem}", file=sys.stderr)
    if problems:
        return ExitCode.BAD_INPUT
    for key, value in resolved.items():
        print(f"MEDQA_{key.upper()}={shlex.quote(str(value if value is not None else ''))}")
    return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
