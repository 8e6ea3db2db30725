"""Launching the training stages: which accelerate config a run uses, and the stage entry points.

`accelerate_config` is the launcher choice of `make sft-* / ppo / grpo / slurm-*` (PROFILE=, ACCEL=, the mode's
default), printed for the Makefile by `medqa launch-config`. `sft`, `grpo` and `ppo` are what `scripts/*.py` run under
`accelerate launch` and what `medqa sft|grpo|ppo` run in one process: parse the recipe and flags, train, and turn
a bad input into exit status 2 with one line naming it.

Stdlib only at import time: `make` runs `launch-config` with the system Python, before `make setup`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

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
    return 0


def _fail(stage: str, error: BaseException, status: int = 2, prefix: str = "") -> int:
    print(f"{stage}: {prefix}{error}", file=sys.stderr)
    return status


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    """The errors a stage reports in one line with status 2: a bad input, an output it may not write, a checkpoint
    it may not resume, a rank-0 decision the other ranks received."""
    from medqa.checkpoints import ResumeError
    from medqa.io import InputError, OutputError
    from medqa.preemption import RankZeroError
    from medqa.teacher.setup import TeacherSetupError

    return (InputError, FileNotFoundError, OutputError, ResumeError, RankZeroError, TeacherSetupError)


def _start() -> None:
    """Under a launcher, a rank exits when its launcher dies (killing make or accelerate stops training)."""
    from medqa.preemption import exit_with_launcher

    exit_with_launcher()


def _run_stage(stage: str, parse_args, load_main, argv: list[str]) -> int:
    """Parse the recipe and flags, then train: 2 with one line for a bad input, output or checkpoint, 3 when the
    teacher stopped answering (`medqa.rewards.TeacherStopRule`)."""
    from medqa.rewards import TEACHER_UNAVAILABLE_EXIT, TeacherUnavailable

    _start()
    try:
        args = parse_args(argv)
    except (ValueError, FileNotFoundError) as e:
        return _fail(stage, e)
    try:
        load_main()(*args)
    except _bad_input_errors() as e:
        return _fail(stage, e)
    except TeacherUnavailable as e:
        return _fail(stage, e, status=TEACHER_UNAVAILABLE_EXIT, prefix="stopped: ")
    return 0


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
        os._exit(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(launch_config_main())
