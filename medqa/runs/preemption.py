"""Checkpoint and stop on request, so a job about to hit its time limit (or be preempted) loses no work.

A scheduler cannot signal the training processes alone: they sit under make, `accelerate launch` and torchrun,
which a signal would kill. So the request is a file: `MEDQA_STOP_FILE` names it (the Slurm templates set it and
create it when Slurm sends USR1 before the time limit). After every optimizer step each rank looks for the file and
the ranks agree (one all-reduce of a flag), so all of them save the same checkpoint and stop at the same step;
the next attempt resumes from that checkpoint.

The other way round, the ranks stop when their launcher is killed (`exit_with_launcher`: torchrun starts each rank
in a session of its own, out of reach of a signal to make's process group), and rank 0 takes the decisions about
the output folder for all ranks (`rank0_decides`).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from transformers import TrainerCallback

from medqa.errors import ExitCode

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


def rank0_decides(decide, is_main: bool):
    """Run `decide()` on rank 0 only and hand its result to every rank; an error raised there is raised on every
    rank with the same message (so no rank waits at a barrier for a rank that gave up)."""
    import torch.distributed as dist

    result, error = None, None
    if is_main:
        try:
            result = decide()
        except Exception as e:  # re-raised below, after the other ranks have heard of it
            error = e
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        if error is not None:
            raise error
        return result
    box = [(result, None if error is None else (type(error).__name__, str(error)))]
    dist.broadcast_object_list(box, src=0)
    if is_main and error is not None:
        raise error
    result, failure = box[0]
    if failure is not None:
        raise RankZeroError(failure[1])
    return result


class RankZeroError(ValueError):
    """Rank 0 refused to start the run (its one-line message)."""


# ---------------------------------------------------------------- the launcher owns its ranks

PARENT_POLL_S = 1.0


def exit_with_launcher(poll_s: float = PARENT_POLL_S) -> bool:
    """Under a launcher (`accelerate launch`, torchrun: LOCAL_RANK or ACCELERATE_* in the environment), end this
    process as soon as its parent process is gone, so killing make or the launcher (even with SIGKILL) stops the
    training ranks instead of leaving them running to the end. A daemon thread watches the parent pid; returns
    whether it is watching. Not under a launcher (a plain `python scripts/…`), nothing changes: nohup keeps working."""
    import threading

    launched = "LOCAL_RANK" in os.environ or any(k.startswith("ACCELERATE_") for k in os.environ)
    if not launched:
        return False
    parent = os.getppid()

    def watch():
        while True:
            if os.getppid() != parent:
                os.write(2, f"medqa: the launcher (pid {parent}) is gone; rank pid {os.getpid()} stops\n".encode())
                os._exit(ExitCode.INTERRUPTED)
            time.sleep(poll_s)

    threading.Thread(target=watch, name="medqa-exit-with-launcher", daemon=True).start()
    return True
