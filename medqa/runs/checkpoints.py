"""Run folders of the training stages (SFT, GRPO, PPO): claiming the folder, finding the checkpoint to resume,
refusing another run's checkpoint, moving an old run aside, and trimming the logs to the resumed step.

A run folder is claimed by its manifest (`medqa.runs.io.MANIFEST`, `kind` = the stage). Every checkpoint holds
`RUN_RECORD`: the stage, the run key (a hash of the settings that shape the run — SHAPING below says which
those are — and of the content of the data files it reads) with those settings and data hashes, and the number of
processes. A checkpoint is resumed only when all of them match this run; a mismatch is a one-line `ResumeError`
naming what differs. Without a checkpoint to resume, a folder holding an earlier run is moved aside
(`OUT.prev-<time>`), never mixed with the new one. A finished run leaves `RUN_RECORD` in OUT itself, with the step
it ended at: running it again with the same key and length is a no-op that says so (`RunLength`).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medqa.runs.io import (
    MANIFEST,
    OutputError,
    atomic_write,
    check_output_dir,
    content_fingerprint,
    iter_jsonl,
    manifest_files,
    output_path,
    own_entries,
    read_manifest,
    write_jsonl,
    write_manifest,
)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
RUN_RECORD = "medqa_run.json"
LOG_FILES = ("metrics.jsonl", "samples.jsonl")
EVENTS_DIR = "runs"
# What a stage writes into its folder (the manifest lists these patterns from the start, so a run cut short, even
# while saving its final model, is still recognised as the stage's own; the finished run lists its actual entries).
# TRL rewrites the model card README.md with every checkpoint.
RUN_ENTRIES = ("checkpoint-*", "checkpoint-*.tmp", ".*.tmp", *LOG_FILES, EVENTS_DIR, "README.md",
               "adapter_*", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "config.json",
               "generation_config.json", "tokenizer*", "special_tokens_map.json", "added_tokens.json", "vocab.json",
               "merges.txt", "chat_template.jinja", "training_args.bin", "value_head.pt", "ref", "*_summary.json",
               "reward_kl.png", "rollout_decoding.json", "reward.json", "rollout-adapter", RUN_RECORD)


@dataclass
class RunFolderArguments:
    """The run-folder options of every training stage (SFT, GRPO, PPO), a base of each stage's config dataclass."""

    auto_resume: bool = field(default=True, metadata={
        "help": "resume from the newest complete checkpoint of this run in output_dir, if any (false: move an "
                "earlier run aside)"})
    overwrite: bool = field(default=False, metadata={
        "help": "output_dir holds files this stage did not write: move them aside and start fresh"})


# ---------------------------------------------------------------- which options shape a run

# Which option of a training stage shapes its run (SHAPING: part of the run key) and which is SAFE to change on
# resume. A resumed run must be the run its checkpoint was written by. Every option that changes what is trained —
# the model and its adapter, the data and its order, the batch, the optimiser and its schedule, the loss,
# precision, and for RL the sampling and the reward — is part of the run key (`RunIdentity`): a checkpoint written
# under another value is refused. What an evaluation measures shapes too: the best metric carried over in the
# checkpoint is compared with the values measured after the resume to pick the model kept (whether the final model
# is that best checkpoint or the last one is an output option, SAFE). Options that only say where and how often to
# log, save and evaluate, where the outputs go, how the run is resumed, or how fast it runs (memory and speed
# trade-offs that compute the same numbers) are SAFE.
#
# How long a run trains (`max_steps`, `num_train_epochs`, PPO's `total_steps`) is SAFE: a finished run may be
# extended (it resumes from its last checkpoint and trains on), and a run that has reached its length is a no-op
# (`RunLength`). Under a decaying learning-rate schedule (cosine, linear) the steps after such a resume follow the
# schedule of the new length; the steps already trained keep the old one.
#
# The data files a stage reads are keyed by their content (`RunIdentity(data=…)`, a hash of each file), so the
# options naming them are SAFE: moving the data keeps the run, changing a row refuses it.
#
# Every field of every option dataclass of SFT, GRPO and PPO (TRL's and transformers' included) is in exactly one of
# SHAPING and SAFE; tests/cli/test_resume_r3.py walks them all, so a field added later — here or by a TRL or
# transformers upgrade — fails that test until it is classified. At run time an unclassified field counts as shaping
# (a refused resume is loud, a wrong one is silent). A name means the same in every stage that has it.

