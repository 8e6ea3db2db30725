"""Supervised fine-tuning (LoRA, QLoRA or full) of a Qwen3 chat model on the `<think>` data from `make data`.

One recipe YAML (`recipes/sft/…`) fills three dataclasses that extend TRL's; command-line flags override it:

    accelerate launch --config_file accelerate_configs/single_gpu.yaml scripts/sft.py \\
        --config recipes/sft/lora.yaml [--max_steps 3 …]

The project's defaults live in the dataclasses below (assistant-only loss, best-fit-decreasing packing, which is
padding-free, TensorBoard, eval on dev, keep best + last checkpoint); recipes set what differs per mode and
hardware profile. A recipe may name `base:` recipes (a path or a list, relative to itself) that it extends.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import ModelConfig, ScriptArguments, SFTConfig

from medqa.preemption import StopFileCallback, stop_file_from_env
from medqa.recipes import apply_hardware_precision, load_recipe, parse_recipe_args  # noqa: F401  (load_recipe re-exported)

logger = logging.getLogger(__name__)

MODES = ("lora", "qlora", "full")
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class SFTScriptArguments(ScriptArguments):
    """Where the chat-format data lives (rows with a `messages` list: system, user, assistant)."""

    data_dir: str = field(default="data/processed", metadata={"help": "folder written by `make data`"})
    train_file: str = field(default="train.jsonl", metadata={"help": "training split, relative to data_dir"})
    eval_file: str | None = field(default="dev.jsonl", metadata={"help": "eval split, relative to data_dir; none to skip"})
    max_train_samples: int | None = field(default=None, metadata={"help": "keep only the first N training rows"})
    max_eval_samples: int | None = field(default=None, metadata={"help": "keep only the first N eval rows"})
    think_eval_items: int = field(default=0, metadata={
        "help": "at each evaluation, answer the first N eval rows (greedy, think_eval_max_new_tokens, "
                "think_eval_repetition_penalty) and log their think coverage as eval_think_coverage, so "
                "metric_for_best_model think_coverage keeps the checkpoint that closes </think> and answers most "
                "often; 0: off"})
    think_eval_max_new_tokens: int = field(default=256, metadata={"help": "token budget of those answers"})
    think_eval_repetition_penalty: float = field(default=1.3, metadata={"help": "repetition penalty of those answers"})

    def __post_init__(self):
        if isinstance(self.eval_file, str) and self.eval_file.lower() in {"", "none", "null"}:
            self.eval_file = None
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive number of rows, got {value}")
        if self.think_eval_items < 0 or self.think_eval_max_new_tokens < 1 or self.think_eval_repetition_penalty <= 0:
            raise ValueError("think_eval_items must be >= 0, think_eval_max_new_tokens >= 1 and "
                             "think_eval_repetition_penalty > 0")
        if self.think_eval_items and self.eval_file is None:
            raise ValueError("think_eval_items needs an eval_file (its first rows are answered)")


@dataclass
class SFTModelArguments(ModelConfig):
    """The base model and how it is trained: `mode` sets use_peft / load_in_4bit, so recipes never set them."""

    mode: str = field(default="lora", metadata={"help": "lora | qlora (4-bit nf4 base + LoRA) | full", "choices": list(MODES)})
    dtype: str | None = field(
        default="auto",
        metadata={"help": "weights dtype: auto (bfloat16 when training in bf16, else float32), bfloat16, float16, float32"},
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
        if self.dtype not in {"auto", "bfloat16", "float16", "float32"}:
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


@dataclass
class MedqaSFTConfig(SFTConfig):
    """TRL's SFTConfig with this project's defaults; precision follows the hardware unless set explicitly."""

    assistant_only_loss: bool = True
    packing: bool = True  # best-fit decreasing ("bfd") packing, which TRL runs padding-free
    max_length: int | None = 2048
    learning_rate: float = 2e-4
    num_train_epochs: float = 3.0
    lr_scheduler_type: str = "cosine"
    warmup_steps: float = 0.03
    logging_steps: float = 5
    report_to: None | str | list[str] = "tensorboard"
    eval_strategy: str = "epoch"
    save_strategy: str = "epoch"
    save_total_limit: int | None = 2  # the best checkpoint (by eval loss) and the last one survive rotation
    load_best_model_at_end: bool = True
    metric_for_best_model: str | None = "eval_loss"
    seed: int = 42
    auto_resume: bool = field(
        default=True, metadata={"help": "resume from the newest complete checkpoint in output_dir, if any"}
    )

    def __post_init__(self):
        apply_hardware_precision(self)
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.max_length is not None and self.max_length < 16:
            raise ValueError(f"max_length must be >= 16 tokens, got {self.max_length}")
        super().__post_init__()


# ---------------------------------------------------------------- recipes


def parse_args(argv: list[str]) -> tuple[SFTScriptArguments, MedqaSFTConfig, SFTModelArguments]:
    """`--config RECIPE` plus overrides -> the three dataclasses. Unknown options are errors, not ignored."""
    return parse_recipe_args((SFTScriptArguments, MedqaSFTConfig, SFTModelArguments), argv)


# ---------------------------------------------------------------- data, model, checkpoints


def load_split(path: Path, limit: int | None):
    """Rows of `make data` output -> a Dataset with only the `messages` column, checked row by row."""
    from datasets import Dataset

    from medqa.io import InputError, iter_jsonl

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `make data` first, or set data_dir / train_file / eval_file")
    rows = []
    for line, row in iter_jsonl(path):
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
        ):
            raise InputError(path, line, "messages", "expected a list of {role, content} strings")
        if messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
            raise InputError(path, line, "messages", "the last message must be a non-empty assistant turn")
        rows.append({"messages": [{"role": m["role"], "content": m["content"]} for m in messages]})
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise InputError(path, None, None, "no rows")
    return Dataset.from_list(rows)


def resolve_dtype(model_args: SFTModelArguments, training_args: MedqaSFTConfig):
    import torch

    if model_args.dtype == "auto":
        return torch.bfloat16 if training_args.bf16 else torch.float16 if training_args.fp16 else torch.float32
    return getattr(torch, model_args.dtype)


def disable_bnb_cpu_repack(model) -> int:
    """bitsandbytes repacks 4-bit weights for AVX512-BF16 CPUs on the first no-grad forward (eval, generate),
    after which LoRA gradients through that layer are silently wrong or None. Turn it off on every layer."""
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def load_model(model_args: SFTModelArguments, training_args: MedqaSFTConfig):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = dict(
        dtype=resolve_dtype(model_args, training_args),
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
        trust_remote_code=training_args.trust_remote_code,
    )
    if model_args.mode == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=model_args.bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=model_args.use_bnb_nested_quant,
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_quant_storage=model_args.bnb_4bit_quant_storage,
        )
        device = training_args.device
        kwargs["device_map"] = {"": device.index if device.type == "cuda" else "cpu"}
    model = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **kwargs)
    if model_args.mode == "qlora":
        disable_bnb_cpu_repack(model)
    return model


def find_resume_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest checkpoint-N whose trainer_state.json (written last by the Trainer) parses; a run killed
    mid-save leaves a checkpoint without it, which is skipped."""
    out = Path(output_dir)
    if not out.is_dir():
        return None
    found = []
    for child in out.iterdir():
        m = _CHECKPOINT_RE.match(child.name)
        if not (m and child.is_dir()):
            continue
        try:
            json.loads((child / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        found.append((int(m.group(1)), child))
    return str(max(found)[1]) if found else None


def resolve_resume(training_args: MedqaSFTConfig) -> str | None:
    requested = training_args.resume_from_checkpoint
    if requested and requested.lower() not in {"true", "auto", "last"}:
        if not Path(requested).is_dir():
            raise FileNotFoundError(f"resume_from_checkpoint={requested}: no such checkpoint folder")
        return requested
    last = find_resume_checkpoint(training_args.output_dir)
    if requested and last is None and requested.lower() == "true":
        raise FileNotFoundError(f"asked to resume, but {training_args.output_dir} has no complete checkpoint")
    return last if (requested or training_args.auto_resume) else None


# ---------------------------------------------------------------- training


def token_ids(tokenizer, tokens: list[str]) -> list[int]:
    """Each token's id; a string that is not exactly one token of this tokenizer is an error."""
    ids = []
    for token in tokens:
        tid = tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == tokenizer.unk_token_id or tokenizer.convert_ids_to_tokens(tid) != token:
            raise ValueError(f"lora_trainable_tokens: {token!r} is not a single token of this tokenizer")
        ids.append(tid)
    return ids


def train_token_rows(model, ids: list[int]) -> None:
    """Let the embedding rows of `ids` train beside LoRA (tied LM head included: it is the same tensor); every
    other row keeps a zero gradient, so Adam leaves it exactly as it was (the Trainer's weight decay is 0).

    The rows are saved with the adapter (PEFT `save_embedding_layers`) and load back with it. PEFT's own
    `trainable_token_indices` cannot be used: TRL's fused LM head reads `lm_head.weight` directly."""
    import functools

    import torch

    weight = model.get_input_embeddings().weight
    mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype)
    mask[ids] = 1.0
    weight.requires_grad_(True)
    weight.register_hook(lambda grad: grad * mask.to(grad.device))
    model.save_pretrained = functools.partial(model.save_pretrained, save_embedding_layers=True)


class ThinkCoverageCallback:
    """At each evaluation, answer the first eval prompts with the evaluation's decoding and add their think coverage
    (closed `</think>` followed by an answer) to the metrics as `eval_think_coverage`, before the trainer picks its
    best checkpoint. Every rank answers the same prompts with the same weights, so the ranks agree."""

    def __init__(self, prompts: list[list[dict]], tokenizer, max_new_tokens: int, repetition_penalty: float,
                 batch_size: int = 16):
        from medqa.generation import GenerationSettings

        self.prompts, self.tokenizer, self.batch_size = prompts, tokenizer, batch_size
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
        self.history: list[dict] = []

    def coverage(self, model) -> float:
        import torch

        from medqa.eval.items import think_flags
        from medqa.generation import build_prompt, generate_batch

        texts = [build_prompt(self.tokenizer, m, self.settings.enable_thinking) for m in self.prompts]
        was_training, use_cache = model.training, model.config.use_cache
        model.eval()
        model.config.use_cache = True
        try:
            with torch.inference_mode():
                gens = [g for i in range(0, len(texts), self.batch_size)
                        for g in generate_batch(model, self.tokenizer, texts[i:i + self.batch_size], self.settings)]
        finally:
            model.config.use_cache = use_cache
            model.train(was_training)
        return sum(think_flags(g.text)["think_ok"] for g in gens) / len(gens)

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if metrics is not None and model is not None:
            value = self.coverage(model)
            metrics["eval_think_coverage"] = value
            self.history.append({"step": state.global_step, "think_coverage": value})
        return control


def think_callback(script_args: SFTScriptArguments, tokenizer):
    """The ThinkCoverageCallback of `think_eval_items` (a TrainerCallback), or None when off."""
    if not script_args.think_eval_items:
        return None
    from transformers import TrainerCallback

    rows = load_split(Path(script_args.data_dir) / script_args.eval_file, script_args.think_eval_items)
    prompts = [[m for m in r["messages"][:-1]] for r in rows]
    cls = type("ThinkCoverage", (ThinkCoverageCallback, TrainerCallback), {})
    return cls(prompts, tokenizer, script_args.think_eval_max_new_tokens, script_args.think_eval_repetition_penalty)


def build_trainer(script_args: SFTScriptArguments, training_args: MedqaSFTConfig, model_args: SFTModelArguments):
    """Data, tokenizer, model (4-bit for qlora) and TRL's SFTTrainer (LoRA wrapped in for lora/qlora)."""
    from transformers import AutoTokenizer, set_seed
    from trl import SFTTrainer, get_peft_config

    set_seed(training_args.seed)
    data_dir = Path(script_args.data_dir)
    train_dataset = load_split(data_dir / script_args.train_file, script_args.max_train_samples)
    eval_dataset = None
    if script_args.eval_file is not None:
        eval_dataset = load_split(data_dir / script_args.eval_file, script_args.max_eval_samples)
    elif training_args.eval_strategy != "no" or training_args.load_best_model_at_end:
        raise ValueError("eval_file is none: also set eval_strategy no and load_best_model_at_end false")

    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, revision=model_args.model_revision)
    model = load_model(model_args, training_args)
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args) if model_args.use_peft else None,
    )
    if model_args.lora_trainable_tokens:
        if not model_args.use_peft:
            raise ValueError("lora_trainable_tokens is for mode lora/qlora (mode full trains every row anyway)")
        if training_args.weight_decay:
            raise ValueError("lora_trainable_tokens needs weight_decay 0 (decay would move every embedding row)")
        train_token_rows(trainer.model, token_ids(tokenizer, model_args.lora_trainable_tokens))
    if model_args.mode == "qlora":
        disable_bnb_cpu_repack(trainer.model)  # PEFT may have re-created layers; cover them all
    if training_args.metric_for_best_model in ("think_coverage", "eval_think_coverage") and not script_args.think_eval_items:
        raise ValueError("metric_for_best_model think_coverage needs think_eval_items > 0 (the dev rows answered)")
    trainer.think_coverage = think_callback(script_args, tokenizer)
    if trainer.think_coverage is not None:
        trainer.add_callback(trainer.think_coverage)
    return trainer


