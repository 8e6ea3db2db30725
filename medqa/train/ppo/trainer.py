"""The PPO loop: rollout → score (teacher overlapped) → KL-penalised rewards → GAE → clipped PPO epochs.

One step, on every rank in lockstep (ZeRO-3 parameter gathers are collectives):

1. take this rank's slice of the step's prompts (`PromptOrder`: a function of the step, so resumes see the same
   data), sample responses with gathered parameters (`unwrap_model_for_generation`);
2. submit (question, answer) pairs to the teacher at once; meanwhile compute the old log-probs and values
   (policy) and the reference log-probs (LoRA: the same network with the adapter disabled; full: a frozen
   copy), then the rule rewards; then collect the judgements;
3. per-token rewards = −kl_coef·KL(policy‖ref) + the score on the last token; GAE; advantages whitened over the
   global batch;
4. `ppo_epochs` passes over shuffled mini-batches (clipped policy + value loss, optional entropy bonus,
   gradient clipping), stopping early once the global approx KL(old‖new) per token exceeds 1.5 × target_kl;
5. adapt the KL coefficient to the global per-sequence KL; log; checkpoint every `save_steps`.

Each step's phases are timed (`time/<phase>_s` in metrics.jsonl, means over ranks); ppo_summary.json adds their
mean per step after the first (warm-up) step, the rollout tokens generated per second and process, and the peak
GPU memory of rank 0 (`medqa/runs/throughput.py`; `make bench-gpu` reports them per mode).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from medqa.data.rl_prompts import load_rl_prompts, prompt_token_counter
from medqa.engine import EngineUnavailable
from medqa.models.chat import stop_ids
from medqa.rewards import TeacherStopRule
from medqa.runs.checkpoints import (
    CHECKPOINT_RE,
    MODEL_INPUT,
    RunIdentity,
    RunLength,
    finish_run_dir,
    prepare_run_dir,
    trim_logs,
)
from medqa.runs.io import OutputLock, append_jsonl, atomic_write, iter_jsonl
from medqa.runs.preemption import any_rank, rank0_decides, stop_file_from_env
from medqa.runs.throughput import peak_memory_gib, peak_rss_gib, split_after_warmup
from medqa.train.ppo import core, rollout
from medqa.train.ppo.config import PPOConfig, PPOModelArguments, TeacherArgs, run_settings
from medqa.train.ppo.kl import AdaptiveKLController, FixedKLController
from medqa.train.ppo.scoring import RewardFn, Scorer, build_distributed_teacher
from medqa.train.ppo.server_rollouts import ServerPolicy
from medqa.train.ppo.value_head import VALUE_HEAD_FILE, PolicyWithValueHead

logger = logging.getLogger("medqa.train.ppo")

REFERENCE_ADAPTER = "reference"
STATE_FILE = "ppo_state.json"  # written last into a checkpoint: its presence marks the checkpoint complete


# ---------------------------------------------------------------- setup helpers


def make_accelerator():
    """CPU: `PartialState(cpu=True)` first, then a plain `Accelerator()` (`Accelerator(cpu=True)` would silently
    drop DeepSpeed; `Accelerator()` alone sees one process per rank)."""
    from accelerate import Accelerator, PartialState

    if not torch.cuda.is_available():
        PartialState(cpu=True)
    return Accelerator()


def ensure_process_group() -> None:
    """The teacher's collectives need torch.distributed even for one process: a 1-rank gloo group."""
    import socket

    import torch.distributed as dist

    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)


