"""`medqa eval score`: score a predictions file (any model's) into `metrics.json` + `items.jsonl`.

A predictions row needs `id`, `question` and `prediction` (the raw generation, think block included);
`reference`, `meta` (risk_level, specialty, …) and, for exam items, `options` + `reference` letter are used
when present; `reward` / `reward_parts` (e.g. from an RL run's logs) are carried through to the report, or, with a
teacher, replaced by the RL reward of the prediction (`judge_with_teacher`).
Exam rows (with `options`) count towards `think_coverage` and `mc_accuracy` only: their clinical vignettes
are not user questions, so the emergency and prescription checks do not apply to them.

Several answers per item (rows sharing an `id`, told apart by `sample`, as `medqa predict --num-samples K` writes
them) are scored one by one into `samples.jsonl`; `items.jsonl` then holds one row per item whose flags and scores
are the means over its samples, and every metric and interval is computed over items (a 0/1 flag becomes the
item's rate). The rows' `decoding` is recorded in `metrics.json`, with `eos_rate` (answers that ended before the
token budget) when the budget is known.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import medqa.eval.metrics as registry
from medqa.eval.stats import bootstrap_mean, wilson
from medqa.runs.io import (
    InputError,
    atomic_write,
    check_output_file,
    ensure_out_folder,
    file_sha256,
    iter_jsonl,
    record_output_file,
    write_jsonl,
)


@dataclass(frozen=True)
class Pred:
    id: str
    question: str
    prediction: str
    reference: str | None
    meta: dict | None
    options: dict | None
    extra: dict  # reward / reward_parts / teacher scores carried through
    sample: int | None = None  # index among the item's answers (None: the item's only answer)
    decoding: dict | None = None  # how the answer was generated (predict writes it)
    gen_tokens: int | None = None


def read_predictions(path: str | os.PathLike) -> list[Pred]:
    preds: list[Pred] = []
    seen: dict[tuple[str, int | None], int] = {}
    for line, row in iter_jsonl(path):
        for field in ("id", "question", "prediction"):
            if field not in row:
                raise InputError(path, line, field, "missing")
        rid = row["id"]
        if not isinstance(rid, (str, int)) or isinstance(rid, bool):
            raise InputError(path, line, "id", "expected a string or integer")
        rid = str(rid)
        sample = row.get("sample")
        if sample is not None and (not isinstance(sample, int) or isinstance(sample, bool) or sample < 0):
            raise InputError(path, line, "sample", "expected an integer >= 0")
        if (rid, sample) in seen or (rid, None) in seen or (sample is None and any(k[0] == rid for k in seen)):
            first = seen.get((rid, sample)) or next(v for k, v in seen.items() if k[0] == rid)
            raise InputError(path, line, "id", f"duplicate id {rid!r} (first on line {first}; several answers to "
                                               "one item need distinct `sample` indices)")
        seen[rid, sample] = line
        for field in ("question", "prediction"):
            if not isinstance(row[field], str):
                raise InputError(path, line, field, f"expected a string, got {type(row[field]).__name__}")
        ref = row.get("reference")
        if ref is not None and not isinstance(ref, str):
            raise InputError(path, line, "reference", f"expected a string, got {type(ref).__name__}")
        meta = row.get("meta")
        if meta is not None and not isinstance(meta, dict):
            raise InputError(path, line, "meta", f"expected an object, got {type(meta).__name__}")
        options = row.get("options")
        if options is not None:
            if not isinstance(options, dict) or not options or not all(isinstance(v, str) for v in options.values()):
                raise InputError(path, line, "options", "expected an object of letter -> option text")
            if not isinstance(ref, str) or ref.strip().upper() not in options:
                raise InputError(path, line, "reference", f"exam rows need the answer letter, one of {sorted(options)}")
        extra = {k: row[k] for k in ("reward", "reward_parts", "teacher") if k in row}
        if "reward_parts" in extra and not (isinstance(extra["reward_parts"], dict) and all(
                isinstance(v, (int, float)) for v in extra["reward_parts"].values())):
            raise InputError(path, line, "reward_parts", "expected an object of name -> number")
        decoding = row.get("decoding") if isinstance(row.get("decoding"), dict) else None
        gen_tokens = row.get("gen_tokens") if isinstance(row.get("gen_tokens"), int) else None
        preds.append(Pred(rid, row["question"], row["prediction"], ref, meta, options, extra, sample, decoding,
                          gen_tokens))
    if not preds:
        raise InputError(path, None, None, "no predictions to score (the file is empty)")
    return preds


def _proportion(values: list[float], seed: int) -> dict[str, Any]:
    """A rate over items: Wilson's interval for 0/1 flags, a bootstrap over items for per-item rates (the means of
    several samples)."""
    n = len(values)
    if all(v in (0, 1) for v in values):
        k = int(sum(values))
        ci = wilson(k, n)
    else:
        k = round(sum(values), 4)
        ci = bootstrap_mean(values, seed=seed)
    return {"value": (sum(values) / n if n else None), "k": k, "n": n, "ci95": list(ci) if ci else None}


def _mean(values: list[float], seed: int) -> dict[str, Any]:
    ci = bootstrap_mean(values, seed=seed)
    return {"value": (sum(values) / len(values) if values else None), "n": len(values),
            "ci95": list(ci) if ci else None}


def _summaries(items: list[dict], seed: int) -> dict[str, dict[str, Any]]:
    """The registry's metric summaries from per-item values (also used for per-risk-level breakdowns)."""
    summarise_one = {"proportion": _proportion, "mean": _mean}
    return {spec.name: summarise_one[spec.kind]([spec.value(it) for it in items if spec.counts(it)],
                                                seed + spec.seed_offset)
            for spec in registry.METRICS if spec.summarised}


