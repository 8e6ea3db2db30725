"""Training throughput and step timings after the warm-up window, and the process's peak GPU and resident memory.

The first logging window of a run pays one-time costs (CUDA context and kernel selection, allocator growth,
DeepSpeed/bitsandbytes set-up, the first batch's data loading), so tokens/s over the whole runtime understates
steady-state speed. `ThroughputMeter` marks the wall clock and TRL's cumulative `num_tokens` (all processes) at
every training log; the rate is taken between the first mark (the end of the warm-up window) and the last.
`split_after_warmup` does the same for a loop that times its phases per step (PPO): mean seconds per phase over
the steps after the warm-up ones. `peak_memory_gib` (GPU) and `peak_rss_gib` (the process) are what the summaries
report as peak memory.
"""

from __future__ import annotations

import time

from transformers import TrainerCallback

Mark = tuple[int, float, int]  # (global step, perf_counter seconds, cumulative tokens)


def rate_after_warmup(marks: list[Mark]) -> dict:
    """Tokens/s between the first and the last mark; None (and measured_steps 0) with fewer than two marks."""
    if len(marks) < 2:
        return {"tokens_per_s_after_warmup": None, "warmup_steps": marks[0][0] if marks else None,
                "measured_steps": 0, "measured_tokens": 0, "measured_s": 0.0}
    (step0, t0, tokens0), (step1, t1, tokens1) = marks[0], marks[-1]
    seconds = t1 - t0
    return {
        "tokens_per_s_after_warmup": round((tokens1 - tokens0) / seconds, 1) if seconds > 0 else None,
        "warmup_steps": step0,
        "measured_steps": step1 - step0,
        "measured_tokens": tokens1 - tokens0,
        "measured_s": round(seconds, 3),
    }


def split_after_warmup(steps: list[dict[str, float]], warmup: int = 1) -> dict:
    """Mean seconds per step of each phase (keys in first-seen order) over `steps[warmup:]`, one dict of
    phase -> seconds per step; `step_split_s` is None when no step is left after the warm-up."""
    measured = steps[warmup:]
    phases = list(dict.fromkeys(k for step in measured for k in step))
    split = {k: round(sum(step.get(k, 0.0) for step in measured) / len(measured), 4) for k in phases} if measured else None
    return {"warmup_steps": min(warmup, len(steps)), "measured_steps": len(measured), "step_split_s": split}


def peak_memory_gib() -> float | None:
    """`torch.cuda.max_memory_allocated()` of this process in GiB (3 decimals): weights, gradients, optimizer
    states and activations, without the CUDA context or allocator slack; None without CUDA."""
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None


def peak_rss_gib() -> float | None:
    """This process's peak resident set size in GiB (3 decimals; `ru_maxrss`, KiB on Linux): on CPU, everything the
    process held at its fullest — weights, optimizer state, activations, the framework itself. None where the
    platform has no `resource` module."""
    try:
        import resource
    except ImportError:
        return None
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


class ThroughputMeter(TrainerCallback):
    """Marks (step, time, tokens) at each training log that carries TRL's `num_tokens`."""

    def __init__(self) -> None:
        self.marks: list[Mark] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and "num_tokens" in logs:  # training logs only; eval keys are prefixed
            self.marks.append((state.global_step, time.perf_counter(), int(logs["num_tokens"])))

    def summary(self) -> dict:
        return rate_after_warmup(self.marks)
