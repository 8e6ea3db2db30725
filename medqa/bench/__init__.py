"""`medqa bench`: run the performance benchmarks and report ratios measured in one run.

`BENCHMARKS` below is the one place a benchmark is added: an entry names the module `medqa.bench.<module>` that
exposes `run(out_dir: Path) -> dict`, the key of its headline ratio in that dict, the goal, and a one-line detail
template. `medqa bench` (what `make bench` runs) runs every registered benchmark one after the other in one
process and writes `OUT/bench.json` and the table `OUT/bench.md`. A benchmark that fails (its module missing
included) is listed as failed with its error and never given a number. `--only pN …` reruns some and keeps the others' earlier results, each with its time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from medqa.errors import ExitCode
from medqa.runs.io import atomic_write


class BenchmarkSkipped(RuntimeError):
    """Raised by a benchmark whose requirement is not installed here: listed as skipped with the reason, no number,
    and not a failure."""


@dataclass(frozen=True)
class Benchmark:
    key: str
    title: str
    module: str  # medqa.bench.<module>, exposing run(out_dir) -> dict
    ratio: str  # what the headline ratio is
    value_key: str  # the headline ratio's key in run()'s dict
    goal: float
    goal_is_max: bool  # True: the ratio must stay at or below the goal; False: reach at least the goal
    detail: str = ""  # str.format template over run()'s dict, e.g. "{concurrent[throughput_per_s]}/s"

    def met(self, value: float) -> bool:
        return value <= self.goal if self.goal_is_max else value >= self.goal


# ---------------------------------------------------------------- the registry: one entry per benchmark
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("p1", "Teacher throughput", "p1_teacher", "judgements/s ÷ (concurrency / latency)", "ratio", 0.9, False,
              "{concurrent[throughput_per_s]}/s of {concurrent[limit_per_s]:g}/s at concurrency "
              "{concurrent[concurrency]}; {speedup_vs_sequential}× sequential calls"),
    Benchmark("p2", "PPO teacher-wait share", "p2_ppo_teacher", "teacher-wait seconds ÷ PPO step seconds (overlapped)",
              "ratio", 0.05, True, "blocking call {blocking[teacher_wait_share]:.1%}; judge latency "
              "{judge_latency_ms} ms"),
    Benchmark("p3", "SFT padding share", "p3_padding", "padding tokens ÷ computed tokens (packed batches)",
              "sft_padding_share", 0.02, True,
              "naive pad-to-longest {naive_padding_share:.1%}; tiny SFT-LoRA {cpu_tokens_per_s} tokens/s on CPU"),
    Benchmark("p4", "Batched generation speed-up", "p4_generation", "batched tokens/s ÷ one-by-one tokens/s", "ratio",
              5.0, False, "{batched_tokens_per_s} vs {one_by_one_tokens_per_s} tokens/s, batch {batch_size}, "
              "identical outputs: {identical_outputs}"),
    Benchmark("p9", "Rollout engine speed-up", "p9_rollout_engine",
              "vLLM server tokens/s ÷ transformers generate tokens/s (same model, prompts, sampling)", "ratio", 5.0,
              False, "{server_tokens_per_s} vs {hf_tokens_per_s} tokens/s on {device}, {prompts} prompts × "
              "{max_new_tokens} tokens (goal: a GPU's, make bench-gpu)"),
)


def registry() -> dict[str, Benchmark]:
    return {b.key: b for b in BENCHMARKS}


def module_name(bench: Benchmark) -> str:
    return bench.module if "." in bench.module else f"{__name__}.{bench.module}"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_one(bench: Benchmark, out_dir: Path) -> dict:
    """One benchmark -> its entry in bench.json: measured (with the ratio) or failed."""
    entry = {"title": bench.title, "ratio_definition": bench.ratio, "goal": bench.goal,
             "goal_is_max": bench.goal_is_max, "measured_at": _now()}
    start = time.perf_counter()
    try:
        result = importlib.import_module(module_name(bench)).run(out_dir)
        value = float(result[bench.value_key])
    except BenchmarkSkipped as why:
        return {**entry, "status": "skipped", "error": str(why), "wall_s": round(time.perf_counter() - start, 2)}
    except Exception as err:  # noqa: BLE001 - reported as failed, the other benchmarks still run
        traceback.print_exc()
        return {**entry, "status": "failed", "error": f"{type(err).__name__}: {err}",
                "wall_s": round(time.perf_counter() - start, 2)}
    return {**entry, "status": "measured", "value": value, "met": bench.met(value),
            "wall_s": round(time.perf_counter() - start, 2), "result": result}


def _detail(bench: Benchmark, entry: dict) -> str:
    if entry["status"] in ("failed", "skipped"):
        return entry["error"].splitlines()[0][:200]
    if entry["status"] == "not run":
        return "not run yet: `medqa bench` (or `make bench`) runs it"
    try:
        return bench.detail.format(**entry["result"])
    except (KeyError, IndexError, ValueError):
        return ""


def markdown(report: dict) -> str:
    """bench.md: one row per registered benchmark, in registry order."""
    goal = {True: "≤", False: "≥"}
    lines = [f"# Benchmarks ({report['machine']}, {report['cpu_count']} CPUs)", "",
             f"`medqa bench`, started {report['started_at']}. Each ratio compares two measurements taken in the same "
             "run of that benchmark; `bench.json` holds every number.", "",
             "| | benchmark | ratio | value | goal | met | detail | measured at | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for bench in BENCHMARKS:
        e = report["benchmarks"].get(bench.key, {"status": "not run"})
        value = f"{e['value']:.4g}" if e["status"] == "measured" else e["status"]
        met = ("yes" if e["met"] else "**no**") if e["status"] == "measured" else "—"
        lines.append(f"| {bench.key.upper()} | {bench.title} | {bench.ratio} | {value} | {goal[bench.goal_is_max]} "
                     f"{bench.goal:g} | {met} | {_detail(bench, e)} | {e.get('measured_at', '—')} | "
                     f"{e.get('wall_s', '—')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    benches = registry()
    p = argparse.ArgumentParser(prog="medqa bench", description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(benches), help="benchmarks to (re)run; the rest keep earlier results")
    p.add_argument("--out", type=Path, default=Path("bench_results"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = args.out / "bench.json", args.out / "bench.md"
    report = {"started_at": _now(), "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "cpu_count": os.cpu_count(), "benchmarks": {}}
    if args.only and json_path.exists():
        earlier = json.loads(json_path.read_text(encoding="utf-8"))
        report["benchmarks"] = earlier.get("benchmarks", {}) if isinstance(earlier, dict) else {}
    for key in args.only or benches:
        bench = benches[key]
        print(f">> {key}: {bench.title} ({bench.ratio})", flush=True)
        entry = run_one(bench, args.out)
        report["benchmarks"][key] = entry
        print(json.dumps(entry, indent=2, ensure_ascii=False), flush=True)
        with atomic_write(json_path) as fh:  # after each benchmark, so a long run keeps what it measured
            json.dump(report, fh, indent=2, ensure_ascii=False)
        with atomic_write(md_path) as fh:
            fh.write(markdown(report))
    print(markdown(report))
    print(f"results in {json_path} and {md_path}")
    failed = [k for k, e in report["benchmarks"].items() if e["status"] == "failed" and k in (args.only or benches)]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return ExitCode.FAILED if failed else ExitCode.OK