def score_items(preds: list[Pred]) -> list[dict]:
    """Run every metric module over the predictions and merge their per-item outputs into item rows."""
    from medqa.eval.items import answer_length
    from medqa.text.think import split_think

    items: list[dict] = []
    for p in preds:
        meta = p.meta or {}
        items.append({"id": p.id, **({"sample": p.sample} if p.sample is not None else {}),
                      "kind": "mc" if p.options else "open",
                      "risk_level": meta.get("risk_level"), "specialty": meta.get("specialty"),
                      "answer_len_chars": answer_length(split_think(p.prediction).answer)})
    if not preds:
        return items
    defaults: dict[str, Any] = {}
    for spec in registry.METRICS:
        module = spec.module
        if module is None:
            continue
        idx = [i for i, p in enumerate(preds) if module.reads(p)]
        if idx:
            out = registry.load_metric(module.name).compute(**module.inputs([preds[i] for i in idx]))
            for i, f in zip(idx, out["per_item"], strict=True):
                items[i].update(f if module.keep is None else {k: f[k] for k in module.keep})
        defaults.update(module.defaults)
    for it, p in zip(items, preds, strict=True):
        for k, v in defaults.items():
            it.setdefault(k, v)
        budget = (p.decoding or {}).get("max_new_tokens")
        if isinstance(budget, int) and p.gen_tokens is not None:
            it["eos"] = p.gen_tokens < budget  # the answer ended with EOS before the token budget ran out
        extra = dict(p.extra)
        teacher = extra.pop("teacher", None)
        it.update(extra)
        scores = teacher.get("scores") if isinstance(teacher, dict) else None
        if isinstance(teacher, dict) and isinstance(teacher.get("needs_emergency"), bool) and it["kind"] == "open":
            it["teacher_needs_emergency"] = teacher["needs_emergency"]
        if isinstance(scores, dict) and scores:
            it["teacher_scores"] = {k: float(v) for k, v in scores.items()}
            it["teacher_overall"] = float(teacher["overall_score"]) if teacher.get("overall_score") is not None \
                else None
            it["teacher_model"] = teacher.get("model")
    return items


# Per-answer fields that describe the item, not the answer: an item's value is its first answer's.
ITEM_FIELDS = ("id", "kind", "risk_level", "specialty", "needs_emergency", "red_flags", "teacher_needs_emergency",
               "teacher_model")


def _mean_or_none(values: list) -> float | None:
    nums = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(nums) / len(nums) if nums else None


def mean_over_samples(samples: list[dict]) -> list[dict]:
    """One row per item from its answers' rows (in first-seen order): numbers and 0/1 flags become means over the
    item's answers, lists their union, and `n_samples` says how many answers there were."""
    groups: dict[str, list[dict]] = {}
    for row in samples:
        groups.setdefault(row["id"], []).append(row)
    items = []
    for rows in groups.values():
        if len(rows) == 1:
            items.append({**{k: v for k, v in rows[0].items() if k != "sample"}, "n_samples": 1})
            continue
        item: dict[str, Any] = {k: rows[0].get(k) for k in ITEM_FIELDS if k in rows[0]}
        for key in dict.fromkeys(k for r in rows for k in r):
            if key in item or key == "sample":
                continue
            values = [r.get(key) for r in rows]
            if all(v is None for v in values):
                item[key] = None
            elif all(isinstance(v, list) for v in values if v is not None):
                item[key] = sorted({str(x) for v in values if v for x in v})
            elif all(isinstance(v, dict) for v in values if v is not None):
                keys = dict.fromkeys(k for v in values if v for k in v)
                item[key] = {k: _mean_or_none([v.get(k) for v in values if v]) for k in keys}
            elif any(isinstance(v, (bool, int, float)) for v in values):
                item[key] = _mean_or_none(values)
            else:
                item[key] = values[0]
        item["n_samples"] = len(rows)
        items.append(item)
    return items


