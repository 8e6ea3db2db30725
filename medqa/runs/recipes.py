"""Recipe YAMLs and TRL config defaults shared by every trainer (SFT, PPO, GRPO).

A recipe is a YAML mapping of option: value that fills a trainer's dataclasses (TRL's, extended by the
project); it may name `base:` recipes (a path or a list, relative to itself) that it extends, and an `env:`
mapping exported before training. Command-line flags override the recipe; unknown options are errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from medqa.runs.argtypes import check_field_value, field_types
from medqa.runs.io import InputError


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe YAML, merging its `base:` recipes first (later files win)."""
    return _load_recipe(Path(path), ())[0]


def _load_recipe(path: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, tuple[Path, int]]]:
    """(options, option -> (file, line) that set it)."""
    path = path.resolve()
    if path in seen:
        raise ValueError(f"recipe {path}: `base:` cycle through {' -> '.join(map(str, seen))}")
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} not found")
    text = path.read_text(encoding="utf-8")
    config = yaml.safe_load(text) or {}
    if not isinstance(config, dict):
        raise ValueError(f"recipe {path}: expected a YAML mapping of option: value")
    bases = config.pop("base", None) or []
    merged: dict[str, Any] = {}
    origins: dict[str, tuple[Path, int]] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        base_config, base_origins = _load_recipe(path.parent / base, (*seen, path))
        merged.update(base_config)
        origins.update(base_origins)
    merged.update(config)
    lines = _key_lines(text)
    origins.update({key: (path, lines.get(key, 0)) for key in config})
    return merged, origins


def _key_lines(text: str) -> dict[str, int]:
    """Top-level key -> its 1-based line in a YAML mapping document."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def parse_recipe_args(dataclass_types: tuple[type, ...], argv: list[str]) -> tuple[Any, ...]:
    """`--config RECIPE` plus overrides -> one instance per dataclass type, in order."""
    from trl import TrlParser

    parser = TrlParser(dataclass_types)
    argv = list(argv)
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ValueError("--config needs a recipe path")
        recipe_path = argv[i + 1]
        recipe, origins = _load_recipe(Path(recipe_path), ())
        del argv[i : i + 2]
        check_recipe_types(dataclass_types, recipe, origins)
        for key, value in (recipe.pop("env", None) or {}).items():
            os.environ[key] = str(value)
        unknown = parser.set_defaults_with_config(**recipe)
        if unknown:
            raise ValueError(f"recipe {recipe_path}: unknown options {unknown[::2]}")
    *parsed, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if rest:
        raise ValueError(f"unknown command-line options: {rest}")
    return tuple(parsed)


def check_recipe_types(dataclass_types: tuple[type, ...], recipe: dict[str, Any],
                       origins: dict[str, tuple[Path, int]]) -> None:
    """Every recipe value against its dataclass field's type, as `FILE:LINE: option: expected …, got …`.

    argparse converts (and so checks) only string defaults; numbers, lists and mappings from YAML would reach the
    dataclasses unchecked."""
    types: dict[str, Any] = {}
    for dataclass_type in reversed(dataclass_types):
        types.update(field_types(dataclass_type))
    for key, value in recipe.items():
        if key == "env" or key not in types:
            continue  # `env:` is exported, unknown options are reported by the parser
        problem = check_field_value(types[key], value)
        if problem:
            path, line = origins.get(key, (None, 0))
            raise InputError(path or "recipe", line or None, key, problem)


def apply_hardware_precision(config: Any) -> None:
    """For a TrainingArguments subclass, before its own `__post_init__`: CPU state without CUDA (multi-process
    CPU runs under torchrun need it), bf16 by default only on a bf16-capable GPU, fp32 on CPU."""
    import torch

    cuda = torch.cuda.is_available() and not config.use_cpu
    if not cuda:
        config.use_cpu = True
    if config.bf16 is None and not config.fp16:
        config.bf16 = bool(cuda and torch.cuda.is_bf16_supported())
    if not cuda and (config.bf16 or config.fp16):
        raise ValueError("bf16/fp16 mixed precision needs a GPU here; leave bf16 unset to train in fp32 on CPU")
    if isinstance(config.resume_from_checkpoint, str) and config.resume_from_checkpoint.lower() in {"", "none", "false"}:
        config.resume_from_checkpoint = None
