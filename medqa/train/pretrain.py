"""A small *pretrained* Qwen3-shaped base: a short causal-LM pretraining on the training split's plain text.

The demo and the learning tests start from this base (`models/tiny-base`), as real pipelines start from a
pretrained model: it already "speaks" the sample domain, and SFT then only has to teach the chat and
`<think>` format. The documents are the training split's questions, reasoning and answers as *plain text*
(no chat template, no think tags, each ended by `<|endoftext|>`), so the base has never seen the answer format
and the held-out splits (dev, test, gold, red team) are not in its corpus.

The build is deterministic (seed, one process) and cached: the output folder carries `pretrain.json` with a
key over the recipe, the corpus and this code, and a build whose key matches is skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from medqa.errors import ExitCode
from medqa.runs.io import InputError, atomic_dir, iter_jsonl
from medqa.text.think import split_think

KEY_FILE = "pretrain.json"


@dataclass
class PretrainConfig:
    """Model shape and schedule. Defaults chosen by measurement on 2 CPU cores (docs/demo.md)."""

    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    vocab_size: int = 4096  # BPE merges before special tokens (as `medqa tiny-model --vocab-size`)
    seq_len: int = 256
    batch_size: int = 8
    steps: int = 240
    learning_rate: float = 1e-2
    warmup_steps: int = 10
    weight_decay: float = 0.01
    initializer_range: float = 0.02
    threads: int = 2  # not part of the cache key: it changes float rounding, not the recipe
    seed: int = 42

    def __post_init__(self):
        for f in ("hidden_size", "num_hidden_layers", "num_attention_heads", "seq_len", "batch_size", "steps", "threads"):
            if getattr(self, f) < 1:
                raise ValueError(f"{f} must be >= 1, got {getattr(self, f)}")
        if self.hidden_size % self.num_attention_heads or self.num_attention_heads % 2:
            raise ValueError("hidden_size must be a multiple of num_attention_heads, which must be even "
                             f"(Qwen3's KV heads = heads / 2); got {self.hidden_size} / {self.num_attention_heads}")
        if self.learning_rate <= 0 or not 0 <= self.warmup_steps < self.steps:
            raise ValueError("learning_rate must be > 0 and 0 <= warmup_steps < steps")

    def qwen3_shape(self) -> dict:
        """Qwen3-1.7B's ratios (MLP 3x hidden, heads x head_dim = hidden, KV heads = heads / 2) at this size."""
        from medqa.models.tiny import TINY

        return {**TINY, "hidden_size": self.hidden_size, "intermediate_size": 3 * self.hidden_size,
                "num_hidden_layers": self.num_hidden_layers, "num_attention_heads": self.num_attention_heads,
                "num_key_value_heads": self.num_attention_heads // 2,
                "head_dim": self.hidden_size // self.num_attention_heads,
                "initializer_range": self.initializer_range}


# ---------------------------------------------------------------- corpus


def documents(train_file: str | Path) -> list[str]:
    """Plain-text documents from a `make data` training split: question, reasoning, answer of each row."""
    docs = []
    for line, row in iter_jsonl(train_file):
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InputError(train_file, line, "messages", "expected a non-empty list of {role, content}")
        parts = []
        for m in messages:
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                raise InputError(train_file, line, "messages", "expected {role, content} strings")
            if m.get("role") == "user":
                parts.append(m["content"].strip())
            elif m.get("role") == "assistant":
                s = split_think(m["content"])
                parts += [p for p in (s.think, s.answer) if p]
        if parts:
            docs.append("\n".join(parts))
    if not docs:
        raise InputError(train_file, None, None, "no documents to pretrain on")
    return docs


def pretrain_key(cfg: PretrainConfig, train_file: str | Path) -> str:
    """What produced a base: recipe, corpus bytes, tokenizer corpus, and the code that builds the tokenizer, the
    documents and the model (not the CLI around it)."""
    import inspect

    from medqa.models import tiny

    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in asdict(cfg).items() if k != "threads"}, sort_keys=True).encode())
    h.update(Path(train_file).read_bytes())
    for fn in (documents, token_stream, lr_at, build_tiny_base, PretrainConfig.qwen3_shape,
               tiny.build_tokenizer, tiny.corpus_texts, tiny.qwen3_chat_template):
        h.update(inspect.getsource(fn).encode())
    h.update(repr(sorted(tiny.TINY.items())).encode())
    for text in tiny.corpus_texts():
        h.update(text.encode("utf-8"))
    return h.hexdigest()[:16]


def is_current(out: str | Path, key: str) -> bool:
    try:
        return json.loads((Path(out) / KEY_FILE).read_text(encoding="utf-8")).get("key") == key
    except (OSError, json.JSONDecodeError):
        return False