def summarise(items: list[dict], seed: int = 0) -> dict[str, Any]:
    """metrics.json content: the metric values at top level, then counts, CIs and breakdowns."""
    summ = _summaries(items, seed)
    metrics: dict[str, Any] = {name: s["value"] for name, s in summ.items()}
    metrics["n_items"] = len(items)
    metrics["num_samples"] = max((int(it.get("n_samples") or 1) for it in items), default=1)
    metrics["n_open"] = sum(it["kind"] == "open" for it in items)
    metrics["n_mc"] = sum(it["kind"] == "mc" for it in items)
    metrics["counts"] = {name: {k: s[k] for k in ("k", "n") if k in s} for name, s in summ.items()}
    metrics["ci95"] = {name: s["ci95"] for name, s in summ.items()}
    metrics["mc_unparsed"] = sum(it["kind"] == "mc" and it["mc_choice"] is None for it in items)
    eos = [float(it["eos"]) for it in items if isinstance(it.get("eos"), (int, float))]
    if eos:
        metrics["eos_rate"] = sum(eos) / len(eos)
        ci = bootstrap_mean(eos, seed=seed + 7)
        metrics["ci95"]["eos_rate"] = list(ci) if ci else None
    by_level: dict[str, list[dict]] = defaultdict(list)
    for it in items:
        if it["kind"] == "open":
            by_level[str(it.get("risk_level") or "unknown")].append(it)
    breakdown = {part: [spec.name for spec in registry.METRICS if part in spec.by_risk_level]
                 for part in ("value", "counts")}
    metrics["by_risk_level"] = {}
    for level, rows in sorted(by_level.items()):
        level_summ = _summaries(rows, seed)
        metrics["by_risk_level"][level] = {
            "n": len(rows), **{name: level_summ[name]["value"] for name in breakdown["value"]},
            "counts": {name: {"k": level_summ[name]["k"], "n": level_summ[name]["n"]} for name in breakdown["counts"]}}
    judged = [it for it in items if it.get("teacher_scores")]
    if judged:
        crit = sorted({k for it in judged for k in it["teacher_scores"]})
        metrics["teacher"] = {"n": len(judged), "models": sorted({str(it.get("teacher_model")) for it in judged})}
        overall = registry.metric("teacher_overall")  # summarised here, beside the teacher's criteria
        for i, c in enumerate(["overall", *crit]):
            vals = [it["teacher_overall"] if c == "overall" else it["teacher_scores"].get(c) for it in judged]
            vals = [float(v) for v in vals if v is not None]
            if vals:
                metrics["teacher"][c] = sum(vals) / len(vals)
                ci = bootstrap_mean(vals, seed=seed + overall.seed_offset + i)
                metrics["ci95"][f"teacher_{c}"] = list(ci) if ci else None
        metrics[overall.name] = metrics["teacher"].get("overall")
    second = rules_vs_teacher(items)
    if second is not None:
        metrics["rules_vs_teacher"] = second
    rewards = [float(it["reward"]) for it in items if isinstance(it.get("reward"), (int, float))]
    if rewards:
        metrics["reward"] = sum(rewards) / len(rewards)
        ci = bootstrap_mean(rewards, seed=seed + 2)
        metrics["ci95"]["reward"] = list(ci) if ci else None
    parts: dict[str, list[float]] = defaultdict(list)
    for it in items:
        for k, v in (it.get("reward_parts") or {}).items():
            parts[k].append(float(v))
    if parts:
        metrics["reward_parts"] = {k: sum(v) / len(v) for k, v in sorted(parts.items())}
    return metrics


def rules_vs_teacher(items: list[dict]) -> dict[str, Any] | None:
    """Agreement of the rules' `needs_emergency` with the teacher's second opinion on the same questions, and the
    items where they disagree (where the red-flag lexicon's blind spots show up); None when no teacher gave one."""
    judged = [it for it in items if isinstance(it.get("teacher_needs_emergency"), bool)]
    if not judged:
        return None
    agree = sum(it["needs_emergency"] == it["teacher_needs_emergency"] for it in judged)
    return {"field": "needs_emergency", "n": len(judged), "agree": agree, "agreement": agree / len(judged),
            "teacher_only": sum(it["teacher_needs_emergency"] and not it["needs_emergency"] for it in judged),
            "rules_only": sum(it["needs_emergency"] and not it["teacher_needs_emergency"] for it in judged),
            "disagreements": [{"id": it["id"], "rules": it["needs_emergency"], "teacher": it["teacher_needs_emergency"],
                               "red_flags": it["red_flags"]}
                              for it in judged if it["needs_emergency"] != it["teacher_needs_emergency"]]}


