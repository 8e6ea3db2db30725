"""`medqa demo`: tiny pretrained base → data → SFT (full) → PPO (LoRA) → eval of base, SFT and RL → one report.

Each stage runs the project's own command (make targets, `medqa …`) as a child process, so the demo is what a
user would type, in order. A stage whose output is complete is skipped (`--force` reruns all). Stage times go to
`OUT/stages.json`; the numbers the demo must show go to `OUT/summary.json`; the report to `OUT/report/`.

The teacher: with DEEPSEEK_API_KEY (or MEDQA_TEACHER_API_KEY) set, PPO and the reward evaluation use the real
judge and the demo says so; otherwise the offline heuristic judge, said loudly.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medqa.io import MANIFEST, atomic_write, check_output_dir

EVAL_SETS = ("gold_set", "red_team")
MODELS = ("base", "sft", "rl")


@dataclass
class DemoConfig:
    out: Path = Path("outputs/demo")
    base: Path = Path("models/tiny-base")
    data: Path = Path("data/processed")
    sft_recipe: str = "recipes/sft/demo/full.yaml"
    ppo_recipe: str = "recipes/ppo/demo/lora.yaml"
    limit: int | None = None  # items per evaluation set (None: all)
    sft_args: str = ""  # extra recipe overrides for the SFT stage, e.g. "--max_steps 10"
    ppo_args: str = ""
    max_new_tokens: int = 256
    # Decoding of every evaluated model: greedy with a repetition penalty (Qwen3's card advises against plain
    # greedy decoding in thinking mode, which loops; see docs/demo.md for the plain-greedy numbers).
    repetition_penalty: float = 1.3
    batch_size: int = 16
    sft_processes: int = 2  # DDP on the 2 cores: measured 2.0x the tokens/s of one process (docs/demo.md)
    seed: int = 42
    force: bool = False
    python: str = sys.executable
    stages: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        self.out, self.base, self.data = Path(self.out), Path(self.base), Path(self.data)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        if self.max_new_tokens < 16:
            raise ValueError(f"--max-new-tokens must be >= 16, got {self.max_new_tokens}")
        for place in (self.out, *self.out.parents):
            if place.exists():
                if not place.is_dir():
                    raise ValueError(f"--out {self.out}: {place} exists and is not a folder; the demo writes a "
                                     "folder: choose another --out")
                break

    @property
    def sft_dir(self) -> Path:
        return self.out / "sft"

    @property
    def rl_dir(self) -> Path:
        return self.out / "ppo"

    def model_dir(self, name: str) -> Path:
        return {"base": self.base, "sft": self.sft_dir, "rl": self.rl_dir}[name]


def real_teacher() -> bool:
    return bool(os.environ.get("DEEPSEEK_API_KEY") or os.environ.get("MEDQA_TEACHER_API_KEY"))


# ---------------------------------------------------------------- stages


def _run(cmd: list[str]) -> None:
    print(f"   $ {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited with {proc.returncode}")


def _make(*args: str) -> list[str]:
    return ["make", "--no-print-directory", *args]


def _listed_entries(path: Path) -> set[str]:
    """The entries a folder's manifest lists (what medqa wrote there); none without a readable manifest."""
    try:
        entries = json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("entries", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {e for e in entries if isinstance(e, str) and e and "/" not in e and e not in {".", ".."}}


def fresh_stage_dir(path: Path) -> None:
    """Empty a stage's output folder for a fresh run, marking it as the demo's. Only the entries its manifest lists
    (what an earlier demo stage wrote there, see `demo_stage`) are removed; a folder holding anything else (a
    user's files under `--out`) is an error, and nothing in it is touched."""
    check_output_dir(path, overwrite=True)  # never a file, an input, the project, the current or home folder
    listed = _listed_entries(path)
    foreign = sorted({p.name for p in path.iterdir()} - listed - {MANIFEST}) if path.is_dir() else []
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise RuntimeError(f"{path}: holds files the demo did not write ({shown}); choose another --out or move "
                           "them away")
    for name in listed:
        entry = path / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    _write_stage_manifest(path, [])


def _write_stage_manifest(path: Path, entries: list[str]) -> None:
    with atomic_write(path / MANIFEST) as fh:
        json.dump({"written_by": "medqa demo", "entries": entries}, fh)
        fh.write("\n")


@contextlib.contextmanager
def demo_stage(path: Path) -> Iterator[Path]:
    """A stage's fresh output folder (`fresh_stage_dir`); afterwards, finished or not, its manifest lists what the
    stage wrote there, so the next fresh run removes exactly that."""
    fresh_stage_dir(path)
    try:
        yield path
    finally:
        if path.is_dir():
            _write_stage_manifest(path, sorted(p.name for p in path.iterdir() if p.name != MANIFEST))


def stage_data(cfg: DemoConfig) -> None:
    _run(_make("tiny-model", "data", "rl-prompts"))


def stage_tiny_base(cfg: DemoConfig) -> None:
    _run([cfg.python, "-m", "medqa", "pretrain", "--out", str(cfg.base), "--seed", str(cfg.seed),
          "--train-file", str(cfg.data / "train.jsonl"), *(["--force"] if cfg.force else [])])


def stage_sft(cfg: DemoConfig) -> None:
    with demo_stage(cfg.sft_dir):  # a fresh run, never a stale resume
        _run(_make("sft-full", "PROFILE=cpu", "ACCEL=ddp", f"RECIPE={cfg.sft_recipe}", f"MODEL={cfg.base}",
                   f"OUT={cfg.sft_dir}", f"NPROC={cfg.sft_processes}", f"ARGS=--seed {cfg.seed} {cfg.sft_args}"))


def stage_ppo(cfg: DemoConfig) -> None:
    with demo_stage(cfg.rl_dir):
        _run(_make("ppo", "PROFILE=cpu", f"RECIPE={cfg.ppo_recipe}", f"SFT={cfg.sft_dir}", f"OUT={cfg.rl_dir}",
                   "RESUME=0", f"ARGS=--seed {cfg.seed} {cfg.ppo_args}"))


def stage_eval(cfg: DemoConfig, name: str) -> None:
    out = cfg.out / "eval" / name
    cmd = [cfg.python, "-m", "medqa", "eval", "run", "--model", str(cfg.model_dir(name)), "--out", str(out),
           "--max-new-tokens", str(cfg.max_new_tokens), "--batch-size", str(cfg.batch_size), "--no-progress",
           "--repetition-penalty", str(cfg.repetition_penalty),
           *[a for s in EVAL_SETS for a in ("--set", f"{s}={cfg.data / (s + '.jsonl')}")]]
    if cfg.limit:
        cmd += ["--limit", str(cfg.limit)]
    _run(cmd)
    from medqa.demo_report import add_rewards

    add_rewards(out / "red_team", seed=cfg.seed)


def stage_report(cfg: DemoConfig) -> None:
    from medqa.demo_report import write_demo_report

    write_demo_report(cfg)


def _done_tiny_base(cfg):
    """The base is current for the default recipe (the one `stage_tiny_base` builds) and this training split."""
    from medqa.train.pretrain import PretrainConfig, is_current, pretrain_key

    train = cfg.data / "train.jsonl"
    return train.is_file() and is_current(cfg.base, pretrain_key(PretrainConfig(seed=cfg.seed), train))


def _done_sft(cfg):
    return (cfg.sft_dir / "sft_summary.json").is_file() and (cfg.sft_dir / "config.json").is_file()


def _done_ppo(cfg):
    return (cfg.rl_dir / "metrics.jsonl").is_file() and (cfg.rl_dir / "adapter_config.json").is_file()


def _done_eval(name):
    return lambda cfg: all((cfg.out / "eval" / name / s / "metrics.json").is_file() for s in EVAL_SETS) and \
        "reward" in json.loads((cfg.out / "eval" / name / "red_team" / "metrics.json").read_text(encoding="utf-8"))


# (name, run, done-check or None when the stage checks itself)
STAGES = [
    ("data", stage_data, None),
    ("tiny-base", stage_tiny_base, _done_tiny_base),
    ("sft", stage_sft, _done_sft),
    ("ppo", stage_ppo, _done_ppo),
    *[(f"eval-{m}", functools.partial(stage_eval, name=m), _done_eval(m)) for m in MODELS],
    ("report", stage_report, None),
]


def run_demo(cfg: DemoConfig) -> dict:
    cfg.out.mkdir(parents=True, exist_ok=True)
    times_path = cfg.out / "stages.json"
    previous = {}
    if times_path.is_file() and not cfg.force:
        previous = json.loads(times_path.read_text(encoding="utf-8"))
    if real_teacher():
        print(">> teacher: the REAL judge (DEEPSEEK_API_KEY / MEDQA_TEACHER_API_KEY is set): PPO and the reward "
              "evaluation call the API (cached)", flush=True)
    else:
        print(">> teacher: no API key, so the OFFLINE heuristic judge (not an LLM) scores PPO and the red team",
              flush=True)
    started = time.perf_counter()
    for i, (name, fn, done) in enumerate(STAGES, 1):
        if done is not None and not cfg.force and done(cfg):
            print(f">> [{i}/{len(STAGES)}] {name}: done before ({previous.get(name, {}).get('seconds', '?')} s), "
                  "skipped (FORCE=1 reruns)", flush=True)
            cfg.stages[name] = {**previous.get(name, {}), "skipped": True}
            continue
        print(f">> [{i}/{len(STAGES)}] {name}", flush=True)
        t0 = time.perf_counter()
        fn(cfg)
        cfg.stages[name] = {"seconds": round(time.perf_counter() - t0, 1), "skipped": False}
        print(f">> [{i}/{len(STAGES)}] {name}: {cfg.stages[name]['seconds']} s", flush=True)
        with atomic_write(times_path) as fh:
            json.dump({**previous, **cfg.stages}, fh, indent=2)
    wall = round(time.perf_counter() - started, 1)
    summary = json.loads((cfg.out / "summary.json").read_text(encoding="utf-8"))
    summary["stage_seconds"] = {k: v.get("seconds") for k, v in cfg.stages.items()}  # the report stage included
    summary["demo_wall_seconds"] = wall
    with atomic_write(cfg.out / "summary.json") as fh:
        json.dump(summary, fh, ensure_ascii=False, indent=2)
    print(f">> demo finished in {wall} s; stage times (s): "
          + ", ".join(f"{k} {v.get('seconds', '?')}{' (skipped)' if v.get('skipped') else ''}"
                      for k, v in cfg.stages.items()))
    print(f">> report: {cfg.out / 'report' / 'report.html'} (markdown: {cfg.out / 'report' / 'report.md'}); "
          f"numbers: {cfg.out / 'summary.json'}")
    d = summary["rl_minus_sft_reward_red_team"]
    print(f">> think coverage on gold: base {summary['base_think_coverage_gold']:.2f}, SFT "
          f"{summary['sft_think_coverage_gold']:.2f}; SFT eval loss {summary['eval_loss_first']:.2f} -> "
          f"{summary['eval_loss_last']:.2f} (ln vocab {math.log(summary['vocab_size']):.2f}); red-team reward RL - SFT "
          f"{d['delta']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="medqa demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="outputs/demo")
    p.add_argument("--base", default="models/tiny-base", help="where the pretrained tiny base is built (cached)")
    p.add_argument("--limit", type=int, help="items per evaluation set (default: all)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--sft-args", default="", help="SFT recipe overrides, e.g. '--max_steps 10'")
    p.add_argument("--ppo-args", default="", help="PPO recipe overrides, e.g. '--total_steps 4'")
    p.add_argument("--force", action="store_true", help="rerun every stage")
    p.add_argument("--seed", type=int, default=42, help="seed of the pretraining, SFT, PPO and reward sampling")
    args = p.parse_args(argv)
    try:
        cfg = DemoConfig(out=args.out, base=args.base, limit=args.limit, max_new_tokens=args.max_new_tokens,
                         sft_args=args.sft_args, ppo_args=args.ppo_args, force=args.force, seed=args.seed)
        run_demo(cfg)
    except ValueError as e:
        print(f"medqa demo: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"medqa demo: {e}", file=sys.stderr)
        return 1
    return 0
