"""`medqa bench`: run the performance benchmarks and report ratios measured in one run.

Each benchmark is a module `medqa/bench/pN_name.py` exposing `run(out_dir: Path) -> dict`; the runner
discovers them, runs the selected ones in order and writes `OUT/bench.json` (one entry per benchmark).
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import platform
import time
from pathlib import Path

from medqa.io import atomic_write


def discover() -> dict[str, str]:
    """{"p1": "medqa.bench.p1_teacher", …} for every pN_*.py module in this package, in order."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        head = info.name.split("_", 1)[0]
        if head.startswith("p") and head[1:].isdigit():
            found[head] = f"{__name__}.{info.name}"
    return dict(sorted(found.items(), key=lambda kv: int(kv[0][1:])))


def main(argv: list[str] | None = None) -> int:
    available = discover()
    p = argparse.ArgumentParser(prog="medqa bench", description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=sorted(available), help="benchmarks to run (default: all)")
    p.add_argument("--out", type=Path, default=Path("bench_results"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "bench.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for key in args.only or available:
        module = importlib.import_module(available[key])
        print(f">> {key}: {(module.__doc__ or module.__name__).strip().splitlines()[0]}", flush=True)
        start = time.perf_counter()
        result = module.run(args.out)
        result["wall_s"] = round(time.perf_counter() - start, 2)
        result["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
        results[key] = result
        print(json.dumps(result, indent=2, ensure_ascii=False), flush=True)
        with atomic_write(path) as fh:  # after each benchmark, so a long run keeps what it measured
            json.dump(results, fh, indent=2, ensure_ascii=False)
    print(f"results in {path}")
    return 0
