"""GRPO (TRL's `GRPOTrainer`) from an SFT output on the project's reward: `0.6·R_rules + 0.4·R_teacher`.

One recipe YAML (`recipes/grpo/…`) fills four dataclasses; command-line flags override it:

    accelerate launch --config_file accelerate_configs/cpu.yaml scripts/grpo.py \\
        --config recipes/grpo/cpu/lora.yaml --model_name_or_path outputs/cpu/sft-lora [--teacher_offline true] \\
        [--max_steps 3 …]

The teacher flags are `medqa.teacher.setup.TeacherArgs` (`teacher_base_url`, `teacher_model`, `teacher_offline`, …).

The policy starts from an SFT output (`model_name_or_path`):

* a LoRA/QLoRA adapter folder: the adapter keeps training on its base; TRL copies it into a frozen "ref" adapter,
  so the KL reference is the SFT policy itself (disabling the adapter would make it the untuned base);
* a full or merged model folder: `mode: lora|qlora` adds a fresh LoRA (reference = the adapter disabled = the SFT
  model), `mode: full` trains every weight against a frozen copy.

The reward is one TRL reward function, `CombinedReward` (logged as `rewards/total`): the rules
(`medqa.rewards.rule_reward`, with each row's meta) and the teacher mixed by `medqa.rewards.total_rewards`
(`w_rules`, `w_teacher`), the same function PPO uses, so a failed judgement takes the mean teacher term of the
step's judged completions (over all processes) and stays on the scale of its group. The teacher is asynchronous
(TRL awaits it on its event loop) and goes through `medqa.teacher`'s client, cache and PII scrubbing — under
several processes through `DistributedTeacher`, so requests are de-duplicated across ranks and the *global*
number in flight stays within the concurrency cap. The parts are logged as `rewards/rules/mean`,
`rewards/teacher/mean` and `teacher/failed_share`; a teacher that keeps failing stops the run
(`medqa.rewards.TeacherStopRule`: `teacher_fail_threshold`, `teacher_fail_patience`; `scripts/grpo.py` exits 3).

Outputs in `output_dir`: the policy (adapter + tokenizer, or the full model), TensorBoard logs, `metrics.jsonl`
(one row per logged step: reward, reward parts, KL, failed share, step time), `samples.jsonl` (a few completions
per logged step with their rewards), checkpoints (resumed automatically) and `grpo_summary.json`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import GRPOConfig, GRPOTrainer, ScriptArguments

from medqa.data.rl_prompts import PromptArguments
from medqa.models.loading import ModelArguments, disable_bnb_cpu_repack
from medqa.rewards import RewardArguments, TeacherStopRule
from medqa.runs.checkpoints import MODEL_INPUT, RunFolderArguments, shaping_settings
from medqa.runs.preemption import StopFileCallback, stop_file_from_env
from medqa.runs.recipes import apply_hardware_precision, parse_recipe_args
from medqa.teacher.setup import TeacherArgs

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "grpo_summary.json"


# ---------------------------------------------------------------- arguments


@dataclass
class GRPOScriptArguments(PromptArguments, ScriptArguments):
    """Where the RL prompts live (`PromptArguments`) and how many completions are logged."""

    samples_per_log: int = field(default=4, metadata={"help": "completions written to samples.jsonl per logged step"})

    def __post_init__(self):
        self.check_prompts()
        if self.samples_per_log < 0:
            raise ValueError(f"samples_per_log must be >= 0, got {self.samples_per_log}")


@dataclass
class GRPOModelArguments(ModelArguments):
    """The SFT output to start from (`model_name_or_path`) and how it is trained (see the module docstring)."""

    base_model: str | None = field(
        default=None, metadata={"help": "base model under an adapter; default: the adapter's base_model_name_or_path"}
    )

    def __post_init__(self):
        super().__post_init__()
        from medqa.models.loading import is_adapter_dir, looks_local

        path = Path(self.model_name_or_path)
        if looks_local(path) and not path.is_dir():
            raise FileNotFoundError(
                f"model_name_or_path={self.model_name_or_path}: no such SFT output (run `make sft-lora` first, or set SFT=)")
        if is_adapter_dir(path) and self.mode == "full":
            raise ValueError(f"{path} is a LoRA adapter: use mode lora/qlora, or merge it (`make merge`) for mode full")
        if self.base_model is not None and not is_adapter_dir(self.model_name_or_path):
            raise ValueError("base_model is only for an adapter SFT output; model_name_or_path is a full model")


@dataclass
class MedqaGRPOConfig(RewardArguments, GRPOConfig, RunFolderArguments):
    """TRL's GRPOConfig with this project's defaults; precision follows the hardware unless set explicitly."""

    learning_rate: float = 1e-5
    beta: float = 0.04  # KL to the SFT reference (the original project's KL-control intent)
    num_generations: int | None = 8
    max_completion_length: int | None = 512
    temperature: float = 0.9
    reward_weights: list[float] | None = None  # one weight per reward function; the project's reward is one
    logging_steps: float = 1
    report_to: None | str | list[str] = "tensorboard"
    save_strategy: str = "steps"
    save_steps: float = 50
    save_total_limit: int | None = 2
    seed: int = 42

    def __post_init__(self):
        apply_hardware_precision(self)
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0 (KL coefficient), got {self.beta}")
        if self.num_generations is None or self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (GRPO compares completions of one prompt), got {self.num_generations}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (GRPO samples), got {self.temperature}")
        if self.use_vllm:
            raise ValueError("use_vllm: GRPO samples with transformers here. TRL's vLLM modes need vLLM (and, for its "
                             "server, TRL) importable beside this project's transformers, which every vLLM release "
                             "pins lower; vLLM rollouts are PPO's: --rollout_engine vllm (docs/gpu.md)")
        if self.max_completion_length is None or self.max_completion_length < 4:
            raise ValueError(f"max_completion_length must be >= 4 tokens, got {self.max_completion_length}")
        self.check_reward()
        if self.reward_weights is not None and (
            any(w < 0 for w in self.reward_weights) or sum(self.reward_weights) <= 0
        ):
            raise ValueError(f"reward_weights must be >= 0 with a positive sum, got {self.reward_weights}")
        super().__post_init__()


def parse_args(argv: list[str]) -> tuple[GRPOScriptArguments, MedqaGRPOConfig, GRPOModelArguments, TeacherArgs]:
    """`--config RECIPE` plus overrides -> the four dataclasses (the teacher's: `medqa.teacher.setup.TeacherArgs`).
    Unknown options are errors, not ignored; a teacher URL with user:password on the command line is refused
    (MEDQA_TEACHER_BASE_URL)."""
    from medqa.teacher.setup import refuse_credentials_on_command_line

    refuse_credentials_on_command_line(argv)
    return parse_recipe_args((GRPOScriptArguments, MedqaGRPOConfig, GRPOModelArguments, TeacherArgs), argv)


# ---------------------------------------------------------------- data


def load_prompts(path: str | Path, limit: int | None = None, *, tokenizer=None, max_prompt_length: int | None = None,
                 enable_thinking: bool = True):
    """`make rl-prompts` rows -> a Dataset with `prompt` (chat messages up to the user turn), `question` and `meta`
    (JSON text: a dataset column of dicts would be given a fixed schema). With a tokenizer, a prompt over
    `max_prompt_length` tokens is an error (`medqa.data.rl_prompts.load_rl_prompts`)."""
    from datasets import Dataset

    from medqa.data.rl_prompts import load_rl_prompts, prompt_token_counter

    count = prompt_token_counter(tokenizer, enable_thinking) if tokenizer is not None else None
    return Dataset.from_list([{"prompt": r["prompt"], "question": r["question"],
                               "meta": json.dumps(r["meta"], ensure_ascii=False)}
                              for r in load_rl_prompts(path, limit, max_prompt_length=max_prompt_length,
                                                       count_tokens=count)])


# ---------------------------------------------------------------- rewards


def completion_text(completion: Any) -> str:
    """The model's whole output (`<think>…</think>answer`) from a TRL completion: a string, or a conversational
    completion (a list with the assistant message, whose reasoning may have been parsed out of the content)."""
    if isinstance(completion, str):
        return completion
    message = completion[-1] if isinstance(completion, Sequence) and completion else completion
    content = str(message.get("content") or "")
    reasoning = message.get("reasoning_content") or message.get("thinking")
    if reasoning:
        from medqa.text.think import join_think

        return join_think(str(reasoning), content)
    return content


def _questions(prompts: list, question: list[str] | None) -> list[str]:
    """The `question` column, or else the last user message of each prompt."""
    return question or [p if isinstance(p, str) else p[-1]["content"] for p in prompts]


def _meta(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, str):
        return json.loads(value) if value else None
    return value


def rules(prompts: list, completions: list, completion_ids: list | None = None, question: list[str] | None = None,
          meta: list | None = None, **_: Any) -> list[float]:
    """The rule reward (`medqa.rewards.rule_reward`) of every completion, with its row's meta: a TRL reward function
    for a run on the rules alone."""
    from medqa.rewards import rule_reward

    metas = meta or [None] * len(completions)
    return [rule_reward(q, completion_text(c), _meta(m)).total
            for q, c, m in zip(_questions(prompts, question), completions, metas, strict=True)]


class CombinedReward:
    """The project's reward of every completion, `medqa.rewards.total_rewards` of the rules and the teacher.

    One process: a `TeacherClient` opened on the trainer's event loop at the first call. Several processes: every
    rank hands its pairs to `DistributedTeacher` (TRL scores rewards on every rank at every generation step, so
    the collective lines up); rank 0 de-duplicates and sends them under the global cap, and the judged counts are
    summed over ranks, so every rank imputes the same mean and sees the same failed share (`stop_rule`).
    """

    __name__ = "total"

    def __init__(self, config: Any, cache_path: str | None = None, distributed: bool = False,
                 weights: RewardArguments | None = None, stop_rule: Any = None):
        from medqa.rewards import TeacherStopRule

        self.config = config
        self.cache_path = cache_path
        self.weights = (weights or RewardArguments()).weights
        self.stop_rule = stop_rule or TeacherStopRule()
        self.calls: list[int] = []  # pairs per call, on this rank
        self.failed = 0
        self._client: Any = None
        self._cache: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._distributed = None
        if distributed:
            from medqa.teacher.distributed import DistributedTeacher

            self._distributed = DistributedTeacher(config, cache_path)

    async def __call__(self, prompts: list, completions: list, completion_ids: list | None = None,
                       question: list[str] | None = None, meta: list | None = None, log_metric: Any = None,
                       **_: Any) -> list[float]:
        from medqa.rewards import imputed_teacher_term, rule_reward, teacher_term, total_rewards

        questions, texts = _questions(prompts, question), [completion_text(c) for c in completions]
        metas = meta or [None] * len(completions)
        rule_parts = [rule_reward(q, t, _meta(m)) for q, t, m in zip(questions, texts, metas, strict=True)]
        results = await self.judge(list(zip(questions, texts, strict=True)))
        terms = [teacher_term(r) for r in results]
        judged = [t for t in terms if t is not None]
        n, judged_n, judged_sum = await self._global_sums(
            [float(len(terms)), float(len(judged)), float(sum(judged))])
        failed_share = 1.0 - judged_n / max(n, 1.0)
        errors = [r.error for r in results if not r.ok]
        self.failed += len(errors)
        if errors:
            logger.warning("teacher: %d/%d judgements failed (the batch's mean teacher term instead), e.g. %s",
                           len(errors), len(results), errors[0])
        if log_metric is not None:
            log_metric("teacher/failed_share", failed_share)
            log_metric("rewards/rules/mean", sum(r.total for r in rule_parts) / max(1, len(rule_parts)))
            if judged_n > 0:
                log_metric("rewards/teacher/mean", judged_sum / judged_n)
        self.stop_rule.observe(failed_share, errors[0] if errors else None)
        mixed = total_rewards(rule_parts, results, self.weights, imputed=imputed_teacher_term(judged_sum, judged_n))
        return [m.total for m in mixed]

    async def judge(self, pairs: list[tuple[str, str]]) -> list[Any]:
        """The teacher's `TeacherResult` for every (question, completion text) pair of this rank, in order."""
        self.calls.append(len(pairs))
        if self._distributed is not None:
            handle = self._distributed.submit(pairs)
            return await asyncio.get_running_loop().run_in_executor(None, handle.result)
        return await (await self._open()).judge_many(pairs)

    async def _global_sums(self, values: list[float]) -> list[float]:
        """`values` summed over the ranks (this rank's alone in one process)."""
        if self._distributed is None:
            return values
        import torch.distributed as dist

        group = self._distributed.group

        def gather() -> list[float]:
            out: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(out, values, group=group)
            return [sum(col) for col in zip(*out, strict=True)]

        return await asyncio.get_running_loop().run_in_executor(None, gather)

    async def _open(self):
        if self._client is None:
            from medqa.teacher.cache import JudgementCache
            from medqa.teacher.client import TeacherClient

            self._loop = asyncio.get_running_loop()
            self._cache = JudgementCache(self.cache_path) if self.cache_path else None
            self._client = await TeacherClient(self.config, self._cache).__aenter__()
        return self._client

    async def aclose(self) -> None:
        """Close the single-process client from its own event loop."""
        if self._client is not None:
            await self._client.__aexit__(None, None, None)
        if self._cache is not None:
            self._cache.close()
        self._client = self._cache = None

    @property
    def usage(self) -> dict[str, Any] | None:
        """The sending client's counters (rank 0 under several processes; None elsewhere)."""
        usage = self._distributed.usage if self._distributed is not None else (self._client.usage if self._client else None)
        return usage.summary(self.config) if usage is not None else None

    def close(self) -> None:
        if self._distributed is not None:
            self._distributed.close()
        elif self._client is not None and self._loop is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.aclose(), self._loop).result(60)


