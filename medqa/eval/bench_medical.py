"""`medqa bench-medical`: the public medical benchmarks (MedQA, MedMCQA, PubMedQA, MMLU medical, CMMLU / C-Eval
medical) through lm-evaluation-harness, on a base model, an adapter, a merged model or an OpenAI-compatible endpoint.

* Tasks are the harness's own (`medqa_4options`, `cmmlu_anatomy`, …) or this project's groups, shipped as task YAMLs
  in `medqa/eval/bench_tasks/` (`medqa_en`, `medqa_zh`, `medqa_all`); `--include-path DIR` adds a folder of task
  YAMLs (the tests' fixtures). A task with `dataset_path: json` reads `dataset_kwargs.data_files` relative to its
  YAML's folder; every such file is read with `medqa.io.iter_jsonl` first, so a bad row is `FILE:LINE: reason`.
* Multiple choice is scored by the harness's `multiple_choice` output type: the log-likelihood of each option after
  the prompt, rendered with the model's chat template (`apply_chat_template`), Qwen3 thinking on or off.
* Output (default `outputs/eval/<name>/bench_medical/`, medqa's output policy: a lock, a manifest, never over files
  medqa did not write): `harness-<task>.json` per requested task or group (the harness's results, configs and item
  counts, plus the key it was made under), `results.json` (all of them together) and `table.md`.
* Resumable: a requested task whose `harness-<task>.json` was made under the same key (content fingerprint of the
  model and adapter, task YAML and data files, settings, harness version) is not run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from medqa.eval.stats import wilson
from medqa.io import (
    InputError,
    OutputError,
    OutputLock,
    atomic_write,
    check_output_dir,
    content_fingerprint,
    ensure_out_folder,
    iter_jsonl,
    read_manifest,
    write_manifest,
)

KIND = "bench-medical"
TASKS_DIR = Path(__file__).resolve().parent / "bench_tasks"
DEFAULT_TASKS = "medqa_all"
RESULTS, TABLE, UNIT_PREFIX = "results.json", "table.md", "harness-"
THINK_END = "</think>"


class BenchError(ValueError):
    """A bad request (unknown task, unusable backend settings): one line for the user."""


# ---------------------------------------------------------------- tasks


def task_manager(include_paths: list[Path], names: list[str]):
    """A harness TaskManager that knows `names`: first over medqa's and the given task folders only (fast), then,
    when a name or a group member is not there, over the harness's own tasks as well."""
    from lm_eval.tasks import TaskManager

    paths = [TASKS_DIR, *include_paths]
    tm = TaskManager(include_path=[str(p) for p in paths], include_defaults=False)
    if all(_known(tm, n) for n in names):
        return tm
    tm = TaskManager(include_path=[str(p) for p in paths], include_defaults=True)
    check_names(tm, names)
    return tm


def check_names(tm, names: list[str]) -> None:
    """BenchError, one line with the closest registered names, for the first name `tm` does not know."""
    for name in names:
        if name not in tm.task_index:
            close = difflib.get_close_matches(name, tm.all_tasks, n=5, cutoff=0.6)
            hint = f"; close matches: {', '.join(close)}" if close else "; `lm-eval ls tasks` lists them"
            raise BenchError(f"unknown task {name!r}{hint}")


def _known(tm, name: str) -> bool:
    entry = tm.task_index.get(name)
    if entry is None:
        return False
    members = (entry.cfg or {}).get("task") if entry.kind.name == "GROUP" else None
    if isinstance(members, list):
        return all(_known(tm, m if isinstance(m, str) else m.get("task", m.get("group", ""))) for m in members)
    return True


def _data_files(cfg: dict, yaml_path: Path) -> dict[str, list[Path]] | None:
    """{split: [absolute files]} of a `dataset_path: json` task, relative names taken from the YAML's folder."""
    if cfg.get("dataset_path") != "json":
        return None
    files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    if files is None:
        raise BenchError(f"{yaml_path}: dataset_path json needs dataset_kwargs.data_files")
    spec = files if isinstance(files, dict) else {"test": files}
    return {split: [(yaml_path.parent / f).resolve() for f in ([v] if isinstance(v, str) else v)]
            for split, v in spec.items()}


