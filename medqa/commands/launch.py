"""Launching the training stages: which accelerate config a run uses, and the stage entry points.

`accelerate_config` is the launcher choice of `make sft-* / ppo / grpo / slurm-*` (PROFILE=, ACCEL=, the mode's
default), printed for the Makefile by `medqa launch-config`. `sft`, `grpo` and `ppo` are what `scripts/*.py` run under
`accelerate launch` and what `medqa sft|grpo|ppo` run in one process: parse the recipe and flags, train, and turn
a bad input into exit status 2 with one line naming it.

Stdlib only at import time: `make` runs `launch-config` with the system Python, before `make setup`.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import shutil
import sys
from pathlib import Path

from medqa.errors import ExitCode, signal_exit_code

ACCEL_DIR = "accelerate_configs"
CPU_PROFILE = "cpu"


def accelerate_config(profile: str, accel: str | None, default: str) -> str:
    """The accelerate config file of a run.

    `accel` naming a .yaml file is used as is. Under the cpu profile every launcher is a CPU one: `cpu.yaml`
    (DDP; also `accel` cpu or ddp) or `cpu_<accel>.yaml` (zero2, zero3). Elsewhere `accel` or the mode's `default`
    names `accelerate_configs/<name>.yaml`."""
    accel = (accel or "").strip()
    if accel.endswith(".yaml"):
        return accel
    if profile == CPU_PROFILE:
        name = f"cpu_{accel}" if accel and accel not in ("cpu", "ddp") else "cpu"
    else:
        name = accel or default
    return f"{ACCEL_DIR}/{name}.yaml"


def launch_config_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="medqa launch-config", description="print the accelerate config a run uses")
    p.add_argument("--profile", default="gpu", help="hardware profile (gpu, cpu, 8gb, …)")
    p.add_argument("--accel", default="", help="ACCEL=: a config name or a .yaml path; empty: the mode's default")
    p.add_argument("--default", required=True, help="the mode's launcher on GPUs (single_gpu, zero2, zero3, …)")
    args = p.parse_args(argv)
    print(accelerate_config(args.profile, args.accel, args.default))
    return ExitCode.OK


# The file where a rank under `medqa.commands.launch launch` appends its one-line error, for the launcher to print it last.
RANK_ERRORS_ENV = "MEDQA_RANK_ERRORS"


def _fail(stage: str, error: BaseException | str, status: int = ExitCode.BAD_INPUT, prefix: str = "") -> int:
    line = f"{stage}: {prefix}{error}"
    print(line, file=sys.stderr)
    errors = os.environ.get(RANK_ERRORS_ENV)
    if errors:
        try:
            with open(errors, "a", encoding="utf-8") as fh:
                fh.write(line.replace("\n", " ") + "\n")
        except OSError:
            pass  # the line is on stderr already
    return status


# ---------------------------------------------------------------- a full disk

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_DISK_FULL_TEXT = ("no space left on device", "storagefull", "disk quota exceeded")
# What torch.save and safetensors say when a write fails without naming why (a full disk, most of the time).
_WRITE_FAILED_TEXT = ("iostream error", "file write failed", "failed writing file")
LOW_SPACE_BYTES = 256 * 2**20


def _output_dir(args: tuple) -> Path | None:
    for a in args:
        out = getattr(a, "output_dir", None)
        if out:
            return Path(out)
    return None


def _disk_full(error: BaseException, out: Path | None) -> bool:
    """`error` (or what caused it) is a write that failed for want of space: ENOSPC / EDQUOT, or a write failure
    that names no reason while OUT's file system has under LOW_SPACE_BYTES left."""
    seen, e, vague = set(), error, False
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = str(e).lower()
        if (isinstance(e, OSError) and e.errno in _DISK_FULL_ERRNOS) or any(t in text for t in _DISK_FULL_TEXT):
            return True
        vague = vague or any(t in text for t in _WRITE_FAILED_TEXT)
        e = e.__cause__ or e.__context__
    return vague and out is not None and _free_bytes(out) < LOW_SPACE_BYTES


def _free_bytes(out: Path) -> int:
    p = out
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return 0


def _disk_full_message(stage: str, out: Path) -> str:
    """Where the run stands after a full disk: the checkpoint OUT keeps (a torn newer one, this run's own, is
    removed to give the space back), and how to go on."""
    from medqa.runs.checkpoints import CHECKPOINT_RE, HF_STATE, checkpoints

    marker = HF_STATE
    if stage == "ppo":
        from medqa.train.ppo.trainer import STATE_FILE as marker
    complete = checkpoints(out, marker) if out.is_dir() else []
    kept = complete[-1] if complete else None
    torn = []
    from medqa.runs.io import read_manifest

    # only in a folder this stage claimed (its manifest): never a checkpoint-N folder medqa did not write
    if os.environ.get("RANK", "0") == "0" and out.is_dir() and read_manifest(out).get("kind") == stage:
        for child in sorted(out.iterdir()):
            m = CHECKPOINT_RE.match(child.name)
            if m and child.is_dir() and (kept is None or int(m.group(1)) > kept[0]):
                shutil.rmtree(child, ignore_errors=True)
                torn.append(child.name)
    free = _free_bytes(out) / 2**20
    where = f"{out} is kept at {kept[1].name}" if kept else f"{out} has no complete checkpoint yet"
    removed = f" (removed the torn {', '.join(torn)})" if torn else ""
    return (f"no space left on device while writing {out} ({free:.0f} MiB free now); {where}{removed}; free some "
            "space and rerun the same command to resume")


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    """The errors a stage reports in one line with status 2: a bad input, an output it may not write, a checkpoint
    it may not resume, a rank-0 decision the other ranks received."""
    from medqa.runs.checkpoints import ResumeError
    from medqa.runs.io import InputError, OutputError
    from medqa.runs.preemption import RankZeroError
    from medqa.teacher.setup import TeacherSetupError

    return (InputError, FileNotFoundError, OutputError, ResumeError, RankZeroError, TeacherSetupError)