# ---------------------------------------------------------------- trainer


class MedqaGRPOTrainer(GRPOTrainer):
    """GRPOTrainer that also appends each logged step to `metrics.jsonl` and a few completions to `samples.jsonl`."""

    samples_per_log = 4

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        training = self.model.training
        step = self.state.global_step
        samples = self._recent_samples() if training else []
        super().log(logs, start_time)  # fills `logs` with TRL's reward metrics, then clears them
        if not (training and self.accelerator.is_main_process and "reward" in logs):
            return
        from medqa.runs.io import append_jsonl

        row: dict[str, Any] = {"step": step, "reward": logs.get("reward"), "reward_std": logs.get("reward_std")}
        row["rewards"] = {k.split("/")[1]: v for k, v in logs.items() if k.startswith("rewards/") and k.endswith("/mean")}
        for key in ("teacher/failed_share", "kl", "loss", "entropy", "completions/mean_length", "step_time",
                    "learning_rate"):
            if key in logs:
                row[key] = logs[key]
        out = Path(self.args.output_dir)
        append_jsonl(out / METRICS_FILE, [row])
        if samples:
            append_jsonl(out / SAMPLES_FILE, [{"step": step, **s} for s in samples])

    def _tokenize_prompts(self, prompts: list):
        """Chat prompts through `medqa.models.generation.chat_input_ids`, so special-token text in a question is tokenised
        as text (TRL's `apply_chat_template(tokenize=True)` would parse it as special). Prompts with tools,
        environments or images, or plain-text prompts, stay TRL's."""
        from trl.data_utils import is_conversational

        from medqa.models.generation import chat_input_ids

        if (self.tools or self.environment_factories is not None or self._is_vlm
                or not is_conversational({"prompt": prompts[0]})):
            return super()._tokenize_prompts(prompts)
        kwargs = {"enable_thinking": None, **self.chat_template_kwargs}  # None: the template's default, as TRL
        ids = [chat_input_ids(self.processing_class, prompt, chat_template=self.chat_template, **kwargs)
               for prompt in prompts]
        return ids, None, {}

    def _recent_samples(self) -> list[dict[str, Any]]:
        n = min(self.samples_per_log, len(self._logs["prompt"]))
        if n == 0:
            return []
        out = []
        for i in range(len(self._logs["prompt"]) - n, len(self._logs["prompt"])):
            prompt = self._logs["prompt"][i]
            out.append({
                "question": prompt if isinstance(prompt, str) else prompt[-1]["content"],
                "completion": completion_text(self._logs["completion"][i]),
                "rewards": {name: self._logs["rewards"][name][i] for name in self._logs["rewards"]},
                "advantage": self._logs["advantages"][i],
            })
        return out


