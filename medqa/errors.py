"""The exit status of every `medqa` command, in one map.

Every command's `main` returns one of these (and `python -m medqa.…`, `scripts/*.py` and `accelerate launch`
through `medqa.commands.launch` pass it on unchanged), so a shell, `make`, Slurm or a test reads the same number for
the same outcome whichever command ran:

| code | name | meaning |
|---|---|---|
| 0 | `OK` | done (an item already done and skipped counts as done) |
| 1 | `FAILED` | the command ran, but part of its work failed: items the teacher could not score, a benchmark or a check that failed, a demo stage that exited non-zero, a document out of date |
| 2 | `BAD_INPUT` | a bad input, flag, recipe, model path, output folder or checkpoint: one line naming it, nothing (more) written; argparse's usage errors exit 2 too |
| 3 | `STOPPED` | a service the run samples or scores with stopped answering (the teacher, `medqa.rewards.TeacherStopRule`; the vLLM rollout server, `medqa.engine.EngineUnavailable`): the run checkpointed and resumes when rerun |
| 143 | `INTERRUPTED` | 128 + SIGTERM: stopped from outside (the demo on SIGTERM, a training rank whose launcher is gone); rerunning goes on |

A rank that dies of a signal under `accelerate launch` is reported as 128 + the signal's number (the shell's rule),
so SIGTERM reads 143 there too. Stdlib only: `make` imports medqa with the system Python before `make setup`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    BAD_INPUT = 2
    STOPPED = 3
    INTERRUPTED = 143  # 128 + SIGTERM (15)


def signal_exit_code(signum: int) -> int:
    """The status of a process ended by signal `signum`, as a shell reports it: 128 + the signal's number."""
    return 128 + signum


__all__ = ["ExitCode", "signal_exit_code"]