def load_policy(model_args: PPOModelArguments, device):
    """(tokenizer, policy, frozen reference or None). LoRA/QLoRA: the SFT adapter trained further (a new adapter
    when the SFT output is a full model); the reference is a frozen copy of the SFT adapter (`reference=sft`) or
    the same network with the adapter disabled (`reference=base`, or a new adapter on a full SFT model)."""
    from peft import get_peft_model

    from medqa.models import loading

    base, adapter = loading.resolve_model_paths(model_args.model_name_or_path)
    loading.check_model_path(base, "model (the SFT output's base)")
    tokenizer = loading.load_tokenizer(base, adapter)
    dtype = loading.torch_dtype(model_args.dtype, device=device)

    def load_base():
        return loading.load_model(model_args, path=base, dtype=dtype, device=device)

    model = load_base()
    if model_args.mode == "full":
        if adapter:
            model = loading.attach_adapter(model, adapter, merge=True, tokenizer=tokenizer)
        reference = load_base()
        if adapter:
            reference = loading.attach_adapter(reference, adapter, merge=True, tokenizer=tokenizer)
        reference.requires_grad_(False).eval()
        return tokenizer, model, reference
    if adapter:
        model = loading.attach_adapter(model, adapter, trainable=True, tokenizer=tokenizer)
        if model_args.reference == "sft":  # a frozen copy of the SFT adapter, switched on for the reference pass
            model.load_adapter(adapter, adapter_name=REFERENCE_ADAPTER, is_trainable=False)
            model.set_adapter("default")
    else:
        model = get_peft_model(model, model_args.lora_config())
    return tokenizer, model, None


class Timer:
    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start


# ---------------------------------------------------------------- the trainer