def load_tokenizer(model_args: GRPOModelArguments):
    """The SFT output's tokenizer (the adapter's own, with its chat template, else the base model's)."""
    from medqa.models import loading

    base, adapter = loading.resolve_model_paths(model_args.model_name_or_path)
    base = model_args.base_model or base
    return loading.load_tokenizer(base, adapter, revision=model_args.model_revision, pad_with_eos=False)


def load_policy(model_args: GRPOModelArguments, training_args: MedqaGRPOConfig, tokenizer=None):
    """(model, tokenizer, peft_config) from the SFT output; see the module docstring for the three cases."""
    from medqa.models import loading

    base, adapter = loading.resolve_model_paths(model_args.model_name_or_path)
    base = model_args.base_model or base
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_args)
    dtype = loading.torch_dtype(model_args.dtype, bf16=bool(training_args.bf16), fp16=bool(training_args.fp16))
    model = loading.load_model(model_args, path=base, dtype=dtype, device=training_args.device,
                                trust_remote_code=training_args.trust_remote_code)
    peft_config = None
    if adapter:
        model = loading.attach_adapter(model, adapter, trainable=True, tokenizer=tokenizer)
    else:
        peft_config = model_args.lora_config()
    return model, tokenizer, peft_config


def _template_kwargs(training_args: MedqaGRPOConfig) -> dict:
    kwargs = training_args.chat_template_kwargs
    return json.loads(kwargs) if isinstance(kwargs, str) and kwargs else kwargs if isinstance(kwargs, dict) else {}


