"""Training throughput after the warm-up window, from the trainer's own token count.

The first logging window of a run pays one-time costs (CUDA context and kernel selection, allocator growth,
DeepSpeed/bitsandbytes set-up, the first batch's data loading), so tokens/s over the whole runtime understates
steady-state speed. `ThroughputMeter` marks the wall clock and TRL's cumulative `num_tokens` (all processes) at
every training log; the rate is taken between the first mark (the end of the warm-up window) and the last.
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


class ThroughputMeter(TrainerCallback):
    """Marks (step, time, tokens) at each training log that carries TRL's `num_tokens`."""

    def __init__(self) -> None:
        self.marks: list[Mark] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and "num_tokens" in logs:  # training logs only; eval keys are prefixed
            self.marks.append((state.global_step, time.perf_counter(), int(logs["num_tokens"])))

    def summary(self) -> dict:
        return rate_after_warmup(self.marks)