# ---------------------------------------------------------------- training


def token_stream(tokenizer, docs: list[str]):
    import torch

    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    ids: list[int] = []
    for doc in docs:
        ids += tokenizer(doc, add_special_tokens=False)["input_ids"] + [eot]
    return torch.tensor(ids, dtype=torch.long)


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def build_tiny_base(out: str | Path, train_file: str | Path, cfg: PretrainConfig, *, force: bool = False,
                    progress: bool = True) -> dict:
    """Pretrain and save the base (model, tokenizer, `pretrain.json`); skipped when `out` is current."""
    key = pretrain_key(cfg, train_file)
    if not force and is_current(out, key):
        info = json.loads((Path(out) / KEY_FILE).read_text(encoding="utf-8"))
        return {**info, "skipped": True}

    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from medqa.models.tiny import build_tokenizer, corpus_texts

    started = time.perf_counter()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    tokenizer = build_tokenizer(corpus_texts(), vocab_size=cfg.vocab_size)
    docs = documents(train_file)
    stream = token_stream(tokenizer, docs)
    n_blocks = (len(stream) - 1) // cfg.seq_len
    if n_blocks < cfg.batch_size:
        raise ValueError(f"{train_file}: {len(stream)} tokens make fewer than batch_size={cfg.batch_size} "
                         f"blocks of seq_len={cfg.seq_len}")
    vocab = (len(tokenizer) + 63) // 64 * 64
    model = Qwen3ForCausalLM(Qwen3Config(
        **cfg.qwen3_shape(), vocab_size=vocab,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    model.train()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.learning_rate, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.empty(0, dtype=torch.long)
    losses: list[float] = []
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:  # a fresh epoch over the blocks, at a random offset
            offset = int(torch.randint(0, cfg.seq_len, (1,), generator=gen))
            n = (len(stream) - 1 - offset) // cfg.seq_len
            starts = offset + torch.arange(n) * cfg.seq_len
            order = torch.cat([order, starts[torch.randperm(n, generator=gen)]])
        starts, order = order[: cfg.batch_size], order[cfg.batch_size:]
        batch = torch.stack([stream[s: s + cfg.seq_len + 1] for s in starts.tolist()])
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = model(input_ids=batch, labels=batch).loss  # the model shifts labels: seq_len predictions
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(round(loss.item(), 4))
        if progress and (step % 25 == 0 or step == cfg.steps - 1):
            rate = (step + 1) * cfg.batch_size * cfg.seq_len / (time.perf_counter() - started)
            print(f"   pretrain step {step + 1}/{cfg.steps}  loss {losses[-1]:.3f}  {rate:,.0f} tokens/s",
                  file=sys.stderr, flush=True)
    model.eval()
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    wall = time.perf_counter() - started
    info = {
        "key": key, "config": asdict(cfg), "train_file": str(train_file), "documents": len(docs),
        "corpus_tokens": len(stream), "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": vocab, "loss_first": losses[0], "loss_last": losses[-1],
        "uniform_loss": round(math.log(vocab), 4), "losses": losses, "wall_s": round(wall, 1),
        "tokens_per_s": round(cfg.steps * cfg.batch_size * cfg.seq_len / wall, 1),
    }
    with atomic_dir(out, kind="tiny-model") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / KEY_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return {**info, "skipped": False}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medqa pretrain", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="models/tiny-base", help="output directory (default: models/tiny-base)")
    p.add_argument("--train-file", default="data/processed/train.jsonl", help="training split from `make data`")
    p.add_argument("--force", action="store_true", help="rebuild even when the output is current")
    for f in fields(PretrainConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default, dest=f"pt_{f.name}")
    return p


def run(args: argparse.Namespace) -> int:
    cfg = PretrainConfig(**{f.name: getattr(args, f"pt_{f.name}") for f in fields(PretrainConfig)})
    if not Path(args.train_file).is_file():
        raise FileNotFoundError(f"{args.train_file} not found: run `make data` first")
    info = build_tiny_base(args.out, args.train_file, cfg, force=args.force)
    if info["skipped"]:
        print(f"tiny base {args.out} is current (key {info['key']}); --force rebuilds it")
    else:
        print(f"tiny base saved to {args.out}: {info['parameters']:,} parameters, loss {info['loss_first']:.2f} -> "
              f"{info['loss_last']:.2f} (uniform {info['uniform_loss']:.2f}) over {cfg.steps} steps in {info['wall_s']} s")
    return ExitCode.OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (OSError, ValueError) as e:
        print(f"medqa pretrain: error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