def build_trainer(script_args: GRPOScriptArguments, training_args: MedqaGRPOConfig, model_args: GRPOModelArguments,
                  teacher_args: TeacherArgs | None = None, reward_funcs: list | None = None):
    """Prompts, policy and GRPOTrainer on the project's reward (`CombinedReward`) or on `reward_funcs` (e.g. a
    verifiable reward).

    The teacher is built by `medqa.teacher.setup.build_teacher` (the offline judge, with `teacher_offline`, is
    started here and stopped by `main`)."""
    from transformers import set_seed

    from medqa.teacher.setup import build_teacher

    set_seed(training_args.seed)
    tokenizer = load_tokenizer(model_args)
    dataset = load_prompts(script_args.prompts_file, script_args.max_prompts, tokenizer=tokenizer,
                           max_prompt_length=script_args.max_prompt_length,
                           enable_thinking=_template_kwargs(training_args).get("enable_thinking", True))
    teacher = setup = None
    if reward_funcs is None:
        if teacher_args is None:
            raise ValueError("the teacher reward needs teacher arguments")
        setup = build_teacher(teacher_args, quiet=training_args.process_index != 0)
        teacher = CombinedReward(setup.config, setup.cache_path, distributed=training_args.world_size > 1,
                                 weights=training_args.weights,
                                 stop_rule=TeacherStopRule.from_args(teacher_args))
        reward_funcs = [teacher]
    if training_args.reward_weights is not None and len(training_args.reward_weights) != len(reward_funcs):
        raise ValueError(f"reward_weights has {len(training_args.reward_weights)} values for {len(reward_funcs)} rewards")
    try:
        model, tokenizer, peft_config = load_policy(model_args, training_args, tokenizer)
        trainer = MedqaGRPOTrainer(model=model, reward_funcs=reward_funcs, args=training_args, train_dataset=dataset,
                                   processing_class=tokenizer, peft_config=peft_config)
    except BaseException:
        if setup is not None:
            setup.close()
        raise
    trainer.samples_per_log = script_args.samples_per_log
    trainer.teacher, trainer.teacher_setup = teacher, setup
    if model_args.mode == "qlora":
        disable_bnb_cpu_repack(trainer.model)
    return trainer


