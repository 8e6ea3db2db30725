"""`medqa bench-medical`: the public medical benchmarks (MedQA, MedMCQA, PubMedQA, MMLU medical, CMMLU / C-Eval
medical) through lm-evaluation-harness, on a base model, an adapter, a merged model or an OpenAI-compatible endpoint.

* Tasks are the harness's own (`medqa_4options`, `cmmlu_anatomy`, …) or this project's groups, shipped as task YAMLs
  in `medqa/eval/bench_tasks/` (`medqa_en`, `medqa_zh`, `medqa_all`); `--include-path DIR` adds a folder of task
  YAMLs (the tests' fixtures). A task with `dataset_path: json` reads `dataset_kwargs.data_files` relative to its
  YAML's folder; every such file is read with `medqa.runs.io.iter_jsonl` first, so a bad row is `FILE:LINE: reason`.
* Multiple choice is scored one of two ways (`--scoring`), the prompt rendered with the model's chat template
  (`apply_chat_template`), Qwen3 thinking on or off (`enable_thinking` of the template): `loglik` (default), the
  harness's `multiple_choice` output type, the log-likelihood of each option after the prompt; `generate`, the
  `generate_until` variant of the same task (`medqa/eval/bench_generate.py`): the model writes its answer, the
  think block is stripped and the choice extracted; an answer without one is wrong and counted as unparsable.
* `--backend api`: the URL from `--base-url` or $MEDQA_BENCH_BASE_URL (`make … BASE_URL=…` passes it that way), never
  with user:password (refused on a command line as the teacher's is, `medqa.teacher.setup`); the API key only from
  $OPENAI_API_KEY (read by the harness's client); results record the URL as `public_url` shows it.
* Output (default `outputs/eval/<name>/bench_medical/`, medqa's output policy: a lock, a manifest, never over files
  medqa did not write): `harness-<task>.json` per requested task or group (the harness's results, configs and item
  counts, plus the key it was made under; `harness-<task>.generate.json` under `--scoring generate`), `results.json`
  (all of them together) and `table.md`.
* Resumable: a requested task whose unit file was made under the same key (content fingerprint of the model and
  adapter, task YAML and data files, settings with the scoring, harness version) is not run again.
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

from medqa.errors import ExitCode
from medqa.eval.stats import wilson
from medqa.runs.argtypes import at_least
from medqa.runs.io import (
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
from medqa.teacher.setup import (
    base_url_from_env,
    check_base_url,
    has_credentials,
    public_url,
    refuse_credentials_on_command_line,
)

KIND = "bench-medical"
TASKS_DIR = Path(__file__).resolve().parent / "bench_tasks"
DEFAULT_TASKS = "medqa_all"
RESULTS, TABLE, UNIT_PREFIX = "results.json", "table.md", "harness-"
SCORINGS = ("loglik", "generate")
MAX_GEN_TOKS = {"on": 2048, "off": 32}  # --scoring generate's default new-token budget, by thinking
BASE_URL_ENV = "MEDQA_BENCH_BASE_URL"  # --backend api: the server's URL when --base-url is not given
KEY_ENV = "OPENAI_API_KEY"  # --backend api: the API key, read by the harness's client (sent as a bearer token)


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


def resolve_tasks(tm, name: str, digest, max_gen_toks: int | None = None) -> None:
    """Prepare every task under `name` (a task, group or tag) in its index entry, which gets the prepared config in
    place of the YAML path: local JSONL files validated and made absolute (the harness would read them relative to
    the current folder), and with `max_gen_toks` (--scoring generate) the task's generate_until variant
    (`bench_generate.generative_config`). The YAMLs and data files read are hashed into `digest`."""
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = tm.task_index[name]
    if entry.kind.name == "TAG":
        for member in sorted(entry.tags):
            resolve_tasks(tm, member, digest, max_gen_toks)
        return
    if entry.yaml_path is None:
        digest.update(json.dumps(entry.cfg or {"name": name}, sort_keys=True, default=str).encode())
        return
    yaml_path = Path(entry.yaml_path).resolve()
    digest.update(yaml_path.read_bytes())
    if entry.kind.name == "GROUP":
        for member in load_yaml(yaml_path, resolve_func=False).get("task", []):
            if isinstance(member, str) and member in tm.task_index:
                resolve_tasks(tm, member, digest, max_gen_toks)
        return
    if entry.kind.name != "TASK":
        if max_gen_toks is not None:
            raise BenchError(f"{yaml_path}: task {name} is a Python task; --scoring generate derives YAML tasks only")
        return
    cfg = load_yaml(yaml_path, resolve_func=True)
    files = _data_files(cfg, yaml_path)
    if files is not None:
        for paths in files.values():
            for path in paths:
                validate_jsonl(path)
                digest.update(path.read_bytes())
        cfg["dataset_kwargs"] = {**cfg.get("dataset_kwargs", {}),
                                 "data_files": {s: [str(p) for p in ps] for s, ps in files.items()}}
    if max_gen_toks is not None:
        from medqa.eval.bench_generate import generative_config

        if cfg.get("output_type") != "multiple_choice" or cfg.get("doc_to_choice") is None:
            raise BenchError(f"{yaml_path}: task {name}: --scoring generate needs output_type multiple_choice with "
                             f"doc_to_choice (got output_type {cfg.get('output_type')!r})")
        cfg = generative_config(cfg, max_gen_toks)
    if files is not None or max_gen_toks is not None:
        tm.task_index[name] = dataclasses.replace(entry, yaml_path=None, cfg={**cfg, "task": name})


# ---------------------------------------------------------------- model


def api_base_url(flag: str | None) -> str:
    """--backend api's URL: `flag` (--base-url), else $MEDQA_BENCH_BASE_URL; an http(s) URL without user:password
    (the harness's client sends $OPENAI_API_KEY as a bearer token: credentials in the URL would be a second
    Authorization). Credentials on the command line were refused before parsing (`main`)."""
    url, source = (flag, "--base-url") if flag else (base_url_from_env(var=BASE_URL_ENV), f"${BASE_URL_ENV}")
    if not url:
        raise BenchError(f"--backend api needs the server's completions URL: --base-url or ${BASE_URL_ENV} (make: "
                         "BASE_URL=…), e.g. http://localhost:8000/v1/completions (vLLM's `vllm serve`)")
    try:
        check_base_url(url)
    except ValueError as e:
        raise BenchError(f"{source}: {e}") from None
    if has_credentials(url):
        raise BenchError(f"{source} {public_url(url)}: user:password in the URL is not sent by the harness's API "
                         f"client; drop it and put the API key in ${KEY_ENV}")
    return url


def model_identity(args) -> dict[str, Any]:
    """What the results depend on, of the model: content fingerprints of local folders, else the name (api: the
    URL as `public_url` shows it, never the key)."""
    if args.backend == "api":
        return {"backend": "api", "base_url": public_url(args.base_url), "model": args.api_model or args.model}
    from medqa.models.loading import check_model_path, resolve_model_paths

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
    # Thinking goes to the chat template only: the harness's own enable_thinking refuses log-likelihood requests,
    # and the think block of a generated answer is stripped in one place, bench_generate.answer_choice.
    model_args: dict[str, Any] = {"pretrained": ident["model"], "tokenizer": tokenizer, "dtype": args.dtype,
                                  "chat_template_args": {"enable_thinking": args.thinking == "on"}}
    if adapter:
        model_args["peft"] = adapter
    from medqa.models.loading import pick_device

    extra = {"batch_size": args.batch_size, "device": str(pick_device(args.device))}
    return get_model("hf").create_from_arg_obj(model_args, extra)


# ---------------------------------------------------------------- output


def default_out(args) -> Path:
    name = Path(str(args.adapter or (args.api_model if args.backend == "api" else None) or args.model)
                .rstrip("/")).name
    return Path("outputs/eval") / name / "bench_medical"


def unit_file(out: Path, name: str, scoring: str = "loglik") -> Path:
    """The results of one requested task or group under one scoring (both can live in one folder)."""
    suffix = "" if scoring == "loglik" else f".{scoring}"
    return out / f"{UNIT_PREFIX}{name.replace('/', '_')}{suffix}.json"


def _load_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def table_rows(results: dict) -> list[dict]:
    """One row per task or group and accuracy metric: value, stderr, Wilson 95 % interval over the items, n, the
    scoring, and under --scoring generate the number of unparsable answers (a group's: its tasks' sum)."""
    n_samples = results.get("n-samples", {})
    subtasks = results.get("group_subtasks", {})
    scoring = ((results.get("medqa") or {}).get("settings") or {}).get("scoring", "loglik")

    def n_of(task: str) -> int:
        if task in n_samples:
            return int(n_samples[task].get("effective", n_samples[task].get("original", 0)))
        return sum(n_of(t) for t in subtasks.get(task, []))

    def unparsable_of(task: str) -> int | None:
        if task in subtasks:
            counts = [unparsable_of(t) for t in subtasks[task]]
            return None if None in counts else sum(counts)
        value = results.get("results", {}).get(task, {}).get("unparsable,none")
        return round(value) if isinstance(value, (int, float)) else None

    rows = []
    for task, metrics in results.get("results", {}).items():
        n = n_of(task)
        for key, value in metrics.items():
            metric, _, flt = key.partition(",")
            if metric not in ("acc", "acc_norm", "exact_match") or not isinstance(value, (int, float)):
                continue
            stderr = metrics.get(f"{metric}_stderr,{flt}")
            ci = wilson(round(value * n), n) if n else None
            row = {"task": task, "metric": metric, "value": float(value),
                   "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                   "ci95": list(ci) if ci else None, "n": n, "scoring": scoring}
            if scoring == "generate":
                row["unparsable"] = unparsable_of(task)
            rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The rows as markdown; with a column of unparsable answers when the rows were scored by generation."""
    generated = any("unparsable" in r for r in rows)
    lines = ["| task | metric | value | ± stderr | 95 % interval (Wilson) | n items |" + (" unparsable |" * generated),
             "|---|---|---|---|---|---|" + ("---|" * generated)]
    for r in rows:
        se = f"± {r['stderr']:.3f}" if r["stderr"] is not None else "n/a"
        ci = f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]" if r["ci95"] else "n/a"
        extra = (f" {r['unparsable'] if r.get('unparsable') is not None else 'n/a'} |" if generated else "")
        lines.append(f"| {r['task']} | {r['metric']} | {r['value']:.3f} | {se} | {ci} | {r['n']} |{extra}")
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


