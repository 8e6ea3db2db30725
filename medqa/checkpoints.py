"""Run folders of the training stages (SFT, GRPO, PPO): claiming the folder, finding the checkpoint to resume,
refusing another run's checkpoint, moving an old run aside, and trimming the logs to the resumed step.

A run folder is claimed by its manifest (`medqa.io.MANIFEST`, `kind` = the stage). Every checkpoint holds
`RUN_RECORD`: the stage, the run key (a hash of the settings that shape the run: model, data, seed, batch, …) with
those settings, and the number of processes. A checkpoint is resumed only when all three match this run; a
mismatch is a one-line `ResumeError` naming what differs. Without a checkpoint to resume, a folder holding an
earlier run is moved aside (`OUT.prev-<time>`), never mixed with the new one.
"""

from __future__ import annotations

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

from medqa.io import (
    MANIFEST,
    OutputError,
    atomic_write,
    check_output_dir,
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
               "reward_kl.png", "rollout_decoding.json")


@dataclass
class RunFolderArguments:
    """The run-folder options of every training stage (SFT, GRPO, PPO), a base of each stage's config dataclass."""

    auto_resume: bool = field(default=True, metadata={
        "help": "resume from the newest complete checkpoint of this run in output_dir, if any (false: move an "
                "earlier run aside)"})
    overwrite: bool = field(default=False, metadata={
        "help": "output_dir holds files this stage did not write: move them aside and start fresh"})


class ResumeError(ValueError):
    """A checkpoint that this run must not resume (one line: what differs and what to do)."""


@dataclass(frozen=True)
class RunIdentity:
    """What a checkpoint must match to be resumed: the stage, the settings that shape the run, the world size."""

    stage: str
    settings: Mapping[str, Any]
    world_size: int
    key: str = field(init=False)

    def __post_init__(self):
        canon = {k: _canonical(v) for k, v in sorted(self.settings.items())}
        object.__setattr__(self, "settings", canon)
        digest = hashlib.sha256(json.dumps([self.stage, canon], sort_keys=True).encode("utf-8")).hexdigest()
        object.__setattr__(self, "key", digest[:16])

    def record(self) -> dict[str, Any]:
        return {"stage": self.stage, "key": self.key, "world_size": self.world_size, "settings": dict(self.settings)}

    def write(self, checkpoint: str | os.PathLike) -> None:
        with atomic_write(Path(checkpoint) / RUN_RECORD) as fh:
            json.dump(self.record(), fh, indent=1)

    def mismatch(self, checkpoint: Path) -> str | None:
        """Why `checkpoint` is not a checkpoint of this run, or None."""
        try:
            rec = json.loads((checkpoint / RUN_RECORD).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return f"it has no {RUN_RECORD} (not a checkpoint of a medqa {self.stage} run)"
        if rec.get("stage") != self.stage:
            return f"it is a {rec.get('stage')} checkpoint, this is a {self.stage} run"
        if rec.get("world_size") != self.world_size:
            return f"it was written by {rec.get('world_size')} processes, this run has {self.world_size}"
        if rec.get("key") != self.key:
            old = rec.get("settings") or {}
            diff = [f"{k}={old.get(k)!r} there, {v!r} here" for k, v in self.settings.items() if old.get(k) != v]
            return "its settings differ (" + ("; ".join(diff[:4]) or "run key") + ")"
        return None


def _canonical(value: Any) -> Any:
    """Settings as JSON values; existing paths absolute, so `out` and `./out` are the same run."""
    if isinstance(value, os.PathLike) or (isinstance(value, str) and value and os.path.exists(value)):
        return str(Path(value).resolve())
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


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
                    log: Callable[[str], None] | None = None) -> RunDir:
    """Claim the folder `out` for a run of `identity.stage` and decide where it starts (rank 0 only).

    `resume`: "auto" resumes the newest complete checkpoint when there is one, "require" fails without one, "no"
    starts fresh; `requested` is an explicit checkpoint folder. A folder holding anything but this stage's own
    outputs is refused (OutputError) unless `overwrite`; never an input (the model trained from, the data). A
    folder holding an earlier run that is not resumed is moved aside and reported through `log`."""
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
    found = newest_checkpoint(out, complete_marker) if occupied and resume != "no" and requested is None else None
    if found is not None:
        _check_identity(identity, found)
    if resume == "require" and requested is None and found is None:
        raise ResumeError(f"asked to resume, but {out} has no complete {identity.stage} checkpoint")
    if occupied and found is None and requested is None:
        aside = move_aside(out)
        say(f"{identity.stage}: a fresh run: moved the earlier run in {out} to {aside}")
    output_path(out).mkdir(parents=True, exist_ok=True)
    entries = set(RUN_ENTRIES) | (own_entries(out) - {MANIFEST})
    write_manifest(out, identity.stage, entries, manifest_files(out))
    return RunDir(out, Path(requested) if requested is not None else found, aside)


def _check_identity(identity: RunIdentity, checkpoint: Path) -> None:
    why = identity.mismatch(checkpoint)
    if why is not None:
        raise ResumeError(f"{checkpoint}: not resuming it: {why}; resume with the same settings, or start fresh "
                          "(RESUME=0 / --auto_resume false moves the earlier run aside)")


def finish_run_dir(out: str | os.PathLike, stage: str) -> None:
    """Record everything the finished run left in `out` in its manifest (the final model files included)."""
    out = Path(out)
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
    the checkpoint to resume; each checkpoint the Trainer saves gets the run record (`callback`)."""

    def __init__(self, stage: str, training_args: Any, settings: Mapping[str, Any],
                 inputs: Iterable[str | os.PathLike | None] = ()):
        self.stage, self.args = stage, training_args
        self.out = Path(training_args.output_dir)
        self.identity = RunIdentity(stage, settings, training_args.world_size)
        self.inputs = [i for i in inputs if i]
        self.lock = None

    def start(self) -> str | None:
        """The checkpoint to resume (str) or None; raises OutputError / ResumeError (one line) on every rank."""
        from medqa.io import OutputLock
        from medqa.preemption import rank0_decides

        mode, requested = resume_mode(self.args.resume_from_checkpoint, getattr(self.args, "auto_resume", True))

        def decide() -> str | None:
            self.lock = OutputLock(self.out, self.stage).acquire()
            try:
                run = prepare_run_dir(self.out, self.identity, complete_marker=HF_STATE, inputs=self.inputs,
                                      resume=mode, requested=requested,
                                      overwrite=bool(getattr(self.args, "overwrite", False)))
                trim_logs(self.out, run.step)
            except BaseException:
                self.release()
                raise
            return str(run.resume_from) if run.resume_from else None

        return rank0_decides(decide, self.args.process_index == 0)

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

    def finish(self) -> None:
        if self.args.process_index == 0:
            finish_run_dir(self.out, self.stage)

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