def judge_with_teacher(preds: list[Pred], config, cache_path: str | None = None,
                       weights: Any = None) -> tuple[list[Pred], dict]:
    """Judge the predictions that have no teacher judgement yet, through the teacher client and its cache, and give
    every prediction the RL reward: `reward` / `reward_parts` from `medqa.rewards.total_rewards` (`weights`: the
    `RewardArguments` of the RL run that made the model, from `medqa.rewards.run_reward_weights`; the defaults when
    None; a failed judgement takes the file's mean teacher term). Like PPO's and GRPO's teacher, the
    teacher sees the question and the whole generated text (think block included); the rules read it as PPO's
    rule reward does. The summary counts the failed judgements."""
    from dataclasses import replace

    from medqa.rewards import RewardArguments, rule_reward, total_rewards
    from medqa.teacher.client import score_pairs

    todo = [i for i, p in enumerate(preds) if not (isinstance(p.extra.get("teacher"), dict)
                                                   and p.extra["teacher"].get("scores"))]
    pairs = [(preds[i].question, preds[i].prediction) for i in todo]
    results, usage = score_pairs(config, pairs, cache_path) if pairs else ([], None)
    judgements: list[Any] = [p.extra.get("teacher") for p in preds]
    for i, res in zip(todo, results, strict=True):
        judgements[i] = res
    weights = (weights or RewardArguments()).weights
    rewards = total_rewards([rule_reward(p.question, p.prediction, p.meta) for p in preds], judgements, weights)
    out = []
    for p, judgement, reward in zip(preds, judgements, rewards, strict=True):
        extra = {**p.extra, "reward": reward.total, "reward_parts": reward.reward_parts()}
        if hasattr(judgement, "teacher_field") and judgement.ok:
            extra["teacher"] = judgement.teacher_field()
        out.append(replace(p, extra=extra))
    failed = sum(not r.ok for r in results)
    errors = sorted({str(r.error) for r in results if not r.ok})
    summary = {"judged": len(todo) - failed, "failed": failed, "model": config.model,
               "weights": asdict(weights),
               "usage": usage.summary(config) if usage else None, "errors": errors[:3]}
    return out, summary


KIND = "eval"  # the command recorded in the output folder's manifest for metrics.json and items.jsonl
SCORED_FILES = ("metrics.json", "items.jsonl")


def check_score_outputs(out_dir: str | os.PathLike, predictions: str | os.PathLike, overwrite: bool = False) -> None:
    """OutputError unless `out_dir`'s metrics.json and items.jsonl are missing or were written by a medqa eval."""
    for name in SCORED_FILES:
        check_output_file(Path(out_dir) / name, KIND, inputs=[predictions], overwrite=overwrite)


def score_file(predictions: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0, teacher=None,
               teacher_cache: str | None = None, overwrite: bool = False,
               weights: Any = None) -> dict[str, Any]:
    """Score `predictions` and write `out_dir/metrics.json` and `out_dir/items.jsonl` atomically; existing ones
    are replaced only when a medqa eval wrote them, or with `overwrite`.

    `teacher` (a `medqa.teacher.client.TeacherConfig`) adds judged sub-scores to rows that lack them and sets every
    row's `reward` / `reward_parts` to the RL reward (`judge_with_teacher`, mixed with `weights`);
    `metrics["source"]["teacher"]` counts the failed judgements and names the weights."""
    predictions, out = Path(predictions), Path(out_dir)
    check_score_outputs(out, predictions, overwrite)
    preds = read_predictions(predictions)
    teacher_summary = None
    if teacher is not None:
        preds, teacher_summary = judge_with_teacher(preds, teacher, teacher_cache, weights)
    samples = score_items(preds)
    items = mean_over_samples(samples)
    metrics = summarise(items, seed=seed)
    decodings = list({json.dumps(p.decoding, sort_keys=True): p.decoding for p in preds}.values())
    metrics["decoding"] = decodings[0] if len(decodings) == 1 else decodings
    if "rules_vs_teacher" in metrics:
        questions = {p.id: p.question for p in preds}
        for d in metrics["rules_vs_teacher"]["disagreements"]:
            d["question"] = questions[d["id"]][:300]
    metrics["source"] = {"predictions": str(predictions), "sha256": file_sha256(predictions), "seed": seed,
                         "scored_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if teacher_summary is not None:
        metrics["source"]["teacher"] = teacher_summary
    ensure_out_folder(out)
    for name in SCORED_FILES:
        record_output_file(out / name, KIND)
    write_jsonl(out / "items.jsonl", items)
    if metrics["num_samples"] > 1:
        write_jsonl(out / "samples.jsonl", samples)
    elif (out / "samples.jsonl").is_file():
        (out / "samples.jsonl").unlink()  # ours, from an earlier scoring of several samples per item
    with atomic_write(out / "metrics.json") as fh:
        json.dump(metrics, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    return metrics