SAFE = frozenset({
    # the run folder and how the run is resumed
    "output_dir", "overwrite", "auto_resume", "resume_from_checkpoint", "ignore_data_skip",
    "restore_callback_states_from_checkpoint",
    # how long it trains (see above)
    "max_steps", "num_train_epochs", "total_steps",
    # logs, progress, reports
    "logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node", "logging_nan_inf_filter",
    "include_num_input_tokens_seen", "log_level", "log_level_replica", "disable_tqdm", "report_to", "run_name",
    "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id", "skip_memory_metrics", "debug",
    "samples_per_log", "sample_steps", "progress_bar", "log_completions", "log_multimodal",
    "num_completions_to_print", "log_unique_prompts", "log_completions_hub_repo",
    # checkpoints and their cadence, the hub (hub_token is a secret: never written to a run record)
    "save_strategy", "save_steps", "save_on_each_node", "save_total_limit", "save_only_model", "enable_jit_checkpoint",
    "push_to_hub", "hub_token", "hub_private_repo", "hub_model_id", "hub_strategy", "hub_always_push", "hub_revision",
    # when and how fast evaluations run (what they measure shapes: eval data, max_eval_samples, the metric), and
    # whether the final model is the best evaluated checkpoint or the last
    "load_best_model_at_end", "eval_strategy", "eval_steps", "eval_delay", "per_device_eval_batch_size",
    "prediction_loss_only", "eval_on_start",
    "eval_do_concat_batches", "eval_use_gather_object", "eval_accumulation_steps", "include_for_metrics",
    "batch_eval_metrics", "bf16_full_eval", "fp16_full_eval", "eval_packing", "num_generations_eval",
    # memory and speed: the same numbers, computed another way
    "gradient_checkpointing", "gradient_checkpointing_kwargs", "activation_checkpointing",
    "activation_checkpointing_kwargs", "activation_offloading", "torch_compile", "torch_compile_backend",
    "torch_compile_mode", "use_liger_kernel", "liger_kernel_config", "use_cache", "torch_empty_cache_steps",
    "dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor",
    "dataloader_multiprocessing_context", "dataloader_in_order", "dataset_num_proc", "ddp_find_unused_parameters",
    "ddp_bucket_cap_mb", "ddp_broadcast_buffers", "ddp_static_graph", "ddp_backend", "ddp_timeout",
    "full_determinism", "use_cpu", "local_rank", "cpu_threads", "forward_batch_size", "ds3_gather_for_generation",
    "cache_implementation", "use_transformers_continuous_batching", "transformers_continuous_batching_config",
    "use_transformers_paged", "vllm_mode", "vllm_enable_sleep_mode", "vllm_server_base_url", "vllm_server_host",
    "vllm_server_port", "vllm_server_timeout", "vllm_group_port", "vllm_gpu_memory_utilization",
    "vllm_tensor_parallel_size", "trust_remote_code", "do_train", "do_eval", "do_predict",
    # data files: keyed by their content (RunIdentity data), not their path
    "data_dir", "train_file", "eval_file", "prompts_file",
    # TRL's hub-dataset script options: the stages read their own files, never these
    "dataset_name", "dataset_config", "dataset_train_split", "dataset_test_split", "dataset_streaming",
    "ignore_bias_buffers",
    # where the teacher is and how it is called (which judge it is shapes: teacher_model, teacher_offline); the
    # base URL may carry credentials and is never written to a run record
    "teacher_base_url", "teacher_cache", "teacher_concurrency", "teacher_timeout", "teacher_rpm",
    "teacher_max_retries", "teacher_fail_threshold", "teacher_fail_patience",
})