class PPOTrainer:
    def __init__(self, model_args: PPOModelArguments, cfg: PPOConfig, teacher_args: TeacherArgs | None = None,
                 reward_fn: RewardFn | None = None, overlap_teacher: bool = True):
        from transformers import set_seed

        self.model_args, self.cfg = model_args, cfg
        self.overlap_teacher = overlap_teacher  # False only to measure the blocking baseline (bench P2)
        self.accelerator = acc = make_accelerator()
        self.rank, self.world = acc.process_index, acc.num_processes
        self.out = Path(cfg.output_dir)
        set_seed(cfg.seed)
        if cfg.cpu_threads > 0:
            torch.set_num_threads(cfg.cpu_threads)
        ds = acc.state.deepspeed_plugin
        self.zero3 = bool(ds is not None and ds.zero_stage == 3)
        if ds is not None:  # no dataloader is prepared, so DeepSpeed cannot infer these
            ds.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.mini_batch_size
            ds.deepspeed_config["gradient_accumulation_steps"] = 1
            ds.deepspeed_config["gradient_clipping"] = cfg.max_grad_norm
            ds.deepspeed_config.pop("train_batch_size", None)

        # Model after the Accelerator: under ZeRO-3 the weights are then sharded at load.
        tokenizer, policy, reference = load_policy(model_args, acc.device)
        self.tokenizer = tokenizer
        if model_args.gradient_checkpointing:
            policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if hasattr(policy, "enable_input_require_grads"):
                policy.enable_input_require_grads()
        model = PolicyWithValueHead(policy)
        self.stop_ids = stop_ids(tokenizer, policy.config, policy.generation_config)
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, eps=cfg.adam_eps,
                                           weight_decay=cfg.weight_decay)
        self.model, self.prepared_optimizer = acc.prepare(model, self.optimizer)
        self.reference = None
        if reference is not None:
            if self.zero3:
                from trl.models.utils import prepare_deepspeed

                self.reference = prepare_deepspeed(reference, acc)  # sharded too
            else:
                self.reference = reference.to(acc.device)
        self.unwrapped: PolicyWithValueHead = acc.unwrap_model(self.model)
        self.server: ServerPolicy | None = None
        if cfg.rollout_engine == "vllm":
            if model_args.mode == "full":
                raise ValueError("rollout_engine vllm syncs the policy's LoRA adapter to the server every step; full-"
                                 "parameter PPO would need every weight reloaded: use rollout_engine hf, or mode lora")
            self.server = ServerPolicy(cfg.vllm_server_base_url, cfg.vllm_server_timeout, self.out)
            self.server.prefix = rank0_decides(lambda: self.server.connect(model_args.model_name_or_path),
                                               acc.is_main_process)

        self.prompts = load_rl_prompts(cfg.prompts_file, cfg.max_prompts, max_prompt_length=cfg.max_prompt_length,
                                       count_tokens=prompt_token_counter(tokenizer, cfg.enable_thinking))
        self.order = rollout.PromptOrder(len(self.prompts), cfg.seed, cfg.batch_size // cfg.samples_per_prompt,
                                         self.world)
        self.kl_ctl = (AdaptiveKLController(cfg.init_kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.adaptive_kl
                       else FixedKLController(cfg.init_kl_coef))
        teacher = None
        self.teacher_setup = None
        if reward_fn is None and cfg.reward == "combined":
            ensure_process_group()
            self.teacher_setup, teacher = build_distributed_teacher(teacher_args or TeacherArgs(), self.rank)
        self.teacher = teacher
        self.scorer = Scorer(cfg, teacher, self.all_reduce, reward_fn, TeacherStopRule.from_args(teacher_args or TeacherArgs()))
        self.step = 0  # completed PPO steps
        self.writer = None
        self.identity = RunIdentity("ppo", run_settings(model_args, cfg, teacher_args), self.world,
                                    data={"prompts_file": cfg.prompts_file, MODEL_INPUT: model_args.model_name_or_path})
        self.length = RunLength({"total_steps": cfg.total_steps}, cfg.total_steps)
        self.lock: OutputLock | None = None

    # -- distributed helpers
    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks (identity on one process)."""
        if self.world == 1:
            return tensor
        import torch.distributed as dist

        t = tensor.to(self.accelerator.device)
        dist.all_reduce(t)
        return t.to(tensor.device)

    def global_mean(self, values: list[float]) -> float:
        s = self.all_reduce(torch.tensor([float(sum(values)), float(len(values))], dtype=torch.float64))
        return s[0].item() / max(s[1].item(), 1.0)

    def lr_at(self, step: int) -> float:
        if self.cfg.lr_scheduler_type == "linear":
            return self.cfg.learning_rate * max(0.0, 1.0 - step / self.cfg.total_steps)
        return self.cfg.learning_rate

    # -- one PPO step
    def ppo_step(self) -> dict[str, Any]:
        cfg, acc, timer = self.cfg, self.accelerator, Timer()
        from trl.models.utils import unwrap_model_for_generation

        step_start = time.perf_counter()
        rows = [self.prompts[i] for i in self.order.indices(self.step, self.rank) for _ in range(cfg.samples_per_prompt)]
        questions, metas = [r["question"] for r in rows], [r["meta"] for r in rows]

        # 1. rollouts: in the trainer, with the ZeRO-3 shards gathered once for the whole generate call, or on the
        # vLLM server from this step's adapter
        self.model.eval()
        decoding = dict(max_prompt_length=cfg.max_prompt_length, max_new_tokens=cfg.max_new_tokens,
                        temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                        enable_thinking=cfg.enable_thinking, stop_ids=self.stop_ids,
                        repetition_penalty=cfg.repetition_penalty)
        behaviour = None
        if self.server is not None:
            with timer("sync"):
                name = self._publish_adapter()
            with timer("generate"):
                batch, behaviour = self._server_rollouts(name, [r["prompt"] for r in rows], decoding)
        else:
            with timer("generate"), unwrap_model_for_generation(self.model, acc) as unwrapped:
                batch = rollout.generate(unwrapped, self.tokenizer, [r["prompt"] for r in rows], **decoding)

        # 2. teacher in flight while the policy, value and reference forwards run
        handle = self.scorer.submit(questions, batch.texts)
        if handle is not None and not self.overlap_teacher:
            with timer("score_wait"):
                handle.result()
        mask = batch.response_mask.float()
        with timer("forward"), torch.no_grad():
            old_logprobs, old_values, ref_logprobs = self._no_grad_forwards(batch)
        with timer("score_wait"):
            if handle is not None:
                handle.result()
        with timer("score"):
            scored = self.scorer.collect(handle, questions, batch.texts, metas, batch.has_eos)
        scores = scored.scores.to(old_values.device)
        if cfg.score_clip is not None:
            scores = scores.clamp(-cfg.score_clip, cfg.score_clip)
        if cfg.score_baseline == "group":
            scores = core.group_baseline(scores, cfg.samples_per_prompt)
        if cfg.score_norm:  # scale by the global std, keeping the sign
            scores = core.masked_whiten(scores, torch.ones_like(scores), shift_mean=False, all_reduce=self.all_reduce)

        # 3. rewards and advantages
        kl = core.kl_estimate(old_logprobs, ref_logprobs, cfg.kl_estimator) * mask
        rewards = core.kl_penalised_rewards(scores, kl, self.kl_ctl.value, mask)
        advantages, returns = core.gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = core.masked_whiten(advantages, mask, all_reduce=self.all_reduce)

        # 4. PPO epochs (rollouts from the server: each token's loss weighted by its truncated importance ratio)
        is_weights, mismatch = None, {}
        if behaviour is not None:
            weights, stats = core.truncated_is_weights(old_logprobs, behaviour, mask, cfg.vllm_importance_sampling_cap)
            if cfg.vllm_importance_sampling_correction:
                is_weights = weights
            mismatch = {"rollout/logp_diff_mean": self.global_mean([float(stats["logp_diff_mean"])]),
                        "rollout/is_ratio_max": self.global_max(float(stats["is_ratio_max"])),
                        "rollout/is_clipped_share": self.global_mean([float(stats["is_clipped_share"])])}
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        with timer("update"):
            update = self._update(batch, old_logprobs, old_values, advantages, returns, mask, is_weights)

        # 5. KL controller on the global per-sequence KL, then the metrics
        kl_per_seq = kl.sum(1).tolist()
        mean_kl = self.global_mean(kl_per_seq)
        kl_coef = self.kl_ctl.value
        self.kl_ctl.update(mean_kl, cfg.batch_size * self.world)
        timer.seconds["step"] = time.perf_counter() - step_start
        lengths = batch.response_mask.sum(1).float().tolist()
        metrics: dict[str, Any] = {
            "step": self.step + 1,
            "reward": self.global_mean(scored.scores.tolist()),
            "kl": mean_kl,
            "kl_coef": kl_coef,
            "non_score_reward": -kl_coef * mean_kl,
            "reward_std": math.sqrt(max(self.global_mean([s * s for s in scored.scores.tolist()])
                                        - self.global_mean(scored.scores.tolist()) ** 2, 0.0)),
            "response_length": self.global_mean(lengths),
            "eos_rate": self.global_mean([float(x) for x in batch.has_eos.tolist()]),
            "think_closed_rate": self.global_mean([float("</think>" in t) for t in batch.texts]),
            **{f"reward/{k}": self.global_mean([p[k] for p in scored.parts]) for k in scored.parts[0]
               if k not in ("total",)},
            **scored.metrics,
            **update,
            **mismatch,
            "explained_variance": core.explained_variance(old_values, returns, mask, self.all_reduce),
            "lr": self.lr_at(self.step),
            **{f"time/{k}_s": round(self.global_mean([v]), 4) for k, v in timer.seconds.items()},
        }
        if self.teacher is not None and self.teacher.usage is not None:
            metrics["teacher/requests"] = self.teacher.usage.requests
        metrics["prompt_ids"] = [r["id"] for r in rows]  # this rank's; identical order on a resumed run
        self._samples = (questions, batch.texts, scored.parts)
        return metrics

    def _publish_adapter(self) -> str:
        """Save this step's adapter and load it into the server (main process); every rank gets its name, or every
        rank raises EngineUnavailable (no rank is left waiting in a collective)."""
        state = self.accelerator.get_state_dict(self.model)  # gathers ZeRO-3 shards (collective)
        error = None
        if self.accelerator.is_main_process:
            try:
                self.server.publish(self.step, lambda folder: self._save_policy(folder, state))
            except EngineUnavailable as e:
                error = e
        self._agree(error, "loading the adapter into the vLLM server failed on the main process")
        return self.server.version_name(self.step)

    def _server_rollouts(self, name: str, prompts: list[list[dict]], decoding: dict):
        seeds = [(self.cfg.seed * 1_000_003 + self.step * 10_007 + self.rank * 1_009 + i) for i in range(len(prompts))]
        result, error = None, None
        try:
            result = rollout.generate_on_server(self.server.client, name, self.tokenizer, prompts, seeds=seeds,
                                                device=self.accelerator.device, **decoding)
        except EngineUnavailable as e:
            error = e
        self._agree(error, "another process's rollout request to the vLLM server failed")
        return result

    def _agree(self, error: Exception | None, other: str) -> None:
        """Raise on every rank when any rank failed: its own error where it failed, `other` elsewhere."""
        if any_rank(error is not None):
            raise error if error is not None else EngineUnavailable(other)

    def global_max(self, value: float) -> float:
        if self.world == 1:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.accelerator.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.item()

    def _forward(self, batch: rollout.RolloutBatch, rows, with_entropy: bool = False):
        return rollout.forward(self.model, batch, rows, self.cfg.temperature, with_entropy=with_entropy,
                               repetition_penalty=self.cfg.repetition_penalty)

    def _no_grad_forwards(self, batch: rollout.RolloutBatch):
        """Old log-probs + values (policy) and reference log-probs, in chunks of forward_batch_size on every rank."""
        lp, vals, ref = [], [], []
        for start in range(0, len(batch), self.cfg.forward_batch_size):
            rows = slice(start, start + self.cfg.forward_batch_size)
            logprobs, values, _ = self._forward(batch, rows)
            lp.append(logprobs)
            vals.append(values)
            ref.append(self._reference_logprobs(batch, rows))
        mask = batch.response_mask.float()
        return torch.cat(lp) * mask, torch.cat(vals) * mask, torch.cat(ref) * mask

    def _reference_logprobs(self, batch, rows) -> torch.Tensor:
        policy = self.unwrapped.policy
        if self.reference is None and REFERENCE_ADAPTER in getattr(policy, "peft_config", {}):
            policy.set_adapter(REFERENCE_ADAPTER)  # the SFT policy (frozen); never concurrent with a policy pass
            try:
                return self._forward(batch, rows)[0]
            finally:
                policy.set_adapter("default")  # also restores requires_grad: default trainable, reference frozen
        if self.reference is None:  # LoRA: the base weights are the reference (never concurrent with the policy)
            with policy.disable_adapter():
                return self._forward(batch, rows)[0]
        input_ids, attention_mask = batch.input_ids[rows], batch.attention_mask[rows]
        P = batch.query_ids.shape[1]
        logits = self.reference(input_ids=input_ids, attention_mask=attention_mask,
                                position_ids=rollout.position_ids(attention_mask), use_cache=False,
                                logits_to_keep=input_ids.shape[1] - P + 1).logits
        return core.logprobs_from_logits(logits[:, :-1], batch.response_ids[rows],
                                         rollout.sampling(batch, rows, self.cfg.temperature, self.cfg.repetition_penalty))

    def _update(self, batch, old_logprobs, old_values, advantages, returns, mask, is_weights=None) -> dict[str, float]:
        cfg, acc = self.cfg, self.accelerator
        self.model.train()
        stats: dict[str, list[float]] = defaultdict(list)
        gen = torch.Generator().manual_seed(cfg.seed * 7919 + self.step * 31 + self.rank)
        epochs_done = 0
        for _epoch in range(cfg.ppo_epochs):
            epoch_kl = []
            for mb in torch.randperm(len(batch), generator=gen).split(cfg.mini_batch_size):
                logprobs, values, entropy = self._forward(batch, mb, with_entropy=True)
                m = mask[mb]
                pg_loss, pg_stats = core.policy_loss(logprobs, old_logprobs[mb], advantages[mb], m, cfg.cliprange,
                                                     None if is_weights is None else is_weights[mb])
                vf_loss, vf_stats = core.value_loss(values, old_values[mb], returns[mb], m, cfg.cliprange_value)
                mean_entropy = core.masked_mean(entropy, m)
                loss = pg_loss + cfg.vf_coef * vf_loss - cfg.ent_coef * mean_entropy
                acc.backward(loss)
                grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.prepared_optimizer.step()
                self.prepared_optimizer.zero_grad()
                for k, v in {"loss/policy": pg_loss, "loss/value": vf_loss, "entropy": mean_entropy, **pg_stats,
                             **vf_stats}.items():
                    stats[k].append(float(v.detach()) if isinstance(v, torch.Tensor) else float(v))
                if grad_norm is not None:
                    stats["grad_norm"].append(float(grad_norm))
                epoch_kl.append(float(pg_stats["approx_kl"]))
            epochs_done += 1
            # Early stop, decided on the global mean so every rank runs the same number of epochs.
            if cfg.target_kl is not None and self.global_mean(epoch_kl) > 1.5 * cfg.target_kl:
                break
        self.model.eval()
        out = {k: self.global_mean(v) for k, v in stats.items()}
        out["ppo_epochs_done"] = epochs_done
        return out

    # -- checkpoints
    def save_checkpoint(self) -> Path:
        acc = self.accelerator
        final = self.out / f"checkpoint-{self.step}"
        tmp = self.out / f"checkpoint-{self.step}.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=False)  # model/adapter, value head, optimizer, RNG per rank
        acc.wait_for_everyone()
        if acc.is_main_process:
            state = {"step": self.step, "kl_ctl": self.kl_ctl.state_dict(), "scorer": self.scorer.state_dict(),
                     "world_size": self.world, "seed": self.cfg.seed}
            self.identity.write(tmp)
            with atomic_write(tmp / STATE_FILE) as fh:
                json.dump(state, fh, indent=2)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            self._rotate_checkpoints()
        acc.wait_for_everyone()
        return final

    def _rotate_checkpoints(self) -> None:
        done = sorted((int(m.group(1)), p) for p in self.out.iterdir() if (m := CHECKPOINT_RE.match(p.name)))
        for _, path in done[: max(0, len(done) - self.cfg.save_total_limit)]:
            shutil.rmtree(path, ignore_errors=True)

    def load_checkpoint(self, path: Path) -> None:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        self.accelerator.load_state(str(path))
        self.step = int(state["step"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        self.scorer.load_state_dict(state["scorer"])

    # -- logging
    def _log(self, metrics: dict[str, Any]) -> None:
        if not self.accelerator.is_main_process:
            return
        append_jsonl(self.out / "metrics.jsonl", [metrics], fsync=False)
        if self.writer is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.writer.add_scalar(k, v, metrics["step"])
        if metrics["step"] % self.cfg.sample_steps == 0 or metrics["step"] == 1:
            from medqa.text.think import split_think

            questions, texts, parts = self._samples
            rows = [{"step": metrics["step"], "question": q, "think": split_think(t).think,
                     "answer": split_think(t).answer, "reward": p}
                    for q, t, p in list(zip(questions, texts, parts, strict=True))[: self.cfg.samples_per_log]]
            append_jsonl(self.out / "samples.jsonl", rows, fsync=False)

    def _claim_output(self, resume: bool) -> tuple[str | None, int | None]:
        """Rank 0: lock OUT for this run, claim it (medqa/runs/checkpoints.py: never the SFT model or a folder of
        another command; an earlier run not resumed is moved aside), trim the logs to the resumed step. Returns
        (the checkpoint to resume or None, the last step of this run already finished in OUT or None)."""
        from medqa.models.loading import resolve_model_paths

        self.lock = OutputLock(self.out, "ppo").acquire()
        try:
            base, adapter = resolve_model_paths(self.model_args.model_name_or_path)
            run = prepare_run_dir(self.out, self.identity, complete_marker=STATE_FILE,
                                  inputs=[self.model_args.model_name_or_path, base, adapter, self.cfg.prompts_file],
                                  resume="auto" if resume else "no", overwrite=self.cfg.overwrite,
                                  log=lambda msg: print(msg, flush=True), length=self.length)
            if run.finished is not None:
                return None, run.finished
            trim_logs(self.out, run.step)
            from medqa.models.generation import write_rollout_decoding
            from medqa.rewards import write_run_reward

            write_rollout_decoding(self.out, "ppo", vars(self.cfg))  # `--decoding-from OUT` evaluates the same way
            write_run_reward(self.out, self.cfg.reward, self.cfg)  # and scores the same
        except BaseException:
            self.lock.release()
            raise
        return (str(run.resume_from) if run.resume_from else None), None

    # -- the run
    def train(self, resume: bool | None = None) -> dict[str, Any]:
        cfg, acc = self.cfg, self.accelerator
        resume = cfg.auto_resume if resume is None else resume
        found, finished = rank0_decides(lambda: self._claim_output(resume), acc.is_main_process)
        try:
            if finished is not None:  # OUT holds this run, finished: nothing to train (said in one line)
                self._close_teacher()
                return self._finished_summary(finished)
            return self._train(Path(found) if found else None)
        finally:
            if self.lock is not None:
                self.lock.release()

    def _close_teacher(self) -> None:
        if self.teacher is not None:
            self.teacher.close()
            self.teacher_setup.close()
            self.teacher = self.teacher_setup = None

    def _finished_summary(self, step: int) -> dict[str, Any]:
        try:
            summary = json.loads((self.out / "ppo_summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = {}
        return {**(summary if isinstance(summary, dict) else {}), "already_finished": step}

    def _train(self, checkpoint: Path | None) -> dict[str, Any]:
        cfg, acc = self.cfg, self.accelerator
        if checkpoint is not None:
            self.load_checkpoint(checkpoint)
            if acc.is_main_process:
                print(f"ppo: resuming from {checkpoint} (step {self.step})", flush=True)
        if acc.is_main_process and cfg.report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "runs"))
        bar = None
        if acc.is_main_process and cfg.progress_bar:
            from tqdm import tqdm

            bar = tqdm(total=cfg.total_steps, initial=self.step, desc="ppo", dynamic_ncols=True)
        started, history, timings = time.perf_counter(), [], []
        stop_file, stopped_at = stop_file_from_env(), None  # MEDQA_STOP_FILE: medqa/runs/preemption.py
        try:
            while self.step < cfg.total_steps:
                try:
                    metrics = self.ppo_step()
                except EngineUnavailable:
                    # Every rank raised it before this step changed anything (`_agree`): the checkpoint is this step's
                    # start, so the rerun resumes exactly here.
                    if cfg.save_steps and self.step > 0 and not (self.out / f"checkpoint-{self.step}").is_dir():
                        self.save_checkpoint()
                    raise
                self.step += 1
                self._log(metrics)
                history.append({k: metrics[k] for k in ("step", "reward", "kl")})
                timings.append({k[len("time/"):-len("_s")]: v for k, v in metrics.items() if k.startswith("time/")})
                timings[-1]["rollout_tokens"] = metrics["response_length"] * cfg.batch_size  # per process
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(reward=f"{metrics['reward']:.3f}", kl=f"{metrics['kl']:.3f}")
                saved = bool(cfg.save_steps and (self.step % cfg.save_steps == 0 or self.step == cfg.total_steps))
                if saved:
                    self.save_checkpoint()
                if stop_file is not None and any_rank(stop_file.exists()):  # every rank agrees on the same step
                    if not saved:
                        self.save_checkpoint()
                    stopped_at = self.step
                    if acc.is_main_process:
                        print(f"ppo: stop requested ({stop_file}): checkpoint at step {self.step}, stopping",
                              flush=True)
                    break
            if stopped_at is None:
                self.save_final()
        finally:
            if bar is not None:
                bar.close()
            if self.writer is not None:
                self.writer.close()
            self._close_teacher()
        summary = {"steps": self.step, "resumed_from": str(checkpoint) if checkpoint else None,
                   "num_processes": self.world, "wall_s": round(time.perf_counter() - started, 2),
                   "stopped_at": stopped_at, "policy_digest_per_rank": self.policy_digests(), "curve": history,
                   **step_split(timings), "peak_memory_gib": peak_memory_gib(),
                   "peak_rss_gib": peak_rss_gib()}
        if acc.is_main_process:
            with atomic_write(self.out / "ppo_summary.json") as fh:
                json.dump(summary, fh, indent=2)
            if stopped_at is None:  # finished: running it again is a no-op
                finish_run_dir(self.out, "ppo", self.identity, self.step, self.length)
            else:
                finish_run_dir(self.out, "ppo")
        return summary

    def policy_digests(self) -> list[float]:
        """Each rank's sum of the trainable weights (ZeRO-3 shards gathered): equal when the ranks agree."""
        from trl.models.utils import unwrap_model_for_generation

        with unwrap_model_for_generation(self.model, self.accelerator) as unwrapped, torch.no_grad():
            digest = sum(float(p.double().sum()) for p in unwrapped.parameters() if p.requires_grad)
        if self.world == 1:
            return [digest]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, digest)
        return out

    def _save_policy(self, folder: Path, state: dict) -> None:
        """The policy (its trainable adapter, or the full model) from a gathered state dict, into `folder`. An
        adapter never carries the base's embedding layers: PPO never trains them, a vLLM server refuses them
        ("lm_head.weight is unsupported LoRA weight"), and PEFT's "auto" adds them whenever the vocabulary looks
        resized."""
        policy_state = {k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}
        save_kwargs = ({"selected_adapters": ["default"], "save_embedding_layers": False}
                       if hasattr(self.unwrapped.policy, "peft_config") else {})
        self.unwrapped.policy.save_pretrained(folder, state_dict=policy_state, **save_kwargs)

    def save_final(self) -> None:
        """The policy as `make eval` / `medqa predict --model OUT` load it (adapter or full model) + tokenizer +
        value head; files are written to a temp folder and moved in, so OUT never holds a half-written model."""
        acc = self.accelerator
        state = acc.get_state_dict(self.model)  # gathers ZeRO-3 shards (collective)
        if acc.is_main_process:
            tmp = self.out / ".final.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            self._save_policy(tmp, state)
            self.tokenizer.save_pretrained(tmp)
            torch.save({k.removeprefix("v_head."): v for k, v in state.items() if k.startswith("v_head.")},
                       tmp / VALUE_HEAD_FILE)
            for item in tmp.iterdir():
                os.replace(item, self.out / item.name)
            tmp.rmdir()
            plot_curves(self.out / "metrics.jsonl", self.out / "reward_kl.png")
        acc.wait_for_everyone()


