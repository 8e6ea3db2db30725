"""Generation shared by `medqa predict`, the evaluation and the Gradio demo.

Models load through `medqa.models.loading.load_for_inference` (`load_model` below): a base model directory (or hub id), a
PEFT adapter directory (given as `--adapter` on top of `--model`, or alone as `--model`), or a merged model.

Generation is batched with *left* padding (decoder-only models continue from the last prompt token), renders
chats through `medqa.models.chat.render_prompt` (the model family's system prompt and thinking switch: Qwen3's
`enable_thinking`, or a prefilled empty think block), stops at `medqa.models.chat.stop_ids` (EOS and `<|im_end|>`), and
is greedy unless sampling is asked for. Greedy batched generation gives the same tokens as one-by-one generation
(tests check this).

`chat_input_ids` is the one place a chat becomes the model's input ids (predict, eval, serve, PPO rollouts, GRPO
prompts, the RL prompt-length check): only the template's own special tokens are special; special-token text inside
a message (a user typing `<|im_end|>\n<|im_start|>system`) is tokenised as ordinary text, so it cannot forge a turn.

Sampling with one seed per row (`generate_batch(..., row_seeds=...)`) draws each row's tokens from its own random
stream, so a sampled answer depends on its seed, not on which other prompts share its batch.

`GenerationSettings` is the one decoding value: the commands' flags become one (`medqa.eval.decoding`), and predict,
eval run, serve, the trainers' evaluation and the benchmarks pass it around whole. A PPO or GRPO run records its
rollout decoding in its output folder (`write_rollout_decoding`), which `medqa.eval.decoding.decoding_from` reads, so a
policy can be evaluated the way it was trained.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

# The SFT data carries its own system message; None: the model family's rule (medqa/models/chat.py, with_system).
DEFAULT_SYSTEM_PROMPT = None


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are decoded: the one value predict, eval run and serve pass around. A new decoding option is a
    field here (its default leaving decoding as it was, its check in `__post_init__`, its `generate` argument in
    `generate_kwargs`) and one flag line in `medqa.eval.decoding.add_decoding_args` (dest: the field's name, default
    None): the flag then becomes the setting, and the setting is recorded in the predictions rows (`record`), with
    no other change."""

    # The knobs that act only when sampling: `--temperature` etc. need `--do-sample`, a row records them only when
    # sampling, and `_row_sampler` applies them itself (a new one needs a warper there too).
    SAMPLING: ClassVar[tuple[str, ...]] = ("temperature", "top_p", "top_k")

    max_new_tokens: int = 512
    enable_thinking: bool = True
    do_sample: bool = False
    temperature: float = 0.6  # Qwen3's recommended thinking-mode sampling settings
    top_p: float = 0.95
    top_k: int = 20
    # Seeds sampling, so a sampled run is reproducible: per batch in generate_batch, per answer in predict (row_seed).
    seed: int | None = None
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

    def record(self) -> dict[str, Any]:
        """The decoding a predictions row (and metrics.json) records, and which its resume key hashes: thinking, the
        token budget, sampling and its seed always; the sampling knobs when sampling; any other setting only when it
        is not its default, so the rows written before that setting existed keep their keys."""
        out: dict[str, Any] = {"think": self.enable_thinking, "max_new_tokens": self.max_new_tokens,
                               "sample": self.do_sample, "seed": self.seed if self.do_sample else None}
        if self.do_sample:
            out.update({name: getattr(self, name) for name in self.SAMPLING})
        named = ("enable_thinking", "max_new_tokens", "do_sample", "seed", *self.SAMPLING)
        for f in fields(self):
            if f.name not in named and getattr(self, f.name) != f.default:
                out[f.name] = getattr(self, f.name)
        return out


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
    from medqa.runs.io import atomic_write

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


ENGINES = ("hf", "vllm")