def validate_jsonl(path: Path) -> int:
    """Rows in `path`; InputError naming the file and line of the first bad row."""
    if not path.is_file():
        raise InputError(path, None, None, "data file not found")
    return sum(1 for _ in iter_jsonl(path))


def resolve_local_data(tm, name: str, digest) -> None:
    """Point every task under `name` that reads local JSONL files at those files, made absolute (the harness would
    read them relative to the current folder): its index entry gets the resolved config in place of the YAML path.
    Every local data file is validated first, and the YAMLs and data files read are hashed into `digest`."""
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = tm.task_index[name]
    if entry.yaml_path is None:
        digest.update(json.dumps(entry.cfg or {"name": name}, sort_keys=True, default=str).encode())
        return
    yaml_path = Path(entry.yaml_path).resolve()
    digest.update(yaml_path.read_bytes())
    if entry.kind.name == "GROUP":
        for member in load_yaml(yaml_path, resolve_func=False).get("task", []):
            if isinstance(member, str) and member in tm.task_index:
                resolve_local_data(tm, member, digest)
        return
    if entry.kind.name != "TASK":
        return
    cfg = load_yaml(yaml_path, resolve_func=True)
    files = _data_files(cfg, yaml_path)
    if files is None:
        return
    for paths in files.values():
        for path in paths:
            validate_jsonl(path)
            digest.update(path.read_bytes())
    kwargs = {**cfg.get("dataset_kwargs", {}), "data_files": {s: [str(p) for p in ps] for s, ps in files.items()}}
    tm.task_index[name] = dataclasses.replace(entry, yaml_path=None,
                                              cfg={**cfg, "task": name, "dataset_kwargs": kwargs})


# ---------------------------------------------------------------- model


def model_identity(args) -> dict[str, Any]:
    """What the results depend on, of the model: content fingerprints of local folders, else the name."""
    if args.backend == "api":
        return {"backend": "api", "base_url": args.base_url, "model": args.api_model or args.model}
    from medqa.modeling import check_model_path, resolve_model_paths

    base, adapter = resolve_model_paths(args.model, args.adapter)
    check_model_path(base)
    ident = {"backend": "hf", "model": base, "model_fingerprint": content_fingerprint(base) or base}
    if adapter:
        ident.update(adapter=adapter, adapter_fingerprint=content_fingerprint(adapter))
    return ident


def build_lm(args, ident: dict):
    """The harness's LM: `hf` (with `peft=` for an adapter) or `local-completions` (OpenAI-compatible server)."""
    from lm_eval.api.registry import get_model

    if ident["backend"] == "api":
        model_args = {"base_url": args.base_url, "model": args.api_model or args.model,
                      "tokenizer_backend": "huggingface", "tokenizer": args.tokenizer or args.model,
                      "num_concurrent": args.api_concurrency}
        return get_model("local-completions").create_from_arg_obj(model_args, {"batch_size": 1})
    adapter = ident.get("adapter")
    tokenizer = adapter if adapter and (Path(adapter) / "tokenizer_config.json").is_file() else ident["model"]
    model_args: dict[str, Any] = {"pretrained": ident["model"], "tokenizer": tokenizer, "dtype": args.dtype,
                                  "enable_thinking": args.thinking == "on"}
    if args.thinking == "on":
        model_args["think_end_token"] = THINK_END
    if adapter:
        model_args["peft"] = adapter
    from medqa.modeling import pick_device

    extra = {"batch_size": args.batch_size, "device": str(pick_device(args.device))}
    return get_model("hf").create_from_arg_obj(model_args, extra)


# ---------------------------------------------------------------- output


def default_out(args) -> Path:
    name = Path(str(args.adapter or (args.api_model if args.backend == "api" else None) or args.model)
                .rstrip("/")).name
    return Path("outputs/eval") / name / "bench_medical"


def unit_file(out: Path, name: str) -> Path:
    return out / f"{UNIT_PREFIX}{name.replace('/', '_')}.json"


