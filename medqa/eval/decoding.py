"""The decoding of an evaluation: the flags of the commands that generate for evaluation (predict, eval run), turned
into one `medqa.models.generation.GenerationSettings` here and nowhere else (`decoding_settings`), and `decoding_from`, which
reads the exact rollout decoding of a PPO or GRPO run from its output folder (`rollout_decoding.json`, written by the
trainers through `medqa.models.generation.write_rollout_decoding`).

Each decoding flag's dest is the name of the settings field it sets, and None when not given (`--no-think` and
`--do-sample` set `enable_thinking` and `do_sample`; `--seed` seeds the samples), so a new decoding option is a field of
`GenerationSettings` and one `add_argument` line in `add_decoding_args`."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from medqa.models.generation import (
    ENGINES,
    RL_KINDS,
    ROLLOUT_DECODING_FILE,
    GenerationSettings,
    rollout_decoding,
)


def decoding_from(path: str | Path) -> dict[str, Any]:
    """The rollout decoding a PPO/GRPO run recorded in its output folder (`rollout_decoding.json`)."""
    path = Path(path)
    file = path / ROLLOUT_DECODING_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path}: not a PPO/GRPO output folder (no {ROLLOUT_DECODING_FILE})")
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


def add_engine_args(p) -> None:
    """Where answers are generated: `--engine` and `--vllm-url` (predict and eval run)."""
    p.add_argument("--engine", choices=ENGINES, default="hf",
                   help="hf: transformers in this process; vllm: a vLLM server holding the base model (make vllm-serve "
                        "MODEL=base); an adapter is loaded into it. Rows record the engine (default: %(default)s)")
    p.add_argument("--vllm-url", default=None,
                   help="the vLLM server (default: the URL make vllm-serve wrote to outputs/vllm-server/url)")


def add_decoding_args(p, max_new_tokens: int = 512, *, samples: bool = True) -> None:
    """The decoding flags of the commands that generate (predict, eval run, serve); `samples=False` leaves out
    `--num-samples` (serve gives one answer)."""
    from medqa.runs.argtypes import at_least

    p.add_argument("--max-new-tokens", type=at_least(int, 1), default=None,
                   help=f"default {max_new_tokens}")
    p.add_argument("--no-think", action="store_true", help="thinking off: an empty think block (the template's enable_thinking=False, or prefilled; medqa/models/chat.py)")
    p.add_argument("--do-sample", "--sample", dest="sample", action="store_true",
                   help="sample instead of greedy (default T=0.6, top-p 0.95, top-k 20)")
    p.add_argument("--temperature", type=at_least(float, 0.0, inclusive=False), default=None, help="with --do-sample")
    p.add_argument("--top-p", type=float, default=None, help="with --do-sample; 1: off")
    p.add_argument("--top-k", type=at_least(int, 0), default=None, help="with --do-sample; 0: off")
    p.add_argument("--repetition-penalty", type=at_least(float, 0.0, inclusive=False), default=None,
                   help="> 1 discourages tokens already in the prompt or answer (Qwen3's card recommends a presence "
                        "penalty against endless repetitions); default 1 (off)")
    if samples:
        p.add_argument("--num-samples", type=at_least(int, 1), default=1, metavar="K",
                       help="answers per item (K > 1 needs sampling); metrics are per-item means over the K")
    p.add_argument("--decoding-from", metavar="RL_OUT",
                   help="sample exactly as a PPO/GRPO run's rollouts did (its output folder, which holds "
                        f"{ROLLOUT_DECODING_FILE}): temperature, top-p, top-k, max new tokens, thinking and repetition "
                        "penalty; no other decoding flag can be given with it")
    p.add_argument("--seed", type=int, default=42, help="sampling seed (each answer is seeded by it, the item id "
                                                        "and the sample index)")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def decoding_settings(args, max_new_tokens: int = 512) -> GenerationSettings:
    """The one `GenerationSettings` of the parsed decoding flags (`add_decoding_args`); ValueError on contradictory
    flags, and on `--num-samples` K > 1 without sampling."""
    given = {f.name: getattr(args, f.name) for f in fields(GenerationSettings)
             if f.name not in ("enable_thinking", "do_sample", "seed") and getattr(args, f.name, None) is not None}
    if args.no_think:
        given["enable_thinking"] = False
    if args.decoding_from:
        if given:
            flags = ["--no-think" if name == "enable_thinking" else _flag(name) for name in given]
            raise ValueError(f"--decoding-from sets the decoding; drop {', '.join(flags)}")
        d = decoding_from(args.decoding_from)
        settings = GenerationSettings(do_sample=True, seed=args.seed, temperature=d["temperature"], top_p=d["top_p"],
                                      top_k=d["top_k"], max_new_tokens=d["max_new_tokens"],
                                      enable_thinking=d["enable_thinking"], repetition_penalty=d["repetition_penalty"])
    else:
        sampling = [_flag(name) for name in GenerationSettings.SAMPLING if name in given]
        if sampling and not args.sample:
            raise ValueError(f"{', '.join(sampling)} need --do-sample")
        settings = GenerationSettings(**{"max_new_tokens": max_new_tokens, **given}, do_sample=args.sample,
                                      seed=args.seed)
    num_samples = getattr(args, "num_samples", 1)
    if num_samples > 1 and not settings.do_sample:
        raise ValueError(f"--num-samples {num_samples} needs sampling (--do-sample or --decoding-from): greedy "
                         "answers are all the same")
    return settings
