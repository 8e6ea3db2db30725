"""A tiny random-init Qwen3 with a real byte-level BPE tokenizer, built offline in seconds.

Tests and the CPU profile use it in place of Qwen/Qwen3-1.7B: same architecture class, same special
tokens, same chat template (TRL's copy of Qwen3's, so SFTTrainer swaps in its training template and
assistant-only loss works), shapes scaled down with Qwen3-1.7B's ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from medqa.errors import ExitCode
from medqa.runs.io import OutputError, atomic_dir, preflight_output_dir

# Qwen3-1.7B: hidden 2048, intermediate 6144 (3x), 28 layers, 16 heads x head_dim 128, 8 KV heads (heads/2),
# tied embeddings, vocab 151936, rope_theta 1e6.
QWEN3_1_7B = dict(
    hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
    num_key_value_heads=8, head_dim=128, vocab_size=151936, tie_word_embeddings=True,
    max_position_embeddings=40960, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
)
TINY = dict(
    hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
    max_position_embeddings=4096, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
    # After the final RMSNorm the hidden state has norm ~sqrt(hidden)=8, so a logit is at most 8·|embedding|.
    # With Qwen's 0.02 init that is ~1.3 and a LoRA run (embeddings frozen) can never leave the uniform
    # distribution; 0.2 lets LoRA/QLoRA on the tiny model learn the <think> format in a CPU demo.
    initializer_range=0.2,
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # special, as in Qwen3
THINK_TOKENS = ["<think>", "</think>"]  # added but NOT special, as in Qwen3 (they survive decoding)
# Qwen2/Qwen3 pre-tokenizer split pattern.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "data" / "sample"


def qwen3_chat_template() -> str:
    """Qwen3's chat template, byte-identical to the one TRL recognises (trl/chat_templates/qwen3.jinja)."""
    return (resources.files("trl") / "chat_templates" / "qwen3.jinja").read_text(encoding="utf-8")


def _strings(obj) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def corpus_texts(root: Path = DEFAULT_CORPUS) -> list[str]:
    """Every string in the shipped JSON/JSONL sample files, in a deterministic order."""
    texts: list[str] = []
    for path in sorted(root.rglob("*")):
        if path.suffix == ".jsonl":
            for line in path.read_bytes().splitlines():
                try:
                    texts.extend(_strings(json.loads(line.decode("utf-8"))))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    continue  # the deliberately broken files in formats/bad/
        elif path.suffix == ".json":
            try:
                texts.extend(_strings(json.loads(path.read_text(encoding="utf-8"))))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
    if not texts:
        raise FileNotFoundError(f"no sample text found under {root} to train the tiny tokenizer on")
    return texts


def build_tokenizer(texts: list[str], vocab_size: int = 4096):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=None, model_max_length=TINY["max_position_embeddings"],
        clean_up_tokenization_spaces=False, padding_side="right",
    )
    hf.add_tokens(THINK_TOKENS, special_tokens=False)
    hf.chat_template = qwen3_chat_template()
    return hf


def build_tiny_model(out: str | Path, seed: int = 42, vocab_size: int = 4096, corpus: Path = DEFAULT_CORPUS,
                     overwrite: bool = False, head_dim: int = TINY["head_dim"]) -> Path:
    """Build, save and return the directory of a tiny Qwen3ForCausalLM + tokenizer. `head_dim` 64 gives a shape
    vLLM's CPU attention accepts on AVX2 machines (it refuses 16; the vLLM engine's tests use 64)."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    out = Path(out)
    tokenizer = build_tokenizer(corpus_texts(corpus), vocab_size=vocab_size)
    # Round the embedding up to a multiple of 64, as Qwen3 pads its vocab (151936 > 151669 tokens).
    vocab = (len(tokenizer) + 63) // 64 * 64
    torch.manual_seed(seed)
    config = Qwen3Config(
        **{**TINY, "head_dim": head_dim}, vocab_size=vocab,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(out, inputs=[corpus], overwrite=overwrite, kind="tiny-model") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="medqa tiny-model", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="models/tiny-qwen3", help="output directory (default: models/tiny-qwen3)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary size before special tokens")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder of sample JSON/JSONL to train the tokenizer on")
    p.add_argument("--head-dim", type=int, default=TINY["head_dim"],
                   help="attention head size (64: a shape vLLM's CPU backend accepts on AVX2, for `make vllm-serve`)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it holds files medqa did not write (never an input, the project or home)")
    args = p.parse_args(argv)
    try:
        preflight_output_dir(args.out, [args.corpus], overwrite=args.overwrite, kind="tiny-model")
        out = build_tiny_model(args.out, seed=args.seed, vocab_size=args.vocab_size, corpus=args.corpus,
                               overwrite=args.overwrite, head_dim=args.head_dim)
    except OutputError as e:
        print(f"medqa tiny-model: error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except (OSError, ValueError) as e:
        print(f"medqa tiny-model: error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    print(f"tiny Qwen3 saved to {out}")
    return ExitCode.OK