def _load_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def table_rows(results: dict) -> list[dict]:
    """One row per task or group and accuracy metric: value, stderr, Wilson 95 % interval over the items, n."""
    n_samples = results.get("n-samples", {})
    subtasks = results.get("group_subtasks", {})

    def n_of(task: str) -> int:
        if task in n_samples:
            return int(n_samples[task].get("effective", n_samples[task].get("original", 0)))
        return sum(n_of(t) for t in subtasks.get(task, []))

    rows = []
    for task, metrics in results.get("results", {}).items():
        n = n_of(task)
        for key, value in metrics.items():
            metric, _, flt = key.partition(",")
            if metric not in ("acc", "acc_norm", "exact_match") or not isinstance(value, (int, float)):
                continue
            stderr = metrics.get(f"{metric}_stderr,{flt}")
            ci = wilson(round(value * n), n) if n else None
            rows.append({"task": task, "metric": metric, "value": float(value),
                         "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                         "ci95": list(ci) if ci else None, "n": n})
    return rows


def markdown_table(rows: list[dict]) -> str:
    lines = ["| task | metric | value | ± stderr | 95 % interval (Wilson) | n items |", "|---|---|---|---|---|---|"]
    for r in rows:
        se = f"± {r['stderr']:.3f}" if r["stderr"] is not None else "n/a"
        ci = f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]" if r["ci95"] else "n/a"
        lines.append(f"| {r['task']} | {r['metric']} | {r['value']:.3f} | {se} | {ci} | {r['n']} |")
    return "\n".join(lines) + "\n"


def combine(units: dict[str, dict], medqa: dict) -> dict:
    """The harness results of every requested task or group as one results file."""
    merged: dict[str, Any] = {"medqa": medqa}
    for field in ("results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples"):
        merged[field] = {}
        for unit in units.values():
            merged[field].update(unit["harness"].get(field) or {})
    first = next(iter(units.values()))["harness"]
    for field in ("config", "lm_eval_version", "transformers_version", "date"):
        merged[field] = first.get(field)
    return merged


def _entries() -> list[str]:
    return [RESULTS, TABLE, f"{UNIT_PREFIX}*.json"]


# ---------------------------------------------------------------- run


def run(args) -> dict:
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not names:
        raise BenchError("--tasks: no task named")
    if args.backend == "api":
        if not args.base_url:
            raise BenchError("--backend api needs --base-url (an OpenAI-compatible /v1/completions server, e.g. vLLM)")
        if args.thinking == "off":
            raise BenchError("--backend api cannot switch Qwen3 thinking off (the harness's API models take no chat "
                             "template arguments); use --backend hf, or --thinking on")
        args.thinking = "on"
    args.thinking = args.thinking or "off"
    if args.thinking == "on":
        print(f"{KIND}: thinking on with log-likelihood scoring: each option is scored as the first words of a "
              "thinking turn (docs/eval.md, Medical benchmarks)", file=sys.stderr)
    out = Path(args.out) if args.out else default_out(args)
    include = [Path(p) for p in args.include_path]
    for p in include:
        if not p.is_dir():
            raise BenchError(f"--include-path {p}: not a folder")
    check_output_dir(out, overwrite=args.overwrite, kind=KIND)  # before any work
    ident = model_identity(args)
    settings = {"thinking": args.thinking, "scoring": "loglik", "limit": args.limit, "num_fewshot": args.num_fewshot,
                "seed": args.seed, "dtype": args.dtype, "chat_template": True}
    tm = task_manager(include, names)
    import lm_eval

    plan = {}
    for name in names:
        digest = hashlib.sha256()
        resolve_local_data(tm, name, digest)
        key_src = {"task": name, "task_files": digest.hexdigest(), "model": ident, "settings": settings,
                   "lm_eval": lm_eval.__version__}
        plan[name] = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:20]

    with OutputLock(out, KIND):
        ensure_out_folder(out)
        check_output_dir(out, overwrite=args.overwrite, kind=KIND)
        if args.overwrite or not read_manifest(out):
            write_manifest(out, KIND, _entries())
        units, lm = {}, None
        for name, key in plan.items():
            path = unit_file(out, name)
            done = _load_json(path)
            if done and done.get("key") == key and not args.overwrite:
                print(f"{KIND}: {name}: finished earlier under the same model, tasks and settings ({path}); skipped",
                      flush=True)
                units[name] = done
                continue
            if lm is None:
                lm = build_lm(args, ident)
            print(f"{KIND}: {name}: running the harness ({ident.get('adapter') or ident['model']})", flush=True)
            r = lm_eval.simple_evaluate(
                model=lm, tasks=[name], task_manager=tm, num_fewshot=args.num_fewshot, limit=args.limit,
                apply_chat_template=True, fewshot_as_multiturn=args.num_fewshot > 0, log_samples=False,
                random_seed=args.seed, numpy_random_seed=args.seed, torch_random_seed=args.seed,
                fewshot_random_seed=args.seed, bootstrap_iters=1000)
            unit = {"key": key, "task": name, "model": ident, "settings": settings,
                    "harness": json.loads(json.dumps({k: v for k, v in r.items() if k != "samples"}, default=str))}
            with atomic_write(path) as fh:
                fh.write(json.dumps(unit, indent=1, ensure_ascii=False) + "\n")
            units[name] = unit
        medqa = {"model": ident, "settings": settings, "tasks": names, "keys": plan}
        results = combine(units, medqa)
        rows = table_rows(results)
        results["medqa"]["table"] = rows
        with atomic_write(out / RESULTS) as fh:
            fh.write(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
        title = f"# Medical benchmarks: {ident.get('adapter') or ident['model']}\n\n"
        note = (f"lm-evaluation-harness {lm_eval.__version__}; multiple choice by log-likelihood, chat template, "
                f"thinking {args.thinking}, {args.num_fewshot}-shot, seed {args.seed}"
                + (f", limit {args.limit} items per task" if args.limit else "") + ".\n\n")
        with atomic_write(out / TABLE) as fh:
            fh.write(title + note + markdown_table(rows))
    print(markdown_table(rows), end="")
    print(f"{KIND}: wrote {out / RESULTS} and {out / TABLE}")
    return results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="medqa bench-medical", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="base or merged model folder, hub id, or adapter folder; with "
                   "--backend api the served model's name")
    p.add_argument("--adapter", help="PEFT adapter on top of --model (the harness's peft=)")
    p.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated harness tasks or groups: medqa_en, "
                   "medqa_zh, medqa_all (default), or e.g. medqa_4options,pubmedqa")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR",
                   help="a folder of extra task YAMLs (repeatable); json data_files are relative to each YAML")
    p.add_argument("--backend", choices=("hf", "api"), default="hf",
                   help="hf: transformers in this process; api: an OpenAI-compatible completions server (vLLM's "
                        "`vllm serve`, the harness's local-completions)")
    p.add_argument("--base-url", help="api: the server's completions URL, e.g. http://localhost:8000/v1/completions")
    p.add_argument("--api-model", help="api: the model name the server knows (default: --model)")
    p.add_argument("--tokenizer", help="api: local tokenizer / chat template (default: --model)")
    p.add_argument("--api-concurrency", type=int, default=8)
    p.add_argument("--limit", type=int, help="first N items of each task (quick checks; not comparable numbers)")
    p.add_argument("--thinking", choices=("on", "off"), help="Qwen3 enable_thinking in the chat template "
                   "(default: off for hf; api: the template's default, on)")
    p.add_argument("--num-fewshot", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", help="hf: cuda, cuda:1, cpu (default: cuda when present, else cpu)")
    p.add_argument("--dtype", default="auto", help="hf: weights dtype (default: %(default)s)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", help="output folder (default: outputs/eval/<model or adapter name>/bench_medical)")
    p.add_argument("--overwrite", action="store_true", help="rerun every task and write into a folder holding "
                   "files medqa did not write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (InputError, OutputError, BenchError, FileNotFoundError, ValueError) as e:
        print(f"medqa {KIND}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
