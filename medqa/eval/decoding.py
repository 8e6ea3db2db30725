"""The decoding of an evaluation: the flags of the commands that generate for evaluation (predict, eval run) and
`decoding_from`, which reads the exact rollout decoding of a PPO or GRPO run from its output folder
(`rollout_decoding.json`, written by the trainers through `medqa.generation.write_rollout_decoding`) or its recipe
(over the trainer's defaults)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medqa.generation import (
    RL_KINDS,
    ROLLOUT_DECODING_FILE,
    GenerationSettings,
    add_repetition_penalty_arg,
    rollout_decoding,
)


def _trainer_defaults(kind: str) -> dict[str, Any]:
    import dataclasses

    if kind == "ppo":
        from medqa.train.ppo.config import PPOConfig as config_type
    else:
        from medqa.train.grpo import MedqaGRPOConfig as config_type
    out = {}
    for f in dataclasses.fields(config_type):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _recipe_kind(path: Path, recipe: Mapping[str, Any]) -> str:
    if "max_completion_length" in recipe or "num_generations" in recipe:
        return "grpo"
    if "ppo_epochs" in recipe or "max_new_tokens" in recipe or "mini_batch_size" in recipe:
        return "ppo"
    parts = {part.lower() for part in path.resolve().parts}
    for kind in RL_KINDS:
        if kind in parts:
            return kind
    raise ValueError(f"{path}: not a PPO or GRPO recipe (none of its options or folders says which)")


def decoding_from(path: str | Path) -> dict[str, Any]:
    """The rollout decoding of a PPO/GRPO output folder (its `rollout_decoding.json`) or recipe YAML."""
    path = Path(path)
    if path.is_dir():
        file = path / ROLLOUT_DECODING_FILE
        if not file.is_file():
            raise FileNotFoundError(f"{file}: missing (not a PPO/GRPO output folder, or one written before the run "
                                    "recorded its decoding); pass the run's recipe YAML instead")
        try:
            decoding = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{file}:{e.lineno}: malformed JSON ({e.msg})") from None
        kind = decoding.get("trainer") if isinstance(decoding, dict) else None
        if kind not in RL_KINDS:
            raise ValueError(f"{file}: trainer: expected one of {', '.join(RL_KINDS)}")
        try:
            return rollout_decoding(kind, {**decoding, "max_completion_length": decoding.get("max_new_tokens"),
                                           "chat_template_kwargs": {"enable_thinking": decoding.get("enable_thinking")}})
        except (KeyError, TypeError) as e:
            raise ValueError(f"{file}: {e}: missing or malformed") from None
    if path.suffix not in (".yaml", ".yml"):
        raise FileNotFoundError(f"{path}: neither a PPO/GRPO output folder nor a recipe YAML")
    from medqa.recipes import load_recipe

    recipe = load_recipe(path)
    kind = _recipe_kind(path, recipe)
    return rollout_decoding(kind, {**_trainer_defaults(kind), **recipe})


DECODING_FLAGS = ("temperature", "top_p", "top_k", "max_new_tokens", "no_think")


def add_decoding_args(p, max_new_tokens: int = 512) -> None:
    """The decoding flags of the commands that generate for evaluation (predict, eval run)."""
    from medqa.argtypes import at_least

    p.add_argument("--max-new-tokens", type=at_least(int, 1), default=None,
                   help=f"default {max_new_tokens}")
    p.add_argument("--no-think", action="store_true", help="thinking off: an empty think block (the template's enable_thinking=False, or prefilled; medqa/chat.py)")
    p.add_argument("--do-sample", "--sample", dest="sample", action="store_true",
                   help="sample instead of greedy (default T=0.6, top-p 0.95, top-k 20)")
    p.add_argument("--temperature", type=at_least(float, 0.0, inclusive=False), default=None, help="with --do-sample")
    p.add_argument("--top-p", type=float, default=None, help="with --do-sample; 1: off")
    p.add_argument("--top-k", type=at_least(int, 0), default=None, help="with --do-sample; 0: off")
    p.add_argument("--num-samples", type=at_least(int, 1), default=1, metavar="K",
                   help="answers per item (K > 1 needs sampling); metrics are per-item means over the K")
    p.add_argument("--decoding-from", metavar="PATH",
                   help="sample exactly as a PPO/GRPO run's rollouts did (its output folder or recipe YAML): "
                        "temperature, top-p, top-k, max new tokens and thinking; the flags it sets cannot be given too")
    p.add_argument("--seed", type=int, default=42, help="sampling seed (each answer is seeded by it, the item id "
                                                        "and the sample index)")
    add_repetition_penalty_arg(p)


def decoding_kwargs(args, max_new_tokens: int = 512) -> dict[str, Any]:
    """`run_predict` keyword arguments from the parsed decoding flags (ValueError on contradictory ones)."""
    defaults = GenerationSettings()
    if args.decoding_from:
        given = [f"--{f.replace('_', '-')}" for f in DECODING_FLAGS if getattr(args, f) not in (None, False)]
        if args.repetition_penalty != 1.0:
            given.append("--repetition-penalty")
        if given:
            raise ValueError(f"--decoding-from sets the decoding; drop {', '.join(given)}")
        d = decoding_from(args.decoding_from)
        out = dict(sample=True, temperature=d["temperature"], top_p=d["top_p"], top_k=d["top_k"],
                   max_new_tokens=d["max_new_tokens"], think=d["enable_thinking"],
                   repetition_penalty=d["repetition_penalty"])
    else:
        sampling = [f"--{f.replace('_', '-')}" for f in ("temperature", "top_p", "top_k") if getattr(args, f) is not None]
        if sampling and not args.sample:
            raise ValueError(f"{', '.join(sampling)} need --do-sample")
        out = dict(sample=args.sample,
                   temperature=defaults.temperature if args.temperature is None else args.temperature,
                   top_p=defaults.top_p if args.top_p is None else args.top_p,
                   top_k=defaults.top_k if args.top_k is None else args.top_k,
                   max_new_tokens=args.max_new_tokens or max_new_tokens, think=not args.no_think,
                   repetition_penalty=args.repetition_penalty)
    if args.num_samples > 1 and not out["sample"]:
        raise ValueError(f"--num-samples {args.num_samples} needs sampling (--do-sample or --decoding-from): greedy "
                         "answers are all the same")
    GenerationSettings(max_new_tokens=out["max_new_tokens"], do_sample=out["sample"], temperature=out["temperature"],
                       top_p=out["top_p"], top_k=out["top_k"], repetition_penalty=out["repetition_penalty"])
    return {**out, "num_samples": args.num_samples, "seed": args.seed}