def run_settings(script_args: GRPOScriptArguments, training_args: MedqaGRPOConfig, model_args: GRPOModelArguments,
                 teacher_args: TeacherArgs | None = None) -> dict[str, Any]:
    """The settings a resumed run must share with its checkpoint: every shaping option (medqa/runs/checkpoints.py, SHAPING)."""
    return shaping_settings(script_args, training_args, model_args, teacher_args or TeacherArgs())


def main(script_args: GRPOScriptArguments, training_args: MedqaGRPOConfig, model_args: GRPOModelArguments,
         teacher_args: TeacherArgs) -> dict:
    """Train, save the policy + tokenizer + model card, write grpo_summary.json; returns the summary. OUT is locked
    and claimed first (medqa/runs/checkpoints.py): never the SFT output, never another command's folder or run."""
    from medqa.models.loading import resolve_model_paths
    from medqa.runs.checkpoints import TrainerRun

    base, adapter = resolve_model_paths(model_args.model_name_or_path)
    run = TrainerRun("grpo", training_args, run_settings(script_args, training_args, model_args, teacher_args),
                     inputs=[model_args.model_name_or_path, model_args.base_model or base, adapter,
                             script_args.prompts_file], data={"prompts_file": script_args.prompts_file,
                                                       MODEL_INPUT: model_args.model_name_or_path})
    resume = run.start()  # before the model loads: a refused output costs nothing
    if run.finished is not None:  # OUT holds this run, finished: nothing to train (said in one line)
        return run.finished_summary()
    try:
        return _train(run, resume, script_args, training_args, model_args, teacher_args)
    finally:
        run.release()