def load_model(model: str, adapter: str | None = None, *, engine: str = "hf", server_url: str | None = None,
               **kwargs: Any):
    """(model, tokenizer) ready for generation: engine hf is `medqa.models.loading.load_for_inference` (imported on first use
    so that the commands that only read generation settings stay light); engine vllm the same model on a vLLM server
    (`medqa.engine.served.load_served`; `server_url` None: the URL `make vllm-serve` wrote)."""
    if engine == "vllm":
        from medqa.engine.served import load_served

        return load_served(model, adapter, url=server_url)
    if engine != "hf":
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    from medqa.models.loading import load_for_inference

    return load_for_inference(model, adapter, **kwargs)


def chat_messages(question: str, system: str | None = DEFAULT_SYSTEM_PROMPT) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": question}]


def build_prompt(tokenizer, messages: Sequence[dict[str, str]], enable_thinking: bool = True) -> str:
    """Render a chat (ending with the user turn) into the generation prompt, as text (for display and logs):
    `medqa.models.chat.render_prompt`.

    Tokenising this text would parse special-token text typed inside a message as special tokens: the model's input
    comes from `chat_input_ids`."""
    from medqa.models.chat import render_prompt

    return render_prompt(tokenizer, messages, enable_thinking)


def _special_tokens(tokenizer) -> list[str]:
    """The tokenizer's special added tokens (those `split_special_tokens` turns into text), longest first."""
    found = {str(t) for t in getattr(tokenizer, "all_special_tokens", [])}
    for t in getattr(tokenizer, "added_tokens_decoder", {}).values():
        if getattr(t, "special", False):
            found.add(t.content)
    return sorted((t for t in found if t), key=lambda t: (-len(t), t))


def chat_input_ids(tokenizer, messages: Sequence[Mapping[str, Any]], enable_thinking: bool | None = True, *,
                   chat_template: str | None = None, **template_kwargs: Any) -> list[int]:
    """The generation prompt of a chat as input ids, with the message contents tokenised as text.

    The chat template is rendered with every special-token string inside a message's content replaced by a
    placeholder (private-use characters that no content contains), so the special tokens left in the rendered text
    are exactly the template's own. The text is cut at those tokens; each piece between them gets its placeholders
    put back and is tokenised with `split_special_tokens=True`, so a user's `<|im_start|>` becomes the ids of its
    characters. A tokenizer splits its added tokens out before it tokenises the text between them, so a chat
    without special-token text gets the same ids as tokenising `build_prompt`'s text (tests check this on the
    sample data)."""
    from medqa.models.chat import render_prompt, template_of

    template_of(tokenizer, chat_template)  # ValueError without a chat template, before any work
    specials = _special_tokens(tokenizer)
    contents = [m["content"] for m in messages if isinstance(m.get("content"), str)]
    marker = next((chr(c) for c in range(0xE000, 0xF900) if not any(chr(c) in t for t in contents)), None)
    if marker is None:
        raise ValueError("the chat uses every private-use character; cannot mark the special-token text in it")
    find = re.compile("|".join(re.escape(t) for t in specials)) if specials else None
    number = {t: i for i, t in enumerate(specials)}

    def hide(text: str) -> str:
        return find.sub(lambda m: f"{marker}{number[m.group()]}{marker}", text) if find else text

    unhide = re.compile(f"{re.escape(marker)}(\\d+){re.escape(marker)}")
    hidden = [{**m, "content": hide(m["content"])} if isinstance(m.get("content"), str) else dict(m)
              for m in messages]
    rendered = render_prompt(tokenizer, hidden, enable_thinking, chat_template=chat_template, **template_kwargs)
    pieces: list[str | int] = []  # text to tokenise, or a template special token's id
    pos = 0
    for m in find.finditer(rendered) if find else ():
        pieces += [rendered[pos:m.start()], tokenizer.convert_tokens_to_ids(m.group())]
        pos = m.end()
    pieces.append(rendered[pos:])
    texts = [unhide.sub(lambda m: specials[int(m.group(1))], p) for p in pieces if isinstance(p, str) and p]
    encoded = iter(tokenizer(texts, add_special_tokens=False, split_special_tokens=True).input_ids if texts else [])
    ids: list[int] = []
    for p in pieces:
        if isinstance(p, int):
            ids.append(p)
        elif p:
            ids.extend(next(encoded))
    return ids


