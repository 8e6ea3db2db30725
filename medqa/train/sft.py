"""Supervised fine-tuning (LoRA, QLoRA or full) of a chat model (Qwen3, ChatML: medqa/models/chat.py) on the `<think>` data
from `make data`.

One recipe YAML (`recipes/sft/…`) fills three dataclasses that extend TRL's; command-line flags override it:

    accelerate launch --config_file accelerate_configs/single_gpu.yaml scripts/sft.py \\
        --config recipes/sft/lora.yaml [--max_steps 3 …]

The project's defaults live in the dataclasses below (assistant-only loss, on TRL's generation-marked training
template for Qwen3 and on medqa's for ChatML models; best-fit-decreasing packing, which is padding-free;
TensorBoard; eval on dev; keep best + last checkpoint); recipes set what differs per mode and hardware profile. A recipe may name `base:` recipes (a path or a list, relative to itself) that it extends.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import ScriptArguments, SFTConfig

from medqa.models.loading import ModelArguments, disable_bnb_cpu_repack
from medqa.runs.checkpoints import MODEL_INPUT, RunFolderArguments, checkpoint_step, shaping_settings
from medqa.runs.preemption import StopFileCallback, stop_file_from_env
from medqa.runs.recipes import apply_hardware_precision, load_recipe, parse_recipe_args  # noqa: F401  (load_recipe re-exported)

logger = logging.getLogger(__name__)



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


# The SFT stage's model arguments are the project's one `ModelArguments` (medqa/models/loading.py).
SFTModelArguments = ModelArguments


@dataclass
class MedqaSFTConfig(SFTConfig, RunFolderArguments):
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

    from medqa.runs.io import InputError, iter_jsonl

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


def load_model(model_args: SFTModelArguments, training_args: MedqaSFTConfig):
    """The base model to fine-tune (4-bit for qlora), in the training precision when dtype is auto."""
    from medqa.models import loading

    return loading.load_model(
        model_args,
        dtype=loading.torch_dtype(model_args.dtype, bf16=bool(training_args.bf16), fp16=bool(training_args.fp16)),
        device=training_args.device,
        trust_remote_code=training_args.trust_remote_code,
    )


def run_settings(script_args: SFTScriptArguments, training_args: MedqaSFTConfig,
                 model_args: SFTModelArguments) -> dict[str, Any]:
    """The settings a resumed run must share with its checkpoint: every shaping option (medqa/runs/checkpoints.py, SHAPING)."""
    return shaping_settings(script_args, training_args, model_args)


def run_data(script_args: SFTScriptArguments, model_args: SFTModelArguments) -> dict[str, Path | str | None]:
    """The files whose content a resumed run must share with its checkpoint: the train and eval splits and the
    model it starts from."""
    data_dir = Path(script_args.data_dir)
    return {"train_file": data_dir / script_args.train_file,
            "eval_file": data_dir / script_args.eval_file if script_args.eval_file is not None else None,
            MODEL_INPUT: model_args.model_name_or_path}


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
    if hasattr(weight, "ds_numel"):  # a ZeRO-3 shard: the hook would see a slice of the rows, not the rows by id
        raise ValueError("lora_trainable_tokens: not supported under ZeRO-3 (the embedding is sharded across ranks); "
                         "train with ZeRO-2 or DDP (ACCEL=zero2 | ddp)")
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
                 batch_size: int = 32):
        from medqa.models.generation import GenerationSettings

        self.prompts, self.tokenizer, self.batch_size = prompts, tokenizer, batch_size
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
        self.history: list[dict] = []

    def coverage(self, model) -> float:
        import torch

        from medqa.eval.items import think_flags
        from medqa.models.generation import chat_input_ids, generate_batch

        texts = [chat_input_ids(self.tokenizer, m, self.settings.enable_thinking) for m in self.prompts]
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
    from transformers import set_seed
    from trl import SFTTrainer

    from medqa.models.chat import training_template
    from medqa.models.loading import load_tokenizer

    set_seed(training_args.seed)
    data_dir = Path(script_args.data_dir)
    train_dataset = load_split(data_dir / script_args.train_file, script_args.max_train_samples)
    eval_dataset = None
    if script_args.eval_file is not None:
        eval_dataset = load_split(data_dir / script_args.eval_file, script_args.max_eval_samples)
    elif training_args.eval_strategy != "no" or training_args.load_best_model_at_end:
        raise ValueError("eval_file is none: also set eval_strategy no and load_best_model_at_end false")

    tokenizer = load_tokenizer(model_args.model_name_or_path, revision=model_args.model_revision, pad_with_eos=False)
    template = training_template(tokenizer)  # a ChatML template without generation markers: medqa's (medqa/models/chat.py)
    if template is not None:
        tokenizer.chat_template = template
    model = load_model(model_args, training_args)
    trainer = SFTTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=model_args.lora_config(),
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
    """Train, save the best model (adapter or full weights) + tokenizer + model card; returns a summary dict. OUT is
    locked and claimed first (medqa/runs/checkpoints.py): never the base model or the data, never another run."""
    from medqa.runs.checkpoints import TrainerRun

    run = TrainerRun("sft", training_args, run_settings(script_args, training_args, model_args),
                     inputs=[model_args.model_name_or_path, script_args.data_dir], data=run_data(script_args, model_args))
    resume = run.start()
    if run.finished is not None:  # OUT holds this run, finished: nothing to train (said in one line)
        return run.finished_summary()
    try:
        return _train(run, resume, script_args, training_args, model_args)
    finally:
        run.release()


def _train(run, resume: str | None, script_args: SFTScriptArguments, training_args: MedqaSFTConfig,
           model_args: SFTModelArguments) -> dict:
    trainer = build_trainer(script_args, training_args, model_args)
    trainer.add_callback(run.callback())
    if trainer.accelerator.is_main_process and model_args.use_peft:
        trainer.model.print_trainable_parameters()

    stop_file = stop_file_from_env()
    stopper = StopFileCallback(stop_file) if stop_file else None
    if stopper:
        trainer.add_callback(stopper)

    if resume:
        logger.warning("resuming from %s", resume)
    from medqa.runs.throughput import ThroughputMeter, peak_memory_gib, peak_rss_gib

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
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    best = trainer.state.best_model_checkpoint
    # the step of the model saved in OUT: the best checkpoint's under load_best_model_at_end, else the last
    kept_step = checkpoint_step(best) if best and training_args.load_best_model_at_end else trainer.state.global_step
    summary = {
        "mode": model_args.mode,
        "model": model_args.model_name_or_path,
        "resumed_from": resume,
        "global_step": trainer.state.global_step,
        "num_processes": trainer.accelerator.num_processes,
        "train_loss_first": train_losses[0] if train_losses else None,
        "train_loss_last": train_losses[-1] if train_losses else None,
        "train_losses": train_losses,
        "eval_losses": [h["eval_loss"] for h in evals],
        "eval_loss_steps": [h["step"] for h in evals],
        "best_checkpoint": best,
        # the eval loss of the saved model (None when that step was not evaluated)
        "eval_loss_kept": next((h["eval_loss"] for h in evals if h["step"] == kept_step), None),
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
            tags=["medqa", "sft", model_args.mode, trainer.model.config.model_type, "medical"],
        )
        with open(Path(training_args.output_dir) / "sft_summary.json", "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=2)
    run.finish(trainer.state.global_step)
    trainer.accelerator.wait_for_everyone()
    trainer.end()
    return summary