SHAPING = frozenset({
    # the model, the adapter, precision
    "model_name_or_path", "model_revision", "base_model", "mode", "dtype", "attn_implementation", "use_peft",
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_parameters", "lora_modules_to_save",
    "lora_task_type", "use_rslora", "use_dora", "lora_trainable_tokens", "load_in_8bit", "load_in_4bit",
    "bnb_4bit_quant_type", "use_bnb_nested_quant", "bnb_4bit_quant_storage", "model_init_kwargs", "reference",
    "bf16", "fp16", "tf32", "cast_lm_head_to_fp32", "disable_dropout", "neftune_noise_alpha",
    # the data: which rows, in which order, how they become tokens
    "max_train_samples", "max_prompts", "seed", "data_seed", "dataloader_drop_last", "train_sampling_strategy",
    "length_column_name", "remove_unused_columns", "label_names", "shuffle_dataset", "chat_template_path",
    "dataset_text_field", "dataset_kwargs", "eos_token", "pad_token", "max_length", "truncation_mode", "packing",
    "packing_strategy", "padding_free", "pad_to_multiple_of", "max_prompt_length",
    # the batch and the parallel layout
    "per_device_train_batch_size", "gradient_accumulation_steps", "auto_find_batch_size",
    "average_tokens_across_devices", "accelerator_config", "parallelism_config", "fsdp", "fsdp_config", "deepspeed",
    "batch_size", "samples_per_prompt", "mini_batch_size",
    # the optimiser and the schedule
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "optim", "optim_args",
    "optim_target_modules", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon", "adam_eps", "max_grad_norm",
    # the loss
    "label_smoothing_factor", "completion_only_loss", "assistant_only_loss", "loss_type", "router_aux_loss_coef",
    # what evaluations measure (the kept checkpoint is picked by it)
    "max_eval_samples", "think_eval_items", "think_eval_max_new_tokens", "think_eval_repetition_penalty",
    "metric_for_best_model", "greater_is_better",
    # RL: sampling the rollouts
    "num_generations", "max_completion_length", "generation_batch_size", "steps_per_generation", "temperature",
    "top_p", "top_k", "min_p", "generation_kwargs", "chat_template_kwargs", "repetition_penalty", "max_new_tokens",
    "enable_thinking", "use_vllm", "rollout_engine", "vllm_model_impl", "vllm_structured_outputs_regex", "vllm_max_model_length",
    "max_tool_calling_iterations",
    # RL: the objective (GRPO)
    "beta", "num_iterations", "epsilon", "delta", "epsilon_high", "sapo_temperature_neg", "sapo_temperature_pos",
    "vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg", "importance_sampling_level",
    "multi_objective_aggregation", "scale_rewards", "mask_truncated_completions", "sync_ref_model",
    "ref_model_mixup_alpha", "ref_model_sync_steps", "top_entropy_quantile", "entropy_coef", "use_adaptive_entropy",
    "entropy_coef_min", "entropy_coef_max", "entropy_coef_delta", "entropy_target",
    "vllm_importance_sampling_correction", "vllm_importance_sampling_mode", "vllm_importance_sampling_clip_max",
    "vllm_importance_sampling_clip_min", "vllm_importance_sampling_cap", "off_policy_mask_threshold",
    "use_bias_correction_kl",
    # RL: the objective (PPO)
    "ppo_epochs", "gamma", "lam", "cliprange", "cliprange_value", "vf_coef", "ent_coef", "target_kl",
    "whiten_advantages", "kl_estimator", "init_kl_coef", "adaptive_kl", "kl_target", "kl_horizon",
    # RL: the reward
    "reward", "reward_weights", "w_rules", "w_teacher", "score_clip", "score_norm", "score_baseline",
    "missing_eos_penalty", "missing_think_penalty", "teacher_model", "teacher_offline",
})


def shaping_settings(*configs: Any) -> dict[str, Any]:
    """The run-key settings of a stage: every field of its option dataclasses that is not SAFE (an unclassified
    field counts as shaping)."""
    settings: dict[str, Any] = {}
    for config in configs:
        if config is None:
            continue
        for f in dataclasses.fields(config):
            if f.name not in SAFE:
                settings[f.name] = getattr(config, f.name)
    return settings


class ResumeError(ValueError):
    """A checkpoint that this run must not resume (one line: what differs and what to do)."""


