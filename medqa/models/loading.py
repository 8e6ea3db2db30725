"""The modelling layer: one set of model arguments and one loader, used by every stage that loads a model.

* `ModelArguments` — the model a stage trains and how (`mode`: lora | qlora | full, dtype, LoRA shape, 4-bit
  settings). SFT uses it as is; GRPO and PPO extend it with their own few fields.
* `load_model` — a causal LM for training from `ModelArguments` (4-bit nf4 base for qlora);
  `load_causal_lm` — the one `from_pretrained` call under it (dtype, quantisation, the CPU bnb repack fix);
  `load_tokenizer`; `attach_adapter` — a PEFT adapter on top (trainable, frozen or merged);
  `load_for_inference` — (model, tokenizer) in eval mode for generation (predict, eval, serve, the local judge).

Every kind of checkpoint the project produces loads through here: a base model folder (or a hub id, read offline
from the local cache), a PEFT adapter folder (detected by `adapter_config.json`; its base is the one given or the
one it names in `base_model_name_or_path`), or a merged model folder.

Heavy libraries (torch, transformers, peft, bitsandbytes) are imported inside the functions that need them, except
TRL's `ModelConfig`, the base of `ModelArguments`.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from trl import ModelConfig

Mode = Literal["lora", "qlora", "full"]
MODES = get_args(Mode)
DTYPES = ("auto", "bfloat16", "float16", "float32")
ADAPTER_CONFIG = "adapter_config.json"


# ---------------------------------------------------------------- arguments


@dataclass
class ModelArguments(ModelConfig):
    """The base model and how it is trained: `mode` sets use_peft / load_in_4bit, so recipes never set them."""

    mode: Mode = field(default="lora", metadata={"help": "lora | qlora (4-bit nf4 base + LoRA) | full"})
    dtype: str | None = field(
        default="auto",
        metadata={"help": "weights dtype: auto (bfloat16 when training in bf16 or on a bf16 GPU, else float32), "
                          "bfloat16, float16, float32"},
    )
    lora_r: int = field(default=64, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha (scaling = alpha / r)"})
    lora_dropout: float = field(default=0.1, metadata={"help": "dropout on the LoRA input"})
    lora_target_modules: list[str] | None = field(
        default_factory=lambda: ["all-linear"], metadata={"help": "modules to adapt; all-linear = every projection"}
    )
    use_bnb_nested_quant: bool = field(default=True, metadata={"help": "QLoRA double quantisation"})
    lora_trainable_tokens: list[str] | None = field(
        default=None,
        metadata={"help": "tokens whose embedding rows train beside LoRA (PEFT trainable tokens; tied lm_head "
                          "included): chat/think tokens a small base never saw in pretraining"},
    )

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if not self.model_name_or_path:
            raise ValueError("model_name_or_path is required (a hub id or a local folder such as models/tiny-qwen3)")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be auto, bfloat16, float16 or float32; got {self.dtype!r}")
        if self.load_in_8bit:
            raise ValueError("load_in_8bit is not supported; use `mode: qlora` for a 4-bit base")
        if self.mode == "full":
            if self.use_peft or self.load_in_4bit:
                raise ValueError("mode full trains every weight: remove use_peft / load_in_4bit, or use mode lora/qlora")
        else:
            if self.lora_r < 1:
                raise ValueError(f"lora_r must be >= 1, got {self.lora_r}")
            if self.lora_alpha <= 0:
                raise ValueError(f"lora_alpha must be > 0, got {self.lora_alpha}")
            if not 0.0 <= self.lora_dropout < 1.0:
                raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
            if self.mode == "lora" and self.load_in_4bit:
                raise ValueError("load_in_4bit with mode lora: set `mode: qlora` instead")
        if self.mode == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
            raise ValueError("mode qlora needs bitsandbytes (pip install bitsandbytes); use mode lora without it")
        self.use_peft = self.mode != "full"
        self.load_in_4bit = self.mode == "qlora"
        super().__post_init__()

    def quantization_config(self):
        """The 4-bit nf4 BitsAndBytesConfig of mode qlora (None otherwise)."""
        if self.mode != "qlora":
            return None
        import torch
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=self.use_bnb_nested_quant,
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_quant_storage=self.bnb_4bit_quant_storage,
        )

    def lora_config(self):
        """The LoraConfig of a new adapter (TRL's `get_peft_config`; None for mode full)."""
        from trl import get_peft_config

        return get_peft_config(self) if self.use_peft else None


# ---------------------------------------------------------------- paths


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def looks_local(path: str | Path) -> bool:
    """A path, not a hub id: a hub id is exactly `org/name` (no leading /, . or ~)."""
    text = str(path)
    return text.startswith(("/", ".", "~")) or text.count("/") != 1


def resolve_model_paths(model: str, adapter: str | None = None) -> tuple[str, str | None]:
    """Return (base model, adapter or None). `model` may itself be an adapter directory."""
    if adapter is not None and not is_adapter_dir(adapter):
        raise FileNotFoundError(f"{adapter}: not a PEFT adapter directory (no {ADAPTER_CONFIG})")
    if is_adapter_dir(model):
        if adapter is not None:
            raise ValueError(f"{model} is an adapter directory; pass the base model as --model and it as --adapter")
        cfg_path = Path(model) / ADAPTER_CONFIG
        try:
            base = json.loads(cfg_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
        except json.JSONDecodeError as e:
            raise ValueError(f"{cfg_path}:{e.lineno}: malformed JSON ({e.msg})") from None
        if not base:
            raise ValueError(f"{cfg_path}: base_model_name_or_path: missing; pass --model BASE --adapter {model}")
        return str(base), str(model)
    return str(model), adapter


def check_model_path(path: str, what: str = "model") -> str:
    """`path` if it is a model folder or could be a hub id; FileNotFoundError naming `what` otherwise."""
    if not Path(path).is_dir() and looks_local(path):
        raise FileNotFoundError(f"{path}: no such {what} directory (and not a hub id like Qwen/Qwen3-1.7B)")
    return path


# ---------------------------------------------------------------- dtype, device


def torch_dtype(name: str | None, *, bf16: bool | None = None, fp16: bool = False, device: Any = None):
    """The torch dtype for `name` (auto | bfloat16 | float16 | float32).

    `auto` follows the training precision when the caller trains with one (`bf16` / `fp16` of its
    TrainingArguments: bfloat16, float16, else float32); without it (`bf16=None`) bfloat16 on a bf16-capable CUDA
    `device` (default: CUDA when present), else float32."""
    import torch

    if name not in DTYPES and name is not None:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {name!r}")
    if name not in (None, "auto"):
        return getattr(torch, name)
    if bf16 is not None or fp16:
        return torch.bfloat16 if bf16 else torch.float16 if fp16 else torch.float32
    cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32


def pick_device(device: Any = None):
    """`device`, or CUDA when present, else CPU."""
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------- loading


def disable_bnb_cpu_repack(model) -> int:
    """bitsandbytes repacks 4-bit weights for AVX512-BF16 CPUs on the first no-grad forward (eval, generate),
    after which LoRA gradients through that layer are silently wrong or None. Turn it off on every layer."""
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def load_causal_lm(path: str, *, dtype: Any, quantization_config: Any = None, device: Any = None,
                   attn_implementation: str | None = None, revision: str | None = None,
                   trust_remote_code: bool = False):
    """`AutoModelForCausalLM.from_pretrained` with the project's settings. With a 4-bit `quantization_config` the
    weights are placed on `device` (its CUDA index, else the CPU) and the CPU repack is turned off."""
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype}
    if revision is not None:
        kwargs["revision"] = revision
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    if quantization_config is not None:
        dev = pick_device(device)
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": dev.index if dev.type == "cuda" else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quantization_config is not None and getattr(quantization_config, "load_in_4bit", False):
        disable_bnb_cpu_repack(model)
    return model


def load_model(args: ModelArguments, *, dtype: Any, device: Any = None, path: str | None = None,
               trust_remote_code: bool = False):
    """The base model of `args` (or the one at `path`) for training: 4-bit for mode qlora."""
    return load_causal_lm(path or args.model_name_or_path, dtype=dtype, quantization_config=args.quantization_config(),
                          device=device, attn_implementation=args.attn_implementation, revision=args.model_revision,
                          trust_remote_code=trust_remote_code)


def load_tokenizer(base: str, adapter: str | None = None, *, revision: str | None = None, pad_with_eos: bool = True):
    """The adapter's tokenizer when it ships one (SFT saves it, with the training chat template), else the base's.
    With `pad_with_eos`, a tokenizer without a pad token pads with EOS."""
    from transformers import AutoTokenizer

    src = adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else base
    tokenizer = AutoTokenizer.from_pretrained(src, **({"revision": revision} if revision and src == base else {}))
    if pad_with_eos and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def attach_adapter(model, adapter: str, *, trainable: bool = False, merge: bool = False, tokenizer: Any = None,
                   adapter_name: str = "default"):
    """`model` with the PEFT adapter at `adapter` on top: trained further (`trainable`), frozen, or merged into the
    weights (`merge`). The embedding grows first when `tokenizer` has more tokens than the model (its
    `num_embeddings`: under ZeRO-3 the weight itself is an empty shard, whose size would read as 0)."""
    from peft import PeftModel

    if tokenizer is not None and len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model = PeftModel.from_pretrained(model, adapter, adapter_name=adapter_name, is_trainable=trainable)
    return model.merge_and_unload() if merge else model


def load_for_inference(model: str, adapter: str | None = None, *, device: str | None = None, dtype: str = "auto",
                       merge_adapter: bool = True):
    """Load (model, tokenizer) ready for generation, in eval mode, on `device` (default: cuda if present).

    `model` is a base or merged model folder, a hub id, or an adapter folder (its base is the one it names);
    `adapter` a PEFT adapter on top of `model`. The adapter is merged into the weights by default: identical
    outputs, faster generation."""
    base, adapter = resolve_model_paths(model, adapter)
    check_model_path(base)
    dev = pick_device(device)
    tokenizer = load_tokenizer(base, adapter)
    lm = load_causal_lm(base, dtype=torch_dtype(dtype, device=dev))
    if adapter:
        lm = attach_adapter(lm, adapter, merge=merge_adapter, tokenizer=tokenizer)
    lm.to(dev)
    lm.eval()
    return lm, tokenizer