def check_request(args) -> list[str]:
    """The requested task names; the backend, thinking and generation settings completed and checked (one-line
    BenchError), before anything loads."""
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not names:
        raise BenchError("--tasks: no task named")
    if args.backend == "api":
        args.base_url = api_base_url(args.base_url)
        if args.thinking == "off":
            raise BenchError("--backend api cannot switch Qwen3 thinking off (the harness's API models take no chat "
                             "template arguments); use --backend hf, or --thinking on")
        args.thinking = "on"
    args.thinking = args.thinking or "off"
    if args.max_gen_toks is not None and args.scoring != "generate":
        raise BenchError("--max-gen-toks applies to --scoring generate only")
    if args.scoring == "generate":
        args.max_gen_toks = args.max_gen_toks or MAX_GEN_TOKS[args.thinking]
    elif args.thinking == "on":
        print(f"{KIND}: thinking on with log-likelihood scoring: each option is scored as the first words of a "
              "thinking turn; --scoring generate lets the model think first (docs/eval.md, Medical benchmarks)",
              file=sys.stderr)
    for p in args.include_path:
        if not Path(p).is_dir():
            raise BenchError(f"--include-path {p}: not a folder")
    return names


def run_settings(args) -> dict[str, Any]:
    """The settings the results depend on (part of the resume key)."""
    settings = {"thinking": args.thinking, "scoring": args.scoring, "limit": args.limit,
                "num_fewshot": args.num_fewshot, "seed": args.seed, "dtype": args.dtype, "chat_template": True}
    if args.scoring == "generate":
        settings["max_gen_toks"] = args.max_gen_toks
    return settings