def main(script_args: SFTScriptArguments, training_args: MedqaSFTConfig, model_args: SFTModelArguments) -> dict:
    """Train, save the best model (adapter or full weights) + tokenizer + model card; returns a summary dict."""
    trainer = build_trainer(script_args, training_args, model_args)
    if trainer.accelerator.is_main_process and model_args.use_peft:
        trainer.model.print_trainable_parameters()

    stop_file = stop_file_from_env()
    stopper = StopFileCallback(stop_file) if stop_file else None
    if stopper:
        trainer.add_callback(stopper)

    resume = resolve_resume(training_args)
    if resume:
        logger.warning("resuming from %s", resume)
    from medqa.throughput import ThroughputMeter, peak_memory_gib, peak_rss_gib

    meter = ThroughputMeter()
    trainer.add_callback(meter)
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    if stopper and stopper.stopped_at is not None:  # unfinished: the next run resumes from the checkpoint just saved
        logger.warning("stopped at step %d on request; checkpoint-%d saved in %s", stopper.stopped_at,
                       stopper.stopped_at, training_args.output_dir)
        trainer.accelerator.wait_for_everyone()
        trainer.end()
        return {"stopped_at": stopper.stopped_at, "resumed_from": resume}
    trainer.save_model(training_args.output_dir)  # the best model when load_best_model_at_end
    wall = time.perf_counter() - started

    train_losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    eval_losses = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    summary = {
        "mode": model_args.mode,
        "model": model_args.model_name_or_path,
        "resumed_from": resume,
        "global_step": trainer.state.global_step,
        "num_processes": trainer.accelerator.num_processes,
        "train_loss_first": train_losses[0] if train_losses else None,
        "train_loss_last": train_losses[-1] if train_losses else None,
        "train_losses": train_losses,
        "eval_losses": eval_losses,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "best_metric": {"name": training_args.metric_for_best_model, "value": trainer.state.best_metric}
        if training_args.load_best_model_at_end else None,
        "eval_think_coverage": trainer.think_coverage.history if trainer.think_coverage is not None else None,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "wall_s": round(wall, 2),
        "train_tokens": trainer._total_train_tokens,
        "tokens_per_s": round(trainer._total_train_tokens / wall, 1) if wall > 0 else None,
        "peak_memory_gib": peak_memory_gib(),
        "peak_rss_gib": peak_rss_gib(),
        **meter.summary(),  # tokens_per_s_after_warmup and the window it was measured over
    }
    if trainer.accelerator.is_main_process:
        trainer.create_model_card(
            model_name=Path(training_args.output_dir).name,
            dataset_name=str(Path(script_args.data_dir)),
            tags=["medqa", "sft", model_args.mode, "qwen3", "medical"],
        )
        with open(Path(training_args.output_dir) / "sft_summary.json", "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
    trainer.accelerator.wait_for_everyone()
    trainer.end()
    return summary