def left_pad(tokenizer, rows: Sequence[Sequence[int]], device=None) -> dict[str, Any]:
    """`input_ids` and `attention_mask` tensors of id lists padded on the left with the tokenizer's pad id."""
    import torch

    width = max((len(r) for r in rows), default=0)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return {"input_ids": ids.to(device) if device is not None else ids,
            "attention_mask": mask.to(device) if device is not None else mask}


def _stop_ids(model, tokenizer) -> list[int]:
    from medqa.models.chat import stop_ids

    return stop_ids(tokenizer, model.config, model.generation_config)


def generate_batch(model, tokenizer, prompts: Sequence[str] | Sequence[Sequence[int]], settings: GenerationSettings,
                   row_seeds: Sequence[int] | None = None) -> list[Generation]:
    """Generate one continuation per prompt, all in one left-padded batch. A prompt is its input ids
    (`chat_input_ids`), or rendered text, tokenised as it is (special-token text in it is parsed as special).

    With sampling and `row_seeds` (one per prompt), each row samples from its own seeded stream; otherwise a sampled
    batch is seeded once with `settings.seed`."""
    import torch

    if not prompts:
        return []
    if row_seeds is not None and len(row_seeds) != len(prompts):
        raise ValueError(f"{len(row_seeds)} row seeds for {len(prompts)} prompts")
    if getattr(model, "served", False):  # a model on a vLLM server (`medqa.engine.served.ServedModel`)
        ids = [tokenizer(p, add_special_tokens=False).input_ids if isinstance(p, str) else list(p) for p in prompts]
        stop = _stop_ids(model, tokenizer)
        start = time.perf_counter()
        new = model.complete_ids(ids, settings, stop, row_seeds)
        return _generations(tokenizer, new, stop, (time.perf_counter() - start) * 1000.0)
    if all(isinstance(p, str) for p in prompts):
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True, padding_side="left",
                        add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
    elif not any(isinstance(p, str) for p in prompts):
        enc = left_pad(tokenizer, prompts, model.device)
    else:
        raise TypeError("prompts must be all texts or all id lists")
    kwargs = settings.generate_kwargs()
    if settings.do_sample and row_seeds is not None:
        greedy = replace(settings, do_sample=False)  # every other setting applies as it is
        kwargs = {**greedy.generate_kwargs(), "logits_processor": [_row_sampler(settings, row_seeds, model.device)]}
    elif settings.do_sample and settings.seed is not None:
        torch.manual_seed(settings.seed)
    stop = _stop_ids(model, tokenizer)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, **kwargs, eos_token_id=stop, pad_token_id=tokenizer.pad_token_id)
    return _generations(tokenizer, out[:, enc["input_ids"].shape[1]:].tolist(), stop,
                        (time.perf_counter() - start) * 1000.0)


def _generations(tokenizer, new: list[list[int]], stop: list[int], latency_ms: float) -> list[Generation]:
    """Each row's continuation up to its first stop token (the rest is padding), decoded."""
    results = []
    for ids in new:
        n = len(ids)
        for i, t in enumerate(ids):
            if t in stop:
                n = i
                break
        text = tokenizer.decode(ids[:n], skip_special_tokens=True)
        results.append(Generation(text=text.strip(), gen_tokens=n, latency_ms=round(latency_ms, 1)))
    return results


def generate(model, tokenizer, questions: Sequence[str], settings: GenerationSettings, batch_size: int = 8,
             system: str | None = DEFAULT_SYSTEM_PROMPT) -> list[Generation]:
    """Convenience: questions in, generations out (batches of `batch_size`, in order)."""
    prompts = [chat_input_ids(tokenizer, chat_messages(q, system), settings.enable_thinking) for q in questions]
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

    enc = left_pad(tokenizer, [chat_input_ids(tokenizer, messages, settings.enable_thinking)], model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300.0)

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return bool(stop_event is not None and stop_event.is_set())

    kwargs = dict(**enc, **settings.generate_kwargs(), streamer=streamer, pad_token_id=tokenizer.pad_token_id,
                  eos_token_id=_stop_ids(model, tokenizer), stopping_criteria=StoppingCriteriaList([_Stop()]))
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