def scoring_note(args) -> str:
    """How multiple choice was scored, for the table's header."""
    if args.scoring == "loglik":
        return "multiple choice by log-likelihood"
    return (f"multiple choice by generation (greedy, up to {args.max_gen_toks} new tokens; think block stripped, "
            "the choice extracted; unparsable answers scored wrong)")


def evaluate(lm, name: str, tm, args) -> dict:
    """The harness's results of one task or group, without the per-item samples, as JSON-safe data."""
    import lm_eval

    r = lm_eval.simple_evaluate(
        model=lm, tasks=[name], task_manager=tm, num_fewshot=args.num_fewshot, limit=args.limit,
        apply_chat_template=True, fewshot_as_multiturn=args.num_fewshot > 0, log_samples=False,
        random_seed=args.seed, numpy_random_seed=args.seed, torch_random_seed=args.seed,
        fewshot_random_seed=args.seed, bootstrap_iters=1000)
    return json.loads(json.dumps({k: v for k, v in r.items() if k != "samples"}, default=str))


def run(args) -> dict:
    names = check_request(args)
    out = Path(args.out) if args.out else default_out(args)
    check_output_dir(out, overwrite=args.overwrite, kind=KIND)  # before any work
    ident = model_identity(args)
    settings = run_settings(args)
    tm = task_manager([Path(p) for p in args.include_path], names)
    import lm_eval

    plan = {}
    for name in names:
        digest = hashlib.sha256()
        resolve_tasks(tm, name, digest, args.max_gen_toks if args.scoring == "generate" else None)
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
            path = unit_file(out, name, args.scoring)
            done = _load_json(path)
            if done and done.get("key") == key and not args.overwrite:
                print(f"{KIND}: {name}: finished earlier under the same model, tasks and settings ({path}); skipped",
                      flush=True)
                units[name] = done
                continue
            if lm is None:
                lm = build_lm(args, ident)
            print(f"{KIND}: {name}: running the harness ({ident.get('adapter') or ident['model']}, "
                  f"scoring {args.scoring})", flush=True)
            unit = {"key": key, "task": name, "model": ident, "settings": settings,
                    "harness": evaluate(lm, name, tm, args)}
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
        note = (f"lm-evaluation-harness {lm_eval.__version__}; {scoring_note(args)}, chat template, "
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
    p.add_argument("--base-url", help=f"api: the server's completions URL, e.g. http://localhost:8000/v1/completions "
                   f"(default ${BASE_URL_ENV}); never with user:password: the API key goes in ${KEY_ENV}")
    p.add_argument("--api-model", help="api: the model name the server knows (default: --model)")
    p.add_argument("--tokenizer", help="api: local tokenizer / chat template (default: --model)")
    p.add_argument("--api-concurrency", type=int, default=8)
    p.add_argument("--limit", type=int, help="first N items of each task (quick checks; not comparable numbers)")
    p.add_argument("--thinking", choices=("on", "off"), help="Qwen3 enable_thinking in the chat template "
                   "(default: off for hf; api: the template's default, on)")
    p.add_argument("--scoring", choices=SCORINGS, default="loglik", help="multiple choice by loglik: the "
                   "log-likelihood of each option after the prompt (default); generate: the model answers, the think "
                   "block is stripped and the choice extracted (docs/eval.md, Medical benchmarks)")
    p.add_argument("--max-gen-toks", type=at_least(int, 0, inclusive=False), help="generate: new tokens per answer "
                   f"(default {MAX_GEN_TOKS['on']} with thinking, {MAX_GEN_TOKS['off']} without; a cut think block "
                   "is unparsable)")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        refuse_credentials_on_command_line(argv, names=("--base-url",), env_var=BASE_URL_ENV)
    except ValueError as e:
        print(f"medqa {KIND}: error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (InputError, OutputError, BenchError, FileNotFoundError, ValueError) as e:
        print(f"medqa {KIND}: error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
