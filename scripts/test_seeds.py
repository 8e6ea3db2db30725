"""Rerun the learning tests under several seeds and tabulate every quantity they measure.

Each learning test measures its quantities through the `measure` fixture (tests/conftest.py) and asserts a bound
on them. This script runs `pytest -m learning` once per seed (MEDQA_TEST_SEED), collects the quantities, and
prints per quantity its bound and the min / median / max over the seeds, with the margin of the worst seed, so a
threshold is set below the worst case that was actually seen. `make test-seeds` (SEEDS=1,2,3,4,5, DEMO=1 adds the
whole `make demo` per seed). Writes OUT/learning-seeds.{json,md} and exits 1 when any seed failed a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from medqa.errors import ExitCode  # noqa: E402
from medqa.runs.io import OutputError, atomic_dir, check_output_dir, read_jsonl  # noqa: E402

KIND = "test-seeds"  # the command recorded in the output folder's manifest


def run_seed(seed: int, marker: str, pytest_args: list[str]) -> tuple[int, list[dict], float]:
    with tempfile.TemporaryDirectory(prefix=f"medqa-seed-{seed}-") as tmp:
        log = Path(tmp) / "measured.jsonl"
        env = {**os.environ, "MEDQA_TEST_SEED": str(seed), "MEDQA_LEARNING_LOG": str(log)}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker, *pytest_args]
        print(f">> seed {seed}: {' '.join(cmd[2:])}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        rows = read_jsonl(log) if log.is_file() else []
    return rc, rows, time.perf_counter() - t0


def _bound(row: dict) -> str:
    parts = []
    if row["at_least"] is not None:
        parts.append(f">= {row['at_least']:g}")
    if row["at_most"] is not None:
        parts.append(f"<= {row['at_most']:g}")
    return " and ".join(parts)


def _margin(row: dict, values: list[float]) -> float | None:
    """How far the worst seed stays inside the bound (negative: outside)."""
    margins = []
    if row["at_least"] is not None:
        margins.append(min(values) - row["at_least"])
    if row["at_most"] is not None:
        margins.append(row["at_most"] - max(values))
    return min(margins) if margins else None


def tabulate(rows: list[dict], seeds: list[int]) -> list[dict]:
    table: dict[tuple[str, str], dict] = {}
    for row in rows:
        entry = table.setdefault((row["test"], row["quantity"]), {**row, "by_seed": {}})
        entry["by_seed"][row["seed"]] = row["value"]
    out = []
    for (test, quantity), entry in table.items():
        values = [entry["by_seed"][s] for s in seeds if s in entry["by_seed"]]
        out.append({"test": test, "quantity": quantity, "bound": _bound(entry), "gated": entry["gated"],
                    "n": len(values), "min": min(values), "median": statistics.median(values), "max": max(values),
                    "worst_margin": _margin(entry, values), "by_seed": entry["by_seed"],
                    "met": sum(1 for r in rows if r["test"] == test and r["quantity"] == quantity and r["ok"])})
    return out


def markdown(table: list[dict], seeds: list[int], results: dict) -> str:
    lines = [f"Learning quantities over seeds {', '.join(map(str, seeds))} (`make test-seeds`).", "",
             "| quantity | bound | asserted | min | median | max | worst margin | met |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table:
        margin = "" if r["worst_margin"] is None else f"{r['worst_margin']:+.3f}"
        lines.append(f"| {r['quantity']} | {r['bound']} | {('yes' if r['gated'] else 'no (target)') if r['bound'] else '—'} | "
                     f"{r['min']:.3f} | {r['median']:.3f} | {r['max']:.3f} | {margin} | {r['met']}/{r['n']} |")
    lines += ["", "| seed | pytest exit | seconds |", "|---|---|---|"]
    lines += [f"| {s} | {results[s]['rc']} | {results[s]['seconds']:.0f} |" for s in seeds]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="test_seeds", description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds (default 1,2,3,4,5)")
    p.add_argument("--demo", action="store_true", help="also run the whole `make demo` under each seed (≈ 8 min each)")
    p.add_argument("--out", default="outputs/test-seeds", help="folder for learning-seeds.{json,md}")
    p.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --), e.g. a test file")
    args = p.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if not seeds:
        p.error("--seeds: no seed given")
    try:
        check_output_dir(ROOT / args.out, kind=KIND)  # before the runs, not after
    except OutputError as e:
        print(f"test_seeds: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    marker = "learning" if args.demo else "learning and not demo"
    results, rows = {}, []
    for seed in seeds:
        rc, seed_rows, seconds = run_seed(seed, marker, args.pytest_args)
        results[seed] = {"rc": rc, "seconds": round(seconds, 1)}
        rows += seed_rows
    table = tabulate(rows, seeds)
    md = markdown(table, seeds, results)
    print("\n" + md)
    with atomic_dir(ROOT / args.out, kind=KIND) as tmp:
        (tmp / "learning-seeds.json").write_text(json.dumps({"seeds": seeds, "runs": results, "quantities": table},
                                                            indent=2) + "\n", encoding="utf-8")
        (tmp / "learning-seeds.md").write_text(md, encoding="utf-8")
    print(f">> written: {args.out}/learning-seeds.md")
    return ExitCode.OK if all(r["rc"] == 0 for r in results.values()) else ExitCode.FAILED


if __name__ == "__main__":
    sys.exit(main())
