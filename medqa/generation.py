"""Generation shared by `medqa predict`, the evaluation and the Gradio demo.

Models load through `medqa.modeling.load_for_inference` (`load_model` below): a base model directory (or hub id), a
PEFT adapter directory (given as `--adapter` on top of `--model`, or alone as `--model`), or a merged model.

Generation is batched with *left* padding (decoder-only models continue from the last prompt token), uses
the model's chat template with Qwen3's `enable_thinking` switch, and is greedy unless sampling is asked
for. Greedy batched generation gives the same tokens as one-by-one generation (tests check this).

Sampling with one seed per row (`generate_batch(..., row_seeds=...)`) draws each row's tokens from its own random
stream, so a sampled answer depends on its seed, not on which other prompts share its batch. `decoding_from` reads
the exact rollout decoding of a PPO or GRPO run (its output folder or recipe), so a policy can be evaluated the way
it was trained.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_SYSTEM_PROMPT = None  # the SFT data carries its own system message; None = the template's default


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 512
    enable_thinking: bool = True
    do_sample: bool = False
    temperature: float = 0.6  # Qwen3's recommended thinking-mode sampling settings
    top_p: float = 0.95
    top_k: int = 20
    seed: int | None = None  # seeds sampling per batch, so a sampled run is reproducible
    # > 1 lowers the logits of tokens already in the prompt or the answer (transformers' `repetition_penalty`),
    # the counterpart of the presence penalty Qwen3's card recommends against endless repetitions; 1 is off.
    repetition_penalty: float = 1.0

    def __post_init__(self):
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise ValueError(f"temperature must be > 0, top_p in (0, 1] and top_k >= 0 (0: off); got temperature "
                             f"{self.temperature}, top_p {self.top_p}, top_k {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample,
                                  "repetition_penalty": self.repetition_penalty}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k or None)
        else:
            # Explicitly neutral so a checkpoint's generation_config (Qwen3 ships sampling defaults) cannot
            # turn greedy decoding into sampling or warn about unused sampling flags.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


def row_seed(seed: int, item_id: str, sample: int) -> int:
    """The sampling seed of one answer: a function of the run's seed, the item's id and the sample's index only."""
    digest = hashlib.sha256(f"{seed}:{item_id}:{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def _row_sampler(settings: GenerationSettings, row_seeds: Sequence[int], device):
    """A logits processor that samples each row from its own seeded generator (temperature, then top-k, then top-p,
    transformers' order) and leaves only the drawn token, so greedy decoding then emits it."""
    import torch
    from transformers import LogitsProcessor
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = [TemperatureLogitsWarper(settings.temperature)]
    if settings.top_k and settings.top_k > 0:
        warpers.append(TopKLogitsWarper(settings.top_k))
    if settings.top_p < 1.0:
        warpers.append(TopPLogitsWarper(settings.top_p))
    gens = [torch.Generator(device=device).manual_seed(int(s)) for s in row_seeds]

    class RowSampler(LogitsProcessor):
        def __call__(self, input_ids, scores):
            scores = scores.float()
            for w in warpers:
                scores = w(input_ids, scores)
            probs = torch.softmax(scores, dim=-1)
            picked = torch.cat([torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(gens)])
            out = torch.full_like(scores, float("-inf"))
            out[torch.arange(out.shape[0], device=out.device), picked] = 0.0
            return out

    return RowSampler()


def add_repetition_penalty_arg(p) -> None:
    """`--repetition-penalty` for the commands that generate (predict, eval run), checked at parse time."""
    from medqa.argtypes import at_least

    p.add_argument("--repetition-penalty", type=at_least(float, 0.0, inclusive=False), default=1.0,
                   help="> 1 discourages tokens already in the prompt or answer (Qwen3's card recommends a presence "
                        "penalty against endless repetitions); default 1 (off)")


# ---------------------------------------------------------------- the decoding an RL run samples its rollouts with

ROLLOUT_DECODING_FILE = "rollout_decoding.json"  # written by PPO and GRPO into their output folder
RL_KINDS = ("ppo", "grpo")


def rollout_decoding(kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The rollout decoding of a PPO or GRPO run from its options (a recipe over the trainer's defaults, or the
    trainer's config as a dict): temperature, top-p, top-k (0: off), max new tokens, thinking on/off, repetition
    penalty (1: off)."""
    if kind == "ppo":
        max_new, think = options["max_new_tokens"], options.get("enable_thinking", True)
    elif kind == "grpo":
        template = options.get("chat_template_kwargs") or {}
        max_new, think = options["max_completion_length"], template.get("enable_thinking", True)
    else:
        raise ValueError(f"kind must be one of {', '.join(RL_KINDS)}; got {kind!r}")
    penalty = options.get("repetition_penalty") or 1.0
    return {"trainer": kind, "temperature": float(options["temperature"]), "top_p": float(options.get("top_p") or 1.0),
            "top_k": int(options.get("top_k") or 0), "max_new_tokens": int(max_new), "enable_thinking": bool(think),
            "repetition_penalty": float(penalty)}


def write_rollout_decoding(out_dir: str | Path, kind: str, options: Mapping[str, Any]) -> dict[str, Any]:
    from medqa.io import atomic_write

    decoding = rollout_decoding(kind, options)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with atomic_write(Path(out_dir) / ROLLOUT_DECODING_FILE) as fh:
        json.dump(decoding, fh, indent=2)
        fh.write("\n")
    return decoding


@dataclass(frozen=True)
class Generation:
    text: str  # decoded continuation (special tokens removed; <think> tags kept)
    gen_tokens: int  # generated tokens, excluding padding and the final EOS
    latency_ms: float  # wall time of the batch this item was generated in, shared by the batch


def load_model(model: str, adapter: str | None = None, **kwargs: Any):
    """(model, tokenizer) ready for generation: `medqa.modeling.load_for_inference`, imported on first use so that
    the commands that only read generation settings stay light."""
    from medqa.modeling import load_for_inference

    return load_for_inference(model, adapter, **kwargs)


def chat_messages(question: str, system: str | None = DEFAULT_SYSTEM_PROMPT) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": question}]


def build_prompt(tokenizer, messages: Sequence[dict[str, str]], enable_thinking: bool = True) -> str:
    """Render a chat (ending with the user turn) into the generation prompt."""
    if tokenizer.chat_template is None:
        raise ValueError("the tokenizer has no chat template; pass a chat model or an SFT output")
    return tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
    )


def _stop_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def generate_batch(model, tokenizer, prompts: Sequence[str], settings: GenerationSettings,
                   row_seeds: Sequence[int] | None = None) -> list[Generation]:
    """Generate one continuation per rendered prompt, all in one left-padded batch.

    With sampling and `row_seeds` (one per prompt), each row samples from its own seeded stream; otherwise a sampled
    batch is seeded once with `settings.seed`."""
    import torch

    if not prompts:
        return []
    if row_seeds is not None and len(row_seeds) != len(prompts):
        raise ValueError(f"{len(row_seeds)} row seeds for {len(prompts)} prompts")
    enc = tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    kwargs = settings.generate_kwargs()
    if settings.do_sample and row_seeds is not None:
        greedy = GenerationSettings(max_new_tokens=settings.max_new_tokens,
                                    repetition_penalty=settings.repetition_penalty)
        kwargs = {**greedy.generate_kwargs(), "logits_processor": [_row_sampler(settings, row_seeds, model.device)]}
    elif settings.do_sample and settings.seed is not None:
        torch.manual_seed(settings.seed)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, **kwargs, pad_token_id=tokenizer.pad_token_id)
    latency_ms = (time.perf_counter() - start) * 1000.0
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    stop = _stop_ids(model, tokenizer)
    results = []
    for ids in new:
        n = len(ids)
        for i, t in enumerate(ids):  # the first stop token ends the sequence; the rest is padding
            if t in stop:
                n = i
                break
        text = tokenizer.decode(ids[:n], skip_special_tokens=True)
        results.append(Generation(text=text.strip(), gen_tokens=n, latency_ms=round(latency_ms, 1)))
    return results


def generate(model, tokenizer, questions: Sequence[str], settings: GenerationSettings, batch_size: int = 8,
             system: str | None = DEFAULT_SYSTEM_PROMPT) -> list[Generation]:
    """Convenience: questions in, generations out (batches of `batch_size`, in order)."""
    prompts = [build_prompt(tokenizer, chat_messages(q, system), settings.enable_thinking) for q in questions]
    out: list[Generation] = []
    for i in range(0, len(prompts), batch_size):
        out.extend(generate_batch(model, tokenizer, prompts[i:i + batch_size], settings))
    return out


def stream_generate(model, tokenizer, messages: Sequence[dict[str, str]], settings: GenerationSettings,
                    stop_event: threading.Event | None = None) -> Iterator[str]:
    """Yield the growing decoded continuation as tokens arrive (generation runs in a worker thread).

    `stop_event`, when set by the caller (e.g. the user pressed Stop), ends generation at the next token.
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    prompt = build_prompt(tokenizer, messages, settings.enable_thinking)
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300.0)

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return bool(stop_event is not None and stop_event.is_set())

    kwargs = dict(**enc, **settings.generate_kwargs(), streamer=streamer, pad_token_id=tokenizer.pad_token_id,
                  stopping_criteria=StoppingCriteriaList([_Stop()]))
    errors: list[BaseException] = []

    def _run():
        try:
            with torch.inference_mode():
                model.generate(**kwargs)
        except BaseException as e:  # surfaced in the caller's thread below
            errors.append(e)
            streamer.end()

    if settings.do_sample and settings.seed is not None:
        torch.manual_seed(settings.seed)
    worker = threading.Thread(target=_run, daemon=True)
    worker.start()
    text = ""
    for piece in streamer:
        if piece:
            text += piece
            yield text
    worker.join()
    if errors:
        raise errors[0]
