"""Recipe YAMLs + command-line overrides -> dataclasses, shared by every training stage (SFT, PPO).

A recipe is a YAML mapping of option: value. It may name `base:` recipes (a path or a list, relative to itself)
that it extends (later files win), and an `env:` mapping exported before parsing. Command-line flags override
the recipe; unknown options in either are errors, not silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read a recipe YAML, merging its `base:` recipes first (later files win)."""
    return _load_recipe(Path(path), ())


def _load_recipe(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ValueError(f"recipe {path}: `base:` cycle through {' -> '.join(map(str, seen))}")
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} not found")
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(config, dict):
        raise ValueError(f"recipe {path}: expected a YAML mapping of option: value")
    bases = config.pop("base", None) or []
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        merged.update(_load_recipe(path.parent / base, (*seen, path)))
    merged.update(config)
    return merged


def parse_with_recipe(dataclass_types: tuple[type, ...], argv: list[str]) -> tuple[Any, ...]:
    """`--config RECIPE` plus overrides -> one instance per dataclass type (TRL's `TrlParser`)."""
    from trl import TrlParser

    parser = TrlParser(dataclass_types)
    argv = list(argv)
    if "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv):
            raise ValueError("--config needs a recipe path")
        recipe_path = argv[i + 1]
        recipe = load_recipe(recipe_path)
        del argv[i : i + 2]
        for key, value in (recipe.pop("env", None) or {}).items():
            os.environ[key] = str(value)
        unknown = parser.set_defaults_with_config(**recipe)
        if unknown:
            raise ValueError(f"recipe {recipe_path}: unknown options {unknown[::2]}")
    *parsed, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if rest:
        raise ValueError(f"unknown command-line options: {rest}")
    return tuple(parsed)