def _train(run, resume: str | None, script_args: GRPOScriptArguments, training_args: MedqaGRPOConfig,
           model_args: GRPOModelArguments, teacher_args: TeacherArgs) -> dict:
    from accelerate.utils import gather_object

    from medqa.runs.throughput import peak_memory_gib, peak_rss_gib

    trainer = build_trainer(script_args, training_args, model_args, teacher_args)
    trainer.add_callback(run.callback())
    is_main = trainer.accelerator.is_main_process
    stop_file = stop_file_from_env()  # MEDQA_STOP_FILE: checkpoint and stop (medqa/runs/preemption.py)
    stopper = StopFileCallback(stop_file) if stop_file else None
    if stopper:
        trainer.add_callback(stopper)
    if resume:
        logger.warning("resuming from %s", resume)
    if is_main:
        from medqa.models.generation import write_rollout_decoding
        from medqa.rewards import write_run_reward

        write_rollout_decoding(training_args.output_dir, "grpo", vars(training_args))  # for `--decoding-from OUT`
        write_run_reward(training_args.output_dir, "combined", training_args)
    trainer.accelerator.wait_for_everyone()
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=resume)
        stopped_at = stopper.stopped_at if stopper else None
        if stopped_at is None:
            trainer.save_model(training_args.output_dir)
    finally:
        usage = trainer.teacher.usage if trainer.teacher is not None else None
        teacher = trainer.teacher_setup.describe if trainer.teacher_setup is not None else None
        calls = gather_object([trainer.teacher.calls if trainer.teacher is not None else []])
        if trainer.teacher is not None:
            trainer.teacher.close()
            trainer.teacher_setup.close()
    if stopped_at is not None:  # unfinished: the next run resumes from the checkpoint just saved
        logger.warning("stopped at step %d on request; checkpoint-%d saved in %s", stopped_at, stopped_at,
                       training_args.output_dir)
        return {"stopped_at": stopped_at, "resumed_from": resume}
    wall = time.perf_counter() - started
    history = [h for h in trainer.state.log_history if "reward" in h]
    summary = {
        "model": model_args.model_name_or_path,
        "mode": model_args.mode,
        "resumed_from": resume,
        "global_step": trainer.state.global_step,
        "num_processes": trainer.accelerator.num_processes,
        "beta": training_args.beta,
        "reward_weights": training_args.reward_weights,
        "rewards": [h["reward"] for h in history],
        "wall_s": round(wall, 2),
        "peak_memory_gib": peak_memory_gib(),
        "peak_rss_gib": peak_rss_gib(),
        "teacher_calls_per_rank": calls,
        "teacher": teacher,
        "teacher_usage": usage,
    }
    if is_main:
        trainer.create_model_card(model_name=Path(training_args.output_dir).name,
                                  dataset_name=str(script_args.prompts_file), tags=["medqa", "grpo", model_args.mode])
        from medqa.runs.io import atomic_write

        with atomic_write(Path(training_args.output_dir) / SUMMARY_FILE) as fh:
            json.dump(summary, fh, indent=2, ensure_ascii=False)
    run.finish(trainer.state.global_step)
    trainer.accelerator.wait_for_everyone()
    return summary
