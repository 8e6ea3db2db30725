"""Checkpoint and stop on request, so a job about to hit its time limit (or be preempted) loses no work.

A scheduler cannot signal the training processes alone: they sit under make, `accelerate launch` and torchrun,
which a signal would kill. So the request is a file: `MEDQA_STOP_FILE` names it (the Slurm templates set it and
create it when Slurm sends USR1 before the time limit). After every optimizer step each rank looks for the file and
the ranks agree (one all-reduce of a flag), so all of them save the same checkpoint and stop at the same step;
the next attempt resumes from that checkpoint.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

STOP_FILE_ENV = "MEDQA_STOP_FILE"


def stop_file_from_env() -> Path | None:
    value = os.environ.get(STOP_FILE_ENV)
    return Path(value) if value else None


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is True on at least one (a no-op without a process group)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class StopFileCallback(TrainerCallback):
    """Save a checkpoint and stop training at the first step end after `path` appears."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if any_rank(self.path.exists()):
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
            if state.is_world_process_zero:
                logger.warning("stop requested (%s): checkpoint at step %d, then stop", self.path, state.global_step)
        return control
