"""`medqa predict`: batched generation over a JSONL file, resumable, data-parallel under `accelerate launch`.

Input rows may be any of the project's formats (the first that applies wins):

* chat rows with `messages` ([system], user[, assistant]): the prompt is the chat up to the last user turn,
  the reference is the assistant turn (the prepared `data/processed/*.jsonl` files);
* instruction rows with `instruction` [+ `input`] [+ `output`] (Alpaca style);
* exam rows with `question` + `options` {A..E} + `answer` letter (CMB / MedQA-MCMLE): the options are
  listed under the question, the reference is the letter, and `options` is copied to the output;
* plain rows with `question` or `prompt` [+ `reference`].

Each output row is `{id, question, prediction, reference?, meta?, options?, think, answer, gen_tokens,
latency_ms}` where `think`/`answer` split the prediction at `</think>` (`think` is null without a closed
think block), plus `key`: a hash of what produced the row (the prompt and the model, adapter and generation
settings, the sample's index) and `decoding`. With `--num-samples K` every item gets K rows, told apart by `sample`
(0..K-1), each sampled from its own seed (run seed, item id, sample index), so a sampled run is reproducible
whatever the batch size or the number of processes, and the same prompt under two ids gets two different draws.
Rows are appended durably after every batch, so an interrupted run resumes where it stopped: an item is skipped when
a row with its key is in the output, whatever its position (and, greedy, whatever its id: one prompt is generated
once); rows of another input or model are not reused and are dropped when the file is finished, in input order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medqa.engine import EngineUnavailable
from medqa.errors import ExitCode
from medqa.eval.decoding import add_decoding_args, add_engine_args, decoding_settings
from medqa.models.generation import GenerationSettings, row_seed
from medqa.runs.io import (
    InputError,
    OutputError,
    OutputLock,
    append_jsonl,
    check_output_file,
    iter_jsonl,
    manifest_files,
    record_output_file,
    same_file,
    write_jsonl,
)
from medqa.text.think import split_think

KIND = "predict"  # the command recorded in the output folder's manifest
OPTION_LETTERS = "ABCDEFGH"
MC_INSTRUCTION = "请从以上选项中选择一个最佳答案，先写出答案字母，再简要说明理由。"


@dataclass(frozen=True)
class Item:
    id: str
    messages: list[dict[str, str]]  # the chat up to (and including) the user turn
    question: str
    reference: str | None
    meta: dict | None
    options: dict[str, str] | None
    index: int  # position in the input file


def format_mc_question(question: str, options: dict[str, str]) -> str:
    lines = [question.strip()] + [f"{k}. {str(v).strip()}" for k, v in sorted(options.items())]
    return "\n".join(lines + [MC_INSTRUCTION])


def _text(value, path, line, field) -> str:
    if not isinstance(value, str):
        raise InputError(path, line, field, f"expected a string, got {type(value).__name__}")
    return value


def row_to_item(row: dict, path: str | os.PathLike, line: int, index: int, system: str | None = None) -> Item:
    """Normalise one input row; raises InputError(FILE:LINE: field: reason) on rows it cannot use."""
    rid = row.get("id", f"line-{line}")
    if not isinstance(rid, (str, int)) or isinstance(rid, bool) or str(rid) == "":
        raise InputError(path, line, "id", "expected a non-empty string or integer")
    rid = str(rid)
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else None
    options = None
    reference = None
    sys_msgs = [{"role": "system", "content": system}] if system else []
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
            raise InputError(path, line, "messages", "expected a list of {role, content} objects")
        users = [i for i, m in enumerate(msgs) if m.get("role") == "user"]
        if not users:
            raise InputError(path, line, "messages", "no user turn")
        last = users[-1]
        chat = [{"role": m.get("role"), "content": _text(m.get("content"), path, line, f"messages[{i}].content")}
                for i, m in enumerate(msgs[: last + 1])]
        if system and chat[0]["role"] != "system":
            chat = sys_msgs + chat
        question = chat[-1]["content"]
        after = [m for m in msgs[last + 1:] if m.get("role") == "assistant"]
        reference = after[0].get("content") if after else row.get("output")
    elif "instruction" in row:
        question = _text(row["instruction"], path, line, "instruction").strip()
        extra = row.get("input") or ""
        if extra:
            question = f"{question}\n{_text(extra, path, line, 'input').strip()}"
        chat = sys_msgs + [{"role": "user", "content": question}]
        reference = row.get("output")
    elif "question" in row or "prompt" in row:
        key = "question" if "question" in row else "prompt"
        question = _text(row[key], path, line, key).strip()
        if "options" in row:
            options = row["options"]
            if not isinstance(options, dict) or not options or not all(
                    isinstance(k, str) and k in OPTION_LETTERS and isinstance(v, str) for k, v in options.items()):
                raise InputError(path, line, "options", "expected an object of letter -> option text (A..H)")
            question = format_mc_question(question, options)
            reference = row.get("answer")
            if reference is not None and (not isinstance(reference, str) or reference.strip().upper() not in options):
                raise InputError(path, line, "answer", f"expected one of the option letters {sorted(options)}")
            reference = reference.strip().upper() if reference else None
        else:
            reference = row.get("reference", row.get("output"))
        chat = sys_msgs + [{"role": "user", "content": question}]
    else:
        raise InputError(path, line, None, "no prompt: expected `messages`, `instruction`, `question` or `prompt`")
    if not question.strip():
        raise InputError(path, line, "question", "empty")
    if reference is not None and not isinstance(reference, str):
        raise InputError(path, line, "reference", f"expected a string, got {type(reference).__name__}")
    return Item(rid, chat, question, reference, meta, options, index)


def read_items(path: str | os.PathLike, limit: int | None = None, system: str | None = None) -> list[Item]:
    items: list[Item] = []
    seen: dict[str, int] = {}
    for line, row in iter_jsonl(path):
        if limit is not None and len(items) >= limit:
            break
        item = row_to_item(row, path, line, len(items), system)
        if item.id in seen:
            raise InputError(path, line, "id", f"duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = line
        items.append(item)
    if not items:
        raise InputError(path, None, None, "no rows to predict (the file is empty)")
    return items


def item_key(item: Item, identity: dict, sample: int = 0) -> str:
    """What produced a prediction: the prompt chat, the model identity (model, adapter, generation settings) and,
    past the first, the sample's index (so a run asking for more samples reuses the ones it has). A sampled answer
    is drawn with `row_seed(seed, item id, sample)`, so under sampling the item's id is part of its key too: the same
    prompt under two ids is two draws, not one answer shared (greedy answers of one prompt are shared)."""
    who = identity if sample == 0 else {**identity, "sample_index": sample}
    if identity.get("sample"):
        who = {**who, "item_id": item.id}
    payload = json.dumps([who, item.messages], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def model_identity(model: str, adapter: str | None, settings: dict) -> dict:
    """The model (and adapter) by place *and* content (`content_fingerprint`), and the generation settings: a model
    retrained into the same folder does not reuse the answers of the one before."""
    from medqa.runs.io import content_fingerprint

    def where(p: str | None) -> str | None:
        return str(Path(p).resolve()) if p and Path(p).exists() else p

    return {"model": where(model), "adapter": where(adapter), **settings,
            "weights": [content_fingerprint(model), content_fingerprint(adapter) if adapter else None]}


def output_row(item: Item, text: str, gen_tokens: int, latency_ms: float, sample: int | None = None,
               decoding: dict | None = None) -> dict:
    split = split_think(text)
    row: dict = {"id": item.id, "question": item.question, "prediction": text}
    if sample is not None:
        row["sample"] = sample
    if item.reference is not None:
        row["reference"] = item.reference
    if item.meta is not None:
        row["meta"] = item.meta
    if item.options is not None:
        row["options"] = item.options
    row.update(think=split.think, answer=split.answer, gen_tokens=gen_tokens, latency_ms=latency_ms)
    if decoding is not None:
        row["decoding"] = decoding
    return row


def _shard_paths(output: Path) -> list[Path]:
    return sorted(output.parent.glob(f"{output.name}.rank*.partial"))


def _done_rows(paths: Sequence[Path]) -> dict[str, dict]:
    """Rows already generated, by their `key` (rows without one, from older runs, are not reused)."""
    done: dict[str, dict] = {}
    for p in paths:
        if p.exists():
            for _, row in iter_jsonl(p, tolerant=True):  # a torn last line from a crash is simply redone
                if isinstance(row.get("key"), str) and isinstance(row.get("prediction"), str):
                    done.setdefault(row["key"], row)
    return done


def finalize(output: Path, items: Sequence[Item], keys: dict[tuple[str, int], str], num_samples: int = 1,
             decoding: dict | None = None) -> int:
    """Merge the output and any rank shards into `output`: one row per item (and sample) that has a prediction for
    its key, in input order (rows of other inputs or models are dropped); returns the number of rows."""
    shards = _shard_paths(output)
    done = _done_rows([output, *shards])
    ordered = []
    for it in items:
        for j in range(num_samples):
            row = done.get(keys[it.id, j])
            if row is not None:
                ordered.append({**output_row(it, row["prediction"], row.get("gen_tokens", 0),
                                             row.get("latency_ms", 0.0), j if num_samples > 1 else None, decoding),
                                "key": keys[it.id, j]})
    n = write_jsonl(output, ordered)
    for s in shards:
        s.unlink()
    return n


def run_predict(
    model: str,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    adapter: str | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    settings: GenerationSettings | None = None,
    num_samples: int = 1,
    system: str | None = None,
    device: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
    engine: str = "hf",
    server_url: str | None = None,
) -> dict:
    """Generate predictions for every item (and sample) not yet in `output_path`; returns a small summary.

    `settings` is the decoding (default greedy, `GenerationSettings()`); a sampled one needs its seed, from which
    each of the `num_samples` answers per item gets its own (`row_seed`).
    An existing `output_path` is continued only when medqa predict wrote it (its folder's manifest says so), else
    refused (OutputError) unless `overwrite`; rank 0 holds its lock for the run. `engine` vllm generates on a vLLM
    server (`server_url`, default the URL `make vllm-serve` wrote); its rows record `engine` in their decoding."""
    output = Path(output_path)
    if same_file(input_path, output):
        raise InputError(output, None, None, "--output is the --input file; write predictions elsewhere")
    check_output_file(output, KIND, overwrite=overwrite)
    items = read_items(input_path, limit=limit, system=system)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    state = None
    if world > 1:
        import torch
        from accelerate import PartialState

        # Without CUDA the ranks must join a CPU (gloo) group, else each would think it is alone.
        state = PartialState(cpu=not torch.cuda.is_available())
        if state.num_processes != world:
            raise RuntimeError(f"WORLD_SIZE={world} but accelerate formed a group of {state.num_processes}")
        rank, world = state.process_index, state.num_processes
        device = device or str(state.device)
    settings = GenerationSettings() if settings is None else settings
    if num_samples < 1 or (num_samples > 1 and not settings.do_sample):
        raise ValueError(f"num_samples must be >= 1, and > 1 only with sampling; got {num_samples}")
    if settings.do_sample and settings.seed is None:
        raise ValueError("sampled predictions need a seed (GenerationSettings.seed): each answer is seeded by it")
    from medqa.runs.preemption import rank0_decides

    lock = OutputLock(output, KIND)

    def claim() -> None:
        lock.acquire()
        if output.exists() and manifest_files(output.parent).get(output.name) != KIND:
            output.unlink()  # --overwrite (checked above): replaced, not continued
        record_output_file(output, KIND)

    rank0_decides(claim, rank == 0)
    try:
        return _predict(output, items, rank, world, state, adapter=adapter, batch_size=batch_size, model=model,
                        settings=settings, num_samples=num_samples, device=device, progress=progress, engine=engine,
                        server_url=server_url)
    finally:
        lock.release()


def _predict(output: Path, items: list[Item], rank: int, world: int, state, *, model: str, adapter: str | None,
             batch_size: int, settings: GenerationSettings, num_samples: int, device: str | None,
             progress: bool, engine: str = "hf", server_url: str | None = None) -> dict:
    from medqa.models.generation import chat_input_ids, generate_batch, load_model

    decoding = settings.record()  # written into every row, and part of its key
    if engine != "hf":
        decoding["engine"] = engine  # another engine's samples are other draws: labelled, and keyed apart
    identity = model_identity(model, adapter, decoding)
    keys = {(it.id, j): item_key(it, identity, j) for it in items for j in range(num_samples)}
    done = _done_rows([output, *_shard_paths(output)])
    units = [(it, j) for it in items for j in range(num_samples)]
    pending = list({keys[it.id, j]: (it, j) for it, j in reversed(units) if keys[it.id, j] not in done}.values())[::-1]
    mine = pending[rank::world]
    sink = output if world == 1 else output.with_name(f"{output.name}.rank{rank}.partial")
    generated = 0
    if mine:
        lm, tokenizer = load_model(model, adapter, device=device, engine=engine, server_url=server_url)
        prompts = {it.id: chat_input_ids(tokenizer, it.messages, settings.enable_thinking) for it, _ in mine}
        lengths = {i: len(p) for i, p in prompts.items()}
        # Longest first: similar lengths share a batch (less padding), and an OOM shows up at once.
        mine.sort(key=lambda unit: -lengths[unit[0].id])
        from tqdm.auto import tqdm

        bar = tqdm(total=len(mine), desc=f"predict[{rank}]" if world > 1 else "predict", unit="item",
                   disable=not progress or rank != 0, file=sys.stderr)
        for start in range(0, len(mine), batch_size):
            batch = mine[start:start + batch_size]
            seeds = [row_seed(settings.seed, it.id, j) for it, j in batch] if settings.do_sample else None
            gens = generate_batch(lm, tokenizer, [prompts[it.id] for it, _ in batch], settings, row_seeds=seeds)
            append_jsonl(sink, [{**output_row(it, g.text, g.gen_tokens, g.latency_ms,
                                              j if num_samples > 1 else None, decoding), "key": keys[it.id, j]}
                                for (it, j), g in zip(batch, gens, strict=True)])
            generated += len(batch)
            bar.update(len(batch))
        bar.close()
    if state is not None:
        state.wait_for_everyone()
    total = len(done)
    if rank == 0:
        total = finalize(output, items, keys, num_samples, decoding)
    if state is not None:
        state.wait_for_everyone()
    return {"items": len(items), "skipped": sum(1 for key in keys.values() if key in done), "generated": generated,
            "rows": total, "output": str(output), "processes": world, "decoding": decoding,
            "num_samples": num_samples}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="medqa predict", description="Batched generation from a base model, a PEFT "
                                "adapter or a merged model; resumable; data-parallel under `accelerate launch`.")
    p.add_argument("--model", required=True, help="base or merged model dir/id, or an adapter dir alone")
    p.add_argument("--adapter", help="PEFT adapter dir (LoRA/QLoRA/PPO) applied on top of --model")
    p.add_argument("--input", required=True, help="JSONL: chat, instruction, exam (options+answer) or question rows")
    p.add_argument("--output", required=True, help="JSONL predictions (appended; ids already there are skipped)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, help="only the first N input rows")
    add_decoding_args(p)
    add_engine_args(p)
    p.add_argument("--system", help="system prompt for rows that do not carry one")
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda when available; per rank under accelerate)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --output that medqa predict did not write")
    args = p.parse_args(argv)
    if args.batch_size < 1 or (args.limit is not None and args.limit < 0):
        p.error("--batch-size must be >= 1, --limit >= 0")
    try:
        summary = run_predict(
            args.model, args.input, args.output, adapter=args.adapter, batch_size=args.batch_size,
            limit=args.limit, system=args.system, device=args.device, progress=not args.no_progress,
            overwrite=args.overwrite, settings=decoding_settings(args), num_samples=args.num_samples,
            engine=args.engine, server_url=args.vllm_url,
        )
    except (InputError, OutputError, OSError, ValueError, EngineUnavailable) as e:
        print(f"medqa predict: error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    if int(os.environ.get("RANK", "0")) == 0:
        who = f"rank 0 of {summary['processes']}: " if summary["processes"] > 1 else ""
        print(f"predict: {who}{summary['generated']} generated, {summary['skipped']} already done, "
              f"{summary['rows']} rows in {summary['output']}")
    return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