def step_split(timings: list[dict[str, float]]) -> dict[str, Any]:
    """Mean seconds per step of each timed phase after the first (warm-up) step of this process, and the rollout
    tokens (response tokens up to EOS) generated per second of generation and process over the same steps."""
    tokens = [t.pop("rollout_tokens") for t in timings]
    split = split_after_warmup(timings)
    gen_s = sum(t["generate"] for t in timings[1:])
    split["rollout_tokens_per_s"] = round(sum(tokens[1:]) / gen_s, 1) if gen_s > 0 else None
    return split


def plot_curves(metrics_path: Path, png: Path) -> None:
    """Reward and KL per step, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for _, row in iter_jsonl(metrics_path, tolerant=True)] if metrics_path.exists() else []
    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5))
    a.plot(steps, [r["reward"] for r in rows], marker=".")
    a.set(title="mean reward", xlabel="step")
    b.plot(steps, [r["kl"] for r in rows], marker=".", color="tab:red")
    b.set(title="KL(policy ‖ reference) per sequence", xlabel="step")
    fig.tight_layout()
    with atomic_write(png, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)


def main(model_args: PPOModelArguments, cfg: PPOConfig, teacher_args: TeacherArgs) -> dict[str, Any]:
    trainer = PPOTrainer(model_args, cfg, teacher_args)
    summary = trainer.train()
    trainer.accelerator.wait_for_everyone()  # every rank has written everything; scripts/ppo.py then ends the process
    return summary