def _start() -> None:
    """Under a launcher, a rank exits when its launcher dies (killing make or accelerate stops training)."""
    from medqa.runs.preemption import exit_with_launcher

    exit_with_launcher()


def _run_stage(stage: str, parse_args, load_main, argv: list[str]) -> int:
    """Parse the recipe and flags, then train: `ExitCode.BAD_INPUT` (2) with one line for a bad input, output or
    checkpoint, `ExitCode.STOPPED` (3) when a service the run samples or scores with stopped answering (the teacher,
    `medqa.rewards.TeacherStopRule`, or the vLLM rollout server, `medqa.engine.EngineUnavailable`); the run resumes
    from its last checkpoint."""
    from medqa.engine import EngineUnavailable
    from medqa.rewards import TeacherUnavailable

    _start()
    try:
        args = parse_args(argv)
    except (ValueError, FileNotFoundError) as e:
        return _fail(stage, e)
    try:
        load_main()(*args)
    except _bad_input_errors() as e:
        return _fail(stage, e)
    except (TeacherUnavailable, EngineUnavailable) as e:
        return _fail(stage, e, status=ExitCode.STOPPED, prefix="stopped: ")
    except (OSError, RuntimeError) as e:
        out = _output_dir(args)
        if out is None or not _disk_full(e, out):
            raise
        return _fail(stage, _disk_full_message(stage, out))
    return ExitCode.OK


def sft(argv: list[str]) -> int:
    """SFT from `--config RECIPE` and flags (medqa/train/sft.py)."""
    from medqa.train.sft import main, parse_args

    return _run_stage("sft", parse_args, lambda: main, argv)


def grpo(argv: list[str]) -> int:
    """GRPO from `--config RECIPE` and flags (medqa/train/grpo.py)."""
    from medqa.train.grpo import main, parse_args

    return _run_stage("grpo", parse_args, lambda: main, argv)


def ppo(argv: list[str]) -> int:
    """PPO from `--config RECIPE` and flags (medqa/train/ppo/); the trainer is imported after the flags parse."""
    from medqa.train.ppo.config import parse_args

    def trainer_main():
        from medqa.train.ppo.trainer import main

        return main

    status = _run_stage("ppo", parse_args, trainer_main, argv)
    if status:
        return status
    # Every rank has passed main's last barrier with its outputs written and synced. A multi-process run ends here
    # without the interpreter's teardown: tearing down the distributed backends' C++ objects (gloo groups,
    # DeepSpeed's shared-memory op) after a finished run now and then met a still-joinable thread and aborted a rank
    # with SIGABRT ("terminate called without an active exception"), failing a run whose outputs were complete.
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(ExitCode.OK)
    return ExitCode.OK


# ---------------------------------------------------------------- the launcher, with the ranks' errors last


def accelerate_launch(argv: list[str]) -> int:
    """`accelerate launch ARGV` in this process (what `$(ACCELERATE) launch` runs in the Makefile), with a rank's
    failure reported as the rank's own one-line error, printed last, and the rank's exit status (`ExitCode`: 2 a bad
    input or output, 3 the teacher or the vLLM server stopped answering; 128 + N for a rank killed by signal N) instead of torch's ChildFailedError traceback and status 1."""
    import subprocess
    import tempfile

    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    fd, errors = tempfile.mkstemp(prefix="medqa-rank-errors-", suffix=".txt")
    os.close(fd)
    os.environ[RANK_ERRORS_ENV] = errors  # the ranks inherit it
    status = ExitCode.OK
    try:
        launch_command(launch_command_parser().parse_args(argv))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        status = failure.exitcode if failure.exitcode > 0 else signal_exit_code(-failure.exitcode)
        failed = f"rank {rank} exited with status {failure.exitcode}"
    except subprocess.CalledProcessError as e:
        status = e.returncode if e.returncode > 0 else signal_exit_code(-e.returncode)
        failed = f"the process exited with status {e.returncode}"
    finally:
        with open(errors, encoding="utf-8", errors="replace") as fh:
            lines = list(dict.fromkeys(line.rstrip("\n") for line in fh if line.strip()))
        os.unlink(errors)
    if status:
        sys.stderr.flush()
        # the ranks' own lines, last, so the cause is the last thing on screen
        print("\n".join(lines) if lines else f"medqa: {failed}; its error is above", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    if sys.argv[1:2] == ["launch"]:
        raise SystemExit(accelerate_launch(sys.argv[2:]))
    raise SystemExit(launch_config_main())
