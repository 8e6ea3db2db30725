"""Merge a LoRA/QLoRA adapter into its base model and save a standalone model + tokenizer (`make merge`).

QLoRA adapters are merged onto the full-precision base (bf16 or fp32), never onto the 4-bit one: the adapter
config names the base model and we load it without any quantisation.

    medqa merge --adapter outputs/sft-lora --out outputs/sft-lora-merged [--dtype auto]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medqa.errors import ExitCode
from medqa.runs.io import OutputError, atomic_dir, preflight_output_dir


def merge_adapter(adapter: str | Path, out: str | Path, base: str | None = None, dtype: str = "auto",
                  overwrite: bool = False) -> Path:
    adapter, out = Path(adapter), Path(out)
    config_path = adapter / "adapter_config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: --adapter must be a LoRA/QLoRA output folder (full runs need no merge)")
    base = base or json.loads(config_path.read_text(encoding="utf-8"))["base_model_name_or_path"]
    inputs = [p for p in (adapter, Path(base)) if p.exists()]
    preflight_output_dir(out, inputs, overwrite=overwrite, kind="merge")  # before loading anything
    import torch

    from medqa.models import loading

    tokenizer = loading.load_tokenizer(base, str(adapter), pad_with_eos=False)
    # No quantisation: the adapter goes onto the full-precision base; dtype auto keeps the checkpoint's dtype.
    model = loading.load_causal_lm(base, dtype="auto" if dtype == "auto" else getattr(torch, dtype))
    model = loading.attach_adapter(model, str(adapter), merge=True, tokenizer=tokenizer)
    with atomic_dir(out, inputs=inputs, overwrite=overwrite, kind="merge") as tmp:  # a killed merge leaves no half-written model
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="medqa merge", description=__doc__.splitlines()[0])
    p.add_argument("--adapter", required=True, help="folder with adapter_config.json (an SFT output dir)")
    p.add_argument("--out", required=True, help="where to write the merged model + tokenizer")
    p.add_argument("--base", default=None, help="base model (default: the one named in adapter_config.json)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                   help="dtype of the merged weights (auto: the base checkpoint's dtype)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it holds files medqa did not write (never an input, the project or home)")
    args = p.parse_args(argv)
    try:
        out = merge_adapter(args.adapter, args.out, base=args.base, dtype=args.dtype, overwrite=args.overwrite)
    except (FileNotFoundError, OutputError) as e:
        print(f"medqa merge: error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    print(f"merged model saved to {out}")
    return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