@dataclass(frozen=True)
class RunIdentity:
    """What a checkpoint must match to be resumed: the stage, the settings that shape the run, the content of the
    data files it reads (`data`: name -> path, hashed here; None or a missing file hashes to None), the world size."""

    stage: str
    settings: Mapping[str, Any]
    world_size: int
    data: Mapping[str, str | os.PathLike | None] = field(default_factory=dict)
    key: str = field(init=False)

    def __post_init__(self):
        canon = {k: _canonical(v) for k, v in sorted(self.settings.items())}
        object.__setattr__(self, "settings", canon)
        object.__setattr__(self, "data", data_fingerprints(self.data))
        digest = hashlib.sha256(json.dumps([self.stage, canon, self.data], sort_keys=True).encode("utf-8")).hexdigest()
        object.__setattr__(self, "key", digest[:16])

    def record(self) -> dict[str, Any]:
        return {"stage": self.stage, "key": self.key, "world_size": self.world_size, "data": dict(self.data),
                "settings": dict(self.settings)}

    def write(self, checkpoint: str | os.PathLike) -> None:
        with atomic_write(Path(checkpoint) / RUN_RECORD) as fh:
            json.dump(self.record(), fh, indent=1)

    def mismatch(self, checkpoint: Path) -> str | None:
        """Why `checkpoint` is not a checkpoint of this run, or None."""
        try:
            rec = json.loads((checkpoint / RUN_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return f"it has no {RUN_RECORD} (not a checkpoint of a medqa {self.stage} run)"
        if not isinstance(rec, dict):
            return f"its {RUN_RECORD} is not a run record"
        if rec.get("stage") != self.stage:
            return f"it is a {rec.get('stage')} checkpoint, this is a {self.stage} run"
        if rec.get("world_size") != self.world_size:
            return f"it was written by {rec.get('world_size')} processes, this run has {self.world_size}"
        if rec.get("key") == self.key:
            return None
        old_data = rec.get("data")
        if not isinstance(old_data, dict):
            return "it records no hash of its data (written before medqa keyed runs by their data's content)"
        changed = [name for name in sorted(set(old_data) | set(self.data)) if old_data.get(name) != self.data.get(name)]
        if MODEL_INPUT in changed:
            return MODEL_CHANGED + f" ({self.settings.get('model_name_or_path') or MODEL_INPUT}: other content)"
        if changed:
            return DATA_CHANGED + " (" + ", ".join(f"{name}: other content" for name in changed) + ")"
        old = rec.get("settings") or {}
        diff = [f"{k}={old.get(k)!r} there, {self.settings.get(k)!r} here"
                for k in sorted(set(old) | set(self.settings)) if old.get(k) != self.settings.get(k)]
        return "its settings differ (" + ("; ".join(diff[:4]) or "run key") + ")"


DATA_CHANGED = "the data changed since it was written: a resumed run would mix rows of two versions of the data"
# The model a run starts from (the base of SFT, the SFT output of PPO and GRPO) is keyed by its content too, under
# this name in `RunIdentity.data`: a model retrained into the same folder is another starting point.
MODEL_INPUT = "model"
MODEL_CHANGED = ("the model it starts from changed since it was written (retrained into the same folder?): a resumed "
                 "run would continue from another starting point")


def data_fingerprints(paths: Mapping[str, str | os.PathLike | None]) -> dict[str, str | None]:
    """name -> a hash of the data file's name and content (`medqa.runs.io.content_fingerprint`; None for no file)."""
    return {name: content_fingerprint(path) if path else None for name, path in sorted(paths.items())}


def _canonical(value: Any) -> Any:
    """Settings as JSON values: existing paths absolute (`out` and `./out` are the same run), enums by value,
    mappings and option objects as sorted dicts, integral floats as ints (a recipe's `3` is the flag's `3.0`)."""
    if isinstance(value, os.PathLike) or (isinstance(value, str) and value and os.path.exists(value)):
        return str(Path(value).resolve())
    if isinstance(value, enum.Enum):
        return _canonical(value.value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _canonical({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_canonical(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclass(frozen=True)
class RunLength:
    """How long a run trains: its length settings (`max_steps`, `num_train_epochs`; PPO's `total_steps`) and the
    step it ends at when they fix it (`steps`). A finished run whose key matches has nothing left to do when its
    length settings are these, or it ended at or past `steps`; a longer run resumes from its last checkpoint."""

    settings: Mapping[str, Any]
    steps: int | None = None

    def reached(self, finished: Any) -> bool:
        if not isinstance(finished, dict) or not isinstance(finished.get("step"), int):
            return False
        if self.steps is not None and finished["step"] >= self.steps:
            return True
        return finished.get("length") == _canonical(dict(self.settings))

    @classmethod
    def of_trainer(cls, training_args: Any) -> RunLength:
        """A Hugging Face Trainer run's length: max_steps when > 0, else num_train_epochs."""
        max_steps = int(training_args.max_steps)
        return cls({"max_steps": max_steps, "num_train_epochs": training_args.num_train_epochs},
                   max_steps if max_steps > 0 else None)


# ---------------------------------------------------------------- finding checkpoints


def checkpoints(output_dir: str | os.PathLike, complete_marker: str) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint-N in `output_dir`, oldest first: `complete_marker` (written
    last by the trainer) parses and the run record is there. A save cut by a kill is skipped."""
    out = Path(output_dir)
    found = []
    for child in out.iterdir() if out.is_dir() else ():
        m = CHECKPOINT_RE.match(child.name)
        if not (m and child.is_dir()):
            continue
        try:
            json.loads((child / complete_marker).read_text(encoding="utf-8"))
            json.loads((child / RUN_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append((int(m.group(1)), child))
    return sorted(found)


def newest_checkpoint(output_dir: str | os.PathLike, complete_marker: str) -> Path | None:
    found = checkpoints(output_dir, complete_marker)
    return found[-1][1] if found else None


def checkpoint_step(checkpoint: str | os.PathLike) -> int:
    m = CHECKPOINT_RE.match(Path(checkpoint).name)
    if not m:
        raise ResumeError(f"{checkpoint}: not a checkpoint-N folder")
    return int(m.group(1))


# ---------------------------------------------------------------- the run folder


@dataclass
class RunDir:
    """The decision taken for a run folder: the checkpoint to resume (or None: a fresh run)."""

    out: Path
    resume_from: Path | None
    moved_aside: Path | None = None
    finished: int | None = None  # the step a finished run ended at: nothing to train

    @property
    def step(self) -> int:
        return checkpoint_step(self.resume_from) if self.resume_from else 0


def move_aside(out: Path) -> Path:
    """Rename `out` to `out.prev-<time>` (a free name) and return it; a link is followed (the folder it names is
    moved, the link stays)."""
    out = output_path(out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = out.with_name(f"{out.name}.prev-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = out.with_name(f"{out.name}.prev-{stamp}-{n}")
    os.replace(out, aside)
    return aside


def prepare_run_dir(out: str | os.PathLike, identity: RunIdentity, *, complete_marker: str,
                    inputs: Iterable[str | os.PathLike] = (), resume: str = "auto",
                    requested: str | os.PathLike | None = None, overwrite: bool = False,
                    log: Callable[[str], None] | None = None, length: RunLength | None = None) -> RunDir:
    """Claim the folder `out` for a run of `identity.stage` and decide where it starts (rank 0 only).

    `resume`: "auto" resumes the newest complete checkpoint when there is one, "require" fails without one, "no"
    starts fresh; `requested` is an explicit checkpoint folder. A folder holding anything but this stage's own
    outputs is refused (OutputError) unless `overwrite`; never an input (the model trained from, the data). A
    folder holding an earlier run that is not resumed is moved aside and reported through `log`. A folder holding
    this run finished (same key, `length` reached) is left as it is: `RunDir.finished` is its last step, and `log`
    says so in one line."""
    out = Path(out)
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    inputs = [i for i in inputs if i]
    check_output_dir(out, inputs, overwrite=True)  # never a file, an input, the project, the current or home folder
    if requested is not None:
        req = Path(requested)
        if not (req.is_dir() and (req / complete_marker).is_file()):
            raise ResumeError(f"resume_from_checkpoint={requested}: no complete checkpoint there")
        _check_identity(identity, req)
    occupied = out.is_dir() and any(p.name != MANIFEST for p in out.iterdir())
    aside = None
    if occupied:
        try:
            check_output_dir(out, inputs, kind=identity.stage)
        except OutputError:
            if not overwrite:
                raise
            aside = move_aside(out)
            say(f"{identity.stage}: --overwrite: moved the earlier contents of {out} to {aside}")
            occupied = False
    looking = occupied and resume != "no" and requested is None
    done = finished_step(out, identity, length) if looking and length is not None else None
    if done is not None:
        say(f"{identity.stage}: {out} already holds the finished run (step {done}); RESUME=0 "
            "(--auto_resume false) to train again")
        return RunDir(out, None, finished=done)
    found = newest_checkpoint(out, complete_marker) if looking else None
    if found is not None:
        _check_identity(identity, found)
    if resume == "require" and requested is None and found is None:
        raise ResumeError(f"asked to resume, but {out} has no complete {identity.stage} checkpoint")
    if occupied and found is None and requested is None:
        aside = move_aside(out)
        say(f"{identity.stage}: a fresh run: moved the earlier run in {out} to {aside}")
    output_path(out).mkdir(parents=True, exist_ok=True)
    (out / RUN_RECORD).unlink(missing_ok=True)  # trained on: not finished until this run finishes
    entries = set(RUN_ENTRIES) | (own_entries(out) - {MANIFEST})
    write_manifest(out, identity.stage, entries, manifest_files(out))
    return RunDir(out, Path(requested) if requested is not None else found, aside)


def finished_step(out: str | os.PathLike, identity: RunIdentity, length: RunLength) -> int | None:
    """The step the run finished in `out` ended at, when it is this run (same stage and key) and it reached
    `length`; else None."""
    try:
        rec = json.loads((Path(out) / RUN_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(rec, dict) and rec.get("stage") == identity.stage and rec.get("key") == identity.key):
        return None
    return rec["finished"]["step"] if length.reached(rec.get("finished")) else None


def _check_identity(identity: RunIdentity, checkpoint: Path) -> None:
    why = identity.mismatch(checkpoint)
    if why is None:
        return
    if why.startswith((DATA_CHANGED, MODEL_CHANGED)):
        what = "data" if why.startswith(DATA_CHANGED) else "model"
        raise ResumeError(f"{checkpoint}: not resuming it: {why}; start fresh from this {what} (RESUME=0 / "
                          f"--auto_resume false moves the earlier run aside), or restore the {what} it was trained on")
    raise ResumeError(f"{checkpoint}: not resuming it: {why}; resume with the same settings, or start fresh "
                      "(RESUME=0 / --auto_resume false moves the earlier run aside)")


def finish_run_dir(out: str | os.PathLike, stage: str, identity: RunIdentity | None = None,
                   step: int | None = None, length: RunLength | None = None) -> None:
    """Record everything the finished run left in `out` in its manifest (the final model files included) and,
    with `identity`, that this run finished at `step` (so running it again is a no-op)."""
    out = Path(out)
    if identity is not None and step is not None:
        finished = {"step": int(step), "length": _canonical(dict(length.settings)) if length is not None else None}
        with atomic_write(out / RUN_RECORD) as fh:
            json.dump({**identity.record(), "finished": finished}, fh, indent=1)
    names = {p.name for p in out.iterdir()} - {MANIFEST}
    write_manifest(out, stage, set(RUN_ENTRIES) | names, manifest_files(out))


# ---------------------------------------------------------------- logs


def trim_logs(output_dir: str | os.PathLike, step: int, names: Iterable[str] = LOG_FILES,
              events_dir: str = EVENTS_DIR) -> None:
    """Drop what a run logged after `step` (a resumed run logs those steps again): rows of the JSONL logs whose
    `step` is larger (rows without one are kept), and TensorBoard events after it, in every event file."""
    out = Path(output_dir)
    for name in names:
        path = out / name
        if path.is_file():
            write_jsonl(path, [row for _, row in iter_jsonl(path, tolerant=True)
                               if not isinstance(row.get("step"), (int, float)) or row["step"] <= step])
    events = out / events_dir
    if events.is_dir():
        for path in sorted(events.rglob("events.out.tfevents.*")):
            _trim_event_file(path, step)


def _trim_event_file(path: Path, step: int) -> None:
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    kept, dropped = [], 0
    for raw in RawEventFileLoader(str(path)).Load():
        event = Event.FromString(raw)
        if event.step > step:
            dropped += 1
        else:
            kept.append(raw)
    if not dropped:
        return
    with atomic_write(path, "wb") as fh:
        writer = RecordWriter(fh)
        for raw in kept:
            writer.write(raw)
        writer.flush()


# ---------------------------------------------------------------- Hugging Face Trainer runs (SFT, GRPO)

HF_STATE = "trainer_state.json"  # written last into a Trainer checkpoint


def resume_mode(resume_from_checkpoint: str | None, auto_resume: bool) -> tuple[str, str | None]:
    """(mode, explicit checkpoint) from the Trainer's `resume_from_checkpoint` (true: required, auto/last: if
    any, a path: that one) and `auto_resume`."""
    requested = resume_from_checkpoint
    if requested and requested.lower() in {"true", "auto", "last"}:
        return ("require" if requested.lower() == "true" else "auto"), None
    if requested:
        return "auto", requested
    return ("auto" if auto_resume else "no"), None


class TrainerRun:
    """A Trainer run's hold on its output folder: rank 0 takes the lock and claims the folder; every rank learns
    the checkpoint to resume, or that the run is already finished (`finished`: its last step); each checkpoint the
    Trainer saves gets the run record (`callback`), and so does OUT when the run finishes (`finish`)."""

    def __init__(self, stage: str, training_args: Any, settings: Mapping[str, Any],
                 inputs: Iterable[str | os.PathLike | None] = (),
                 data: Mapping[str, str | os.PathLike | None] | None = None):
        self.stage, self.args = stage, training_args
        self.out = Path(training_args.output_dir)
        self.identity = RunIdentity(stage, settings, training_args.world_size, data or {})
        self.length = RunLength.of_trainer(training_args)
        self.inputs = [i for i in inputs if i]
        self.lock = None
        self.finished: int | None = None

    def start(self) -> str | None:
        """The checkpoint to resume (str) or None; raises OutputError / ResumeError (one line) on every rank.
        When OUT already holds this run finished, `finished` is its last step (and the lock is released)."""
        from medqa.runs.io import OutputLock
        from medqa.runs.preemption import rank0_decides

        mode, requested = resume_mode(self.args.resume_from_checkpoint, getattr(self.args, "auto_resume", True))

        def decide() -> tuple[str | None, int | None]:
            self.lock = OutputLock(self.out, self.stage).acquire()
            try:
                run = prepare_run_dir(self.out, self.identity, complete_marker=HF_STATE, inputs=self.inputs,
                                      resume=mode, requested=requested,
                                      overwrite=bool(getattr(self.args, "overwrite", False)), length=self.length)
                if run.finished is None:
                    trim_logs(self.out, run.step)
            except BaseException:
                self.release()
                raise
            return (str(run.resume_from) if run.resume_from else None), run.finished

        resume, self.finished = rank0_decides(decide, self.args.process_index == 0)
        if self.finished is not None:
            self.release()
        return resume

    def finished_summary(self) -> dict[str, Any]:
        """What a stage returns for a finished run it did not train again: its summary file, if readable."""
        try:
            summary = json.loads((self.out / f"{self.stage}_summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = {}
        return {**(summary if isinstance(summary, dict) else {}), "already_finished": self.finished}

    def callback(self):
        """A TrainerCallback that writes the run record into every checkpoint the Trainer saves (rank 0)."""
        from transformers import TrainerCallback

        identity, out = self.identity, self.out

        class RunRecord(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                folder = out / f"checkpoint-{state.global_step}"
                if state.is_world_process_zero and folder.is_dir():
                    identity.write(folder)

        return RunRecord()

    def finish(self, step: int) -> None:
        """The run trained to `step` and wrote its final model: record it in OUT (rank 0)."""
        if self.args.process_index == 0:
            finish_run_dir(self.out, self.stage, self.identity, step, self.length)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


TRAINING_STAGES = ("sft", "grpo", "ppo")


def discard_run(out: str | os.PathLike) -> None:
    """Delete the run folder `out` when its manifest says a training stage wrote it (a benchmark's scratch run,
    rerun from scratch each time); anything else is left for the run to refuse."""
    import shutil

    if Path(out).is_dir() and read_manifest(out).get("kind") in TRAINING_STAGES:
        shutil.rmtree(out)
