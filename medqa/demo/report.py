"""The demo's report: base vs SFT vs RL on gold and red team, SFT loss and PPO reward/KL curves, answers side by
side, and `summary.json` with the numbers the demo has to show. The pairwise reports come from
`medqa.eval.compare` (base→SFT, SFT→RL); this module adds the three-way view and the training curves.

The primary RL number is RL − SFT red-team reward under PPO's own rollout decoding (K answers per item, averaged
per item, paired over items), with the reward split into its terms (each rule, the teacher) so a reader sees which
terms RL moved; the greedy + repetition-penalty numbers are the second, labelled view."""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

from medqa.eval.compare import _html_table, _md_table, _save, load_run, write_report
from medqa.eval.metrics import metric
from medqa.eval.stats import paired_bootstrap_diff
from medqa.runs.io import atomic_write, read_jsonl

# The demo's story picks metrics per set (format on gold, safety on the red team): (set, name), each name one of the
# registry's metrics (`medqa.eval.metrics.METRICS`) or of metrics.json's other summaries (`OTHER_SUMMARIES`);
# an unknown name fails here, at import, instead of showing as "–".
OTHER_SUMMARIES = ("reward", "eos_rate")
METRICS = tuple((s, m if m in OTHER_SUMMARIES else metric(m).name) for s, m in (
    ("gold_set", "think_coverage"), ("red_team", "think_coverage"), ("red_team", "emergency_coverage"),
    ("red_team", "risky_prescription_rate"), ("red_team", "reward"), ("gold_set", "rougeL_char")))
RED_TEAM = tuple(m for s, m in METRICS if s == "red_team")  # the red team's numbers in summary.json
N_SAMPLES = 3  # answers shown side by side per set
SAMPLE_CHARS = 600


# ---------------------------------------------------------------- rewards on the red team


def add_rewards(set_dir: str | os.PathLike, seed: int = 0, teacher_args: Any = None,
                reward_from: str | os.PathLike | None = None) -> dict:
    """Score the folder's predictions with the RL reward and rescore it: `medqa eval score --teacher`'s
    `score_file`, so every item gets `reward` = `medqa.rewards.total_rewards` of the rules and the teacher on the
    whole generated text (as PPO sees it, without its format penalties; a failed judgement takes the mean teacher
    term of the judged items, and is counted). The teacher comes from `medqa.teacher.setup.build_teacher` with
    `teacher_args` — by default the real judge when an API key is set, else the offline one — and its default
    cache; the weights are those the RL run `reward_from` optimised (`medqa.rewards.run_reward_weights`), the same
    for every model compared against it."""
    from medqa.eval.score import score_file
    from medqa.rewards import run_reward_weights
    from medqa.teacher.setup import TeacherArgs, build_teacher

    set_dir = Path(set_dir)
    if teacher_args is None:
        real = os.environ.get("DEEPSEEK_API_KEY") or os.environ.get("MEDQA_TEACHER_API_KEY")
        teacher_args = TeacherArgs(teacher_offline=not real)
    with build_teacher(teacher_args, quiet=True) as teacher:
        metrics = score_file(set_dir / "predictions.jsonl", set_dir, seed=seed, teacher=teacher.config,
                             teacher_cache=teacher.cache_path, weights=run_reward_weights(reward_from))
    judged = metrics["source"]["teacher"]
    print(f"   {set_dir}: mean reward {metrics.get('reward', float('nan')):.3f} over {metrics['n_items']} items "
          f"(teacher {judged['model']}; {judged['failed']} judgements failed)", flush=True)
    return metrics


# ---------------------------------------------------------------- the reward's terms, per item


def scored_predictions(set_dir: Path) -> list[dict]:
    """The folder's predictions, each with the `reward_parts` its scoring gave it (`add_rewards`: samples.jsonl
    when the items were answered several times, else items.jsonl), matched by item id and sample index."""
    set_dir = Path(set_dir)
    scored_file = set_dir / "samples.jsonl" if (set_dir / "samples.jsonl").is_file() else set_dir / "items.jsonl"
    parts = {(str(r["id"]), r.get("sample")): r.get("reward_parts") for r in read_jsonl(scored_file)}
    rows = read_jsonl(set_dir / "predictions.jsonl")
    return [{**row, "reward_parts": parts.get((str(row["id"]), row.get("sample")))} for row in rows]


def reward_terms(rows: list[dict]) -> dict[str, dict[str, float]]:
    """{item id: {term: mean over the item's answers}}: each rule's score on the whole generated text (as PPO's
    reward sees it), the rules' total, and the teacher's overall / 10 where the answer was judged."""
    from medqa.rewards import rule_reward

    sums: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        rules = rule_reward(row["question"], row["prediction"], row.get("meta"))
        terms = sums.setdefault(str(row["id"]), {})
        for name, part in rules.parts.items():
            terms.setdefault(name, []).append(float(part.score))
        terms.setdefault("rules", []).append(float(rules.total))
        teacher = (row.get("reward_parts") or {}).get("teacher")
        if isinstance(teacher, (int, float)):
            terms.setdefault("teacher", []).append(float(teacher))
    return {rid: {k: sum(v) / len(v) for k, v in terms.items()} for rid, terms in sums.items()}


def term_deltas(rows_a: list[dict], rows_b: list[dict], seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per reward term: the mean for A (SFT) and B (RL) over the items both answered, and the paired B − A with its
    bootstrap 95 % interval."""
    a, b = reward_terms(rows_a), reward_terms(rows_b)
    shared = [rid for rid in a if rid in b]
    names = list(dict.fromkeys(k for rid in shared for k in (*a[rid], *b[rid])))
    out = {}
    for name in names:
        pairs = [(a[rid][name], b[rid][name]) for rid in shared if name in a[rid] and name in b[rid]]
        if not pairs:
            continue
        xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
        delta, lo, hi = paired_bootstrap_diff(xs, ys, seed=seed)
        out[name] = {"sft": round(sum(xs) / len(xs), 4), "rl": round(sum(ys) / len(ys), 4), "delta": round(delta, 4),
                     "ci95": [round(lo, 4), round(hi, 4)], "n": len(xs)}
    return out


def closed_think_rate(items: list[dict]) -> float | None:
    """Share of answers with a closed, non-empty think block (`has_think`, per-item means averaged over items),
    whether or not an answer follows and the block is well formed (`think_coverage` asks both)."""
    vals = [float(it["has_think"]) for it in items if isinstance(it.get("has_think"), (bool, int, float))]
    return sum(vals) / len(vals) if vals else None


def rollout_rates(ppo: list[dict]) -> dict[str, Any]:
    """The PPO rollouts' EOS rate and closed-think rate (first step, last step, mean over steps)."""
    out: dict[str, Any] = {}
    for key in ("eos_rate", "think_closed_rate"):
        vals = [float(r[key]) for r in ppo if isinstance(r.get(key), (int, float))]
        out[key] = {"first": vals[0], "last": vals[-1], "mean": round(sum(vals) / len(vals), 4)} if vals else None
    return out


# ---------------------------------------------------------------- curves and plots


def sft_curves(sft_dir: Path) -> dict[str, Any]:
    """SFT's train and eval losses, and the eval loss of the model it saved (None when that step was not evaluated)."""
    s = json.loads((sft_dir / "sft_summary.json").read_text(encoding="utf-8"))
    return {"train": s.get("train_losses") or [], "eval": s.get("eval_losses") or [], "kept": s.get("eval_loss_kept")}


def ppo_curves(rl_dir: Path) -> list[dict]:
    return [r for r in read_jsonl(rl_dir / "metrics.jsonl", tolerant=True) if "step" in r]


def _plots(runs: dict, vocab: int, sft: dict, ppo: list[dict], out: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plots = []
    colors = {"base": "#95a5a6", "sft": "#2e86c1", "rl": "#c0392b"}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.0 * len(METRICS), 3.3), squeeze=False)
    for ax, (s, m) in zip(axes[0], METRICS, strict=True):
        for j, name in enumerate(runs):
            met = runs[name].get(s, {}).get("metrics", {})
            v, ci = met.get(m), (met.get("ci95") or {}).get(m)
            if v is None:
                continue
            err = [[max(0.0, v - ci[0])], [max(0.0, ci[1] - v)]] if ci else None
            ax.bar([j], [v], yerr=err, capsize=3, color=colors.get(name, "#555"), label=name)
        ax.set_xticks(range(len(runs)), list(runs))
        ax.set_title(f"{s}: {m}", fontsize=8)
    fig.suptitle("base / SFT / RL with 95 % intervals")
    _save(fig, out / "plots" / "metrics3.png")
    plt.close(fig)
    plots.append(("plots/metrics3.png", "Metrics of base, SFT and RL with 95 % confidence intervals."))

    fig, ax = plt.subplots(figsize=(5.5, 3.3))
    if sft["train"]:
        ax.plot(range(1, len(sft["train"]) + 1), sft["train"], label="train loss (per log step)")
    if sft["eval"]:
        xs = [i * max(1, len(sft["train"])) / max(1, len(sft["eval"]) - 1) for i in range(len(sft["eval"]))]
        ax.plot(xs, sft["eval"], "o-", label="eval loss (dev)")
    if vocab:
        ax.axhline(math.log(vocab), ls="--", color="#999", label=f"uniform guess ln {vocab}")
    ax.set_xlabel("training progress (log steps)")
    ax.set_ylabel("loss (nats/token)")
    ax.legend(fontsize=8)
    ax.set_title("SFT loss")
    _save(fig, out / "plots" / "sft_loss.png")
    plt.close(fig)
    plots.append(("plots/sft_loss.png", "SFT train and eval loss (assistant tokens) against a uniform guess."))

    if ppo:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
        steps = [r["step"] for r in ppo]
        a1.plot(steps, [r.get("reward") for r in ppo], "o-", color=colors["rl"])
        a1.set_title("PPO mean reward per step")
        a2.plot(steps, [r.get("kl") for r in ppo], "o-", color="#8e44ad")
        a2.set_title("PPO KL to the SFT policy")
        for a in (a1, a2):
            a.set_xlabel("step")
        _save(fig, out / "plots" / "ppo.png")
        plt.close(fig)
        plots.append(("plots/ppo.png", "PPO reward and KL per step."))
    return plots


# ---------------------------------------------------------------- tables


def _fmt(v, ci=None) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def metrics_table(runs: dict) -> list[list[str]]:
    names = list(runs)
    rows = [["set", "metric", *names]]
    for s, m in METRICS:
        cells = []
        for n in names:
            met = runs[n].get(s, {}).get("metrics", {})
            cells.append(_fmt(met.get(m), (met.get("ci95") or {}).get(m)))
        rows.append([s, m, *cells])
    return rows


def sample_rows(runs: dict, preds: dict) -> list[list[str]]:
    names = list(runs)
    rows = [["set", "question", *names]]
    for s in ("gold_set", "red_team"):
        first = preds.get(names[0], {}).get(s, [])
        for row in first[:N_SAMPLES]:
            cells = []
            for n in names:
                match = next((r for r in preds.get(n, {}).get(s, []) if r["id"] == row["id"]), None)
                text = match["prediction"] if match else ""
                cells.append(text[:SAMPLE_CHARS] + ("…" if len(text) > SAMPLE_CHARS else ""))
            rows.append([s, row["question"][:300], *cells])
    return rows


def reward_delta(runs: dict, a: str = "sft", b: str = "rl", seed: int = 0) -> dict[str, Any]:
    """Paired RL − SFT mean reward on the red team (same items), with a bootstrap 95 % interval."""
    items_a = {it["id"]: it for it in runs[a]["red_team"]["items"] if isinstance(it.get("reward"), (int, float))}
    xs, ys = [], []
    for it in runs[b]["red_team"]["items"]:
        if it["id"] in items_a and isinstance(it.get("reward"), (int, float)):
            xs.append(float(items_a[it["id"]]["reward"]))
            ys.append(float(it["reward"]))
    if not xs:
        raise ValueError("no red-team item has a reward in both the SFT and the RL run")
    delta, lo, hi = paired_bootstrap_diff(xs, ys, seed=seed)
    return {"delta": round(delta, 4), "ci95": [round(lo, 4), round(hi, 4)], "n": len(xs),
            "sft_mean": round(sum(xs) / len(xs), 4), "rl_mean": round(sum(ys) / len(ys), 4)}


# ---------------------------------------------------------------- per set, model and language

# What the per-language view reports: the think format, the safety rates, reference similarity (ROUGE-L over
# characters), the teacher's overall score (0-10) where the set was judged, the RL reward, and answers that ended.
# The per-language table's picks, checked against the registry like METRICS above.
LANG_METRICS = tuple(m if m in OTHER_SUMMARIES else metric(m).name for m in (
    "think_coverage", "emergency_coverage", "risky_prescription_rate", "rougeL_char", "teacher_overall", "reward",
    "eos_rate"))


def item_languages(set_dir: Path) -> dict[str, str]:
    """{item id: en | zh}: the row's `meta.lang_style` (`make data`), else read from the question's script."""
    from medqa.data.meta import infer_language

    out: dict[str, str] = {}
    for row in read_jsonl(Path(set_dir) / "predictions.jsonl"):
        out.setdefault(str(row["id"]), (row.get("meta") or {}).get("lang_style") or infer_language(row["question"]))
    return out


def set_metrics(set_dir: Path, seed: int = 0) -> dict[str, dict[str, Any]]:
    """A scored set's `LANG_METRICS` with 95 % intervals over all its items (`all`: metrics.json's numbers) and per
    language (`en`, `zh`), each over items (an item answered K times counts once, with its means)."""
    from medqa.eval.score import summarise

    items = read_jsonl(Path(set_dir) / "items.jsonl")
    langs = item_languages(set_dir)
    groups: dict[str, list[dict]] = {"all": items}
    for it in items:
        groups.setdefault(langs.get(str(it["id"]), "unknown"), []).append(it)
    out = {}
    for name in ("all", *sorted(k for k in groups if k != "all")):
        m = summarise(groups[name], seed=seed)
        present = [k for k in LANG_METRICS if isinstance(m.get(k), (int, float))]
        out[name] = {"n": m["n_items"], **{k: round(m[k], 4) for k in present},
                     "ci95": {k: [round(x, 4) for x in m["ci95"][k]] if m["ci95"].get(k) else None for k in present}}
    return out


def language_rows(table: dict[str, dict[str, dict]], models: list[str]) -> list[list[str]]:
    """Markdown/HTML rows of `set_metrics` per set, language and metric, one column per model."""
    rows = [["set", "language", "n", "metric", *models]]
    for set_name, by_model in table.items():
        langs = list(dict.fromkeys(lang for m in models for lang in by_model.get(m, {})))
        for lang in langs:
            cells = {m: by_model.get(m, {}).get(lang, {}) for m in models}
            n = next((c["n"] for c in cells.values() if c), 0)
            for name in LANG_METRICS:
                if not any(name in c for c in cells.values()):
                    continue
                rows.append([set_name, lang, str(n), name,
                             *[_fmt(c.get(name), (c.get("ci95") or {}).get(name)) for c in cells.values()]])
    return rows


# ---------------------------------------------------------------- the report


def _fmt_delta(d: dict) -> str:
    return f"{d['delta']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"


def terms_table(sampled: dict, greedy: dict) -> list[list[str]]:
    """SFT vs RL per reward term, under PPO's decoding and under greedy + penalty (terms that are 0 throughout are
    left out of the table, not out of summary.json)."""
    rows = [["term", "SFT (PPO decoding)", "RL (PPO decoding)", "RL − SFT (PPO decoding)", "SFT (greedy)",
             "RL (greedy)", "RL − SFT (greedy)"]]
    for name in dict.fromkeys([*sampled, *greedy]):
        s, g = sampled.get(name), greedy.get(name)
        if not any(d and (d["sft"] or d["rl"]) for d in (s, g)):
            continue
        rows.append([name, *((f"{s['sft']:.3f}", f"{s['rl']:.3f}", _fmt_delta(s)) if s else ("–",) * 3),
                     *((f"{g['sft']:.3f}", f"{g['rl']:.3f}", _fmt_delta(g)) if g else ("–",) * 3)])
    return rows


def write_demo_report(cfg) -> dict:
    from medqa.eval.decoding import decoding_from

    out = cfg.out / "report"
    runs: dict[str, Any] = {}
    preds: dict[str, dict] = {}
    for name in ("base", "sft", "rl"):
        d = cfg.out / "eval" / name
        runs[name] = load_run(d)
        preds[name] = {s: read_jsonl(d / s / "predictions.jsonl") for s in runs[name]}
    sft = sft_curves(cfg.sft_dir)
    ppo = ppo_curves(cfg.rl_dir)
    vocab = json.loads((cfg.base / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    delta = reward_delta(runs, seed=cfg.seed)
    sampled = {name: load_run(cfg.sampled_dir(name)) for name in cfg.sampled_models}
    sampled_preds = {name: scored_predictions(cfg.sampled_dir(name) / "red_team") for name in ("sft", "rl")}
    rollout_decoding = decoding_from(cfg.rl_dir)
    k = max(sampled[n]["red_team"]["metrics"].get("num_samples", 1) for n in sampled)
    delta_sampled = {**reward_delta(sampled, seed=cfg.seed), "k": k, "decoding": rollout_decoding}
    greedy_preds = {name: scored_predictions(cfg.out / "eval" / name / "red_team") for name in ("sft", "rl")}
    terms = {"sampled": term_deltas(sampled_preds["sft"], sampled_preds["rl"], seed=cfg.seed),
             "greedy": term_deltas(greedy_preds["sft"], greedy_preds["rl"], seed=cfg.seed)}
    rollouts = rollout_rates(ppo)
    by_set = {s: {name: set_metrics(cfg.out / "eval" / name / s, seed=cfg.seed) for name in ("base", "sft", "rl")}
              for s in ("gold_set", "red_team")}
    by_set_sampled = {"red_team": {name: set_metrics(cfg.sampled_dir(name) / "red_team", seed=cfg.seed)
                                   for name in cfg.sampled_models}}
    summary = {
        "stage_seconds": {k: v.get("seconds") for k, v in cfg.stages.items()},
        "base_think_coverage_gold": runs["base"]["gold_set"]["metrics"]["think_coverage"],
        "sft_think_coverage_gold": runs["sft"]["gold_set"]["metrics"]["think_coverage"],
        "rl_think_coverage_gold": runs["rl"]["gold_set"]["metrics"]["think_coverage"],
        "rl_minus_sft_reward_red_team": delta,
        "rl_minus_sft_reward_red_team_sampled": delta_sampled,
        "rl_minus_sft_reward_terms_red_team": terms,
        "red_team_sampled": {n: {**{m: sampled[n]["red_team"]["metrics"].get(m) for m in (*RED_TEAM, "eos_rate")},
                                 "closed_think_rate": closed_think_rate(sampled[n]["red_team"]["items"])}
                             for n in sampled},
        "rollouts": {**rollouts, "max_new_tokens": rollout_decoding["max_new_tokens"]},
        # per set and model: all items and each language, with 95 % intervals (greedy + penalty; PPO's decoding)
        "metrics": by_set,
        "metrics_sampled": by_set_sampled,
        "eval_loss_first": sft["eval"][0] if sft["eval"] else None,
        "eval_loss_last": sft["eval"][-1] if sft["eval"] else None,
        "eval_loss_kept": sft["kept"],
        "eval_losses": sft["eval"],
        "vocab_size": vocab,
        "ln_vocab": round(math.log(vocab), 4),
        "ppo_reward_first": ppo[0].get("reward") if ppo else None,
        "ppo_reward_last": ppo[-1].get("reward") if ppo else None,
        "red_team": {n: {m: runs[n]["red_team"]["metrics"].get(m) for m in RED_TEAM} for n in ("base", "sft", "rl")},
        "n_items": {s: runs["sft"][s]["metrics"]["n_items"] for s in runs["sft"]},
        "decoding": {"greedy": True, "repetition_penalty": cfg.repetition_penalty,
                     "max_new_tokens": cfg.max_new_tokens},
        "base": str(cfg.base),
        "limit": cfg.limit,
        "teacher": "real (API key set)" if (os.environ.get("DEEPSEEK_API_KEY")
                                            or os.environ.get("MEDQA_TEACHER_API_KEY")) else "offline heuristic judge",
    }
    write_report(cfg.out / "eval" / "base", cfg.out / "eval" / "sft", out / "base-vs-sft", seed=cfg.seed)
    write_report(cfg.out / "eval" / "sft", cfg.out / "eval" / "rl", out / "sft-vs-rl", seed=cfg.seed)
    write_report(cfg.sampled_dir("sft"), cfg.sampled_dir("rl"), out / "sft-vs-rl-sampled", seed=cfg.seed)
    plots = _plots(runs, vocab, sft, ppo, out)
    table, samples = metrics_table(runs), sample_rows(runs, preds)
    term_rows = terms_table(terms["sampled"], terms["greedy"])
    dec = rollout_decoding
    dec_text = (f"temperature {dec['temperature']}, repetition penalty {dec.get('repetition_penalty', 1.0)}, "
                f"top-p {dec['top_p']}, top-k {dec['top_k'] or 'off'}, "
                f"{dec['max_new_tokens']} new tokens, thinking {'on' if dec['enable_thinking'] else 'off'}")
    rs = summary["red_team_sampled"]

    def rate(d, key):
        return "–" if not d or d.get(key) is None else f"{d[key]:.2f}"
    safety_rows = [["model", "emergency coverage, PPO's decoding", "risky prescriptions, PPO's decoding",
                    "emergency coverage, greedy", "risky prescriptions, greedy"]]
    safety_rows += [[n, rate(rs.get(n), "emergency_coverage"), rate(rs.get(n), "risky_prescription_rate"),
                     rate(summary["red_team"][n], "emergency_coverage"),
                     rate(summary["red_team"][n], "risky_prescription_rate")] for n in ("base", "sft", "rl")]
    lang_rows = language_rows(by_set, ["base", "sft", "rl"])
    lang_rows_sampled = language_rows(by_set_sampled, list(cfg.sampled_models))
    times = [["stage", "seconds"]] + [[k, "skipped" if v.get("skipped") else str(v.get("seconds"))]
                                      for k, v in cfg.stages.items()]
    lines = [
        "# medqa demo: base → SFT → RL", "",
        f"Teacher: {summary['teacher']}. Base `{cfg.base}` (vocabulary {vocab}, "
        f"ln {summary['ln_vocab']:.2f}). Two decodings: SFT and RL answer the red team {k} times per item the way "
        f"PPO sampled its rollouts ({dec_text}); and base, SFT and RL answer gold and red team greedily with "
        f"repetition penalty {cfg.repetition_penalty}, at most {cfg.max_new_tokens} new tokens.", "",
        "## What each stage shows", "",
        f"- **SFT teaches the format**: think coverage on gold {summary['base_think_coverage_gold']:.2f} (base) → "
        f"{summary['sft_think_coverage_gold']:.2f} (SFT); eval loss {_fmt(summary['eval_loss_first'])} → "
        f"{_fmt(summary['eval_loss_last'])} (uniform guess {summary['ln_vocab']:.2f}).",
        f"- **RL vs SFT on the red team, under PPO's own decoding** (primary; reward 0.6·rules + 0.4·teacher; "
        f"{dec_text}; {k} answers per item, averaged per item, paired over items): "
        f"{delta_sampled['sft_mean']:.3f} → {delta_sampled['rl_mean']:.3f}, paired Δ {_fmt_delta(delta_sampled)}, "
        f"n={delta_sampled['n']}"
        + (" — the interval excludes 0." if delta_sampled["ci95"][0] > 0 or delta_sampled["ci95"][1] < 0 else
           " — the interval includes 0: no significant difference."),
        f"- **RL vs SFT on the red team, greedy + repetition penalty {cfg.repetition_penalty}** (second view, a "
        f"decoding PPO never sampled): {delta['sft_mean']:.3f} → {delta['rl_mean']:.3f}, paired Δ "
        f"{_fmt_delta(delta)}, n={delta['n']}"
        + (" — the interval excludes 0." if delta["ci95"][0] > 0 or delta["ci95"][1] < 0 else
           " — the interval includes 0: no significant difference."),
        f"- **Is the answer reachable?** PPO's rollouts ended with EOS at a rate of "
        f"{rate(rollouts['eos_rate'], 'first')} (first step) → {rate(rollouts['eos_rate'], 'last')} (last) and closed "
        f"`</think>` at {rate(rollouts['think_closed_rate'], 'first')} → {rate(rollouts['think_closed_rate'], 'last')}; "
        f"on the red team under the same decoding, a closed think block SFT {rate(rs['sft'], 'closed_think_rate')}, "
        f"RL {rate(rs['rl'], 'closed_think_rate')}; well formed and followed by an answer SFT "
        f"{rate(rs['sft'], 'think_coverage')}, RL {rate(rs['rl'], 'think_coverage')}; EOS within the budget SFT "
        f"{rate(rs['sft'], 'eos_rate')}, RL {rate(rs['rl'], 'eos_rate')}.",
        "", "## Which reward terms RL moved (red team, per-item means, paired 95 % intervals)", "",
        _md_table(term_rows), "",
        "## Safety rates on the red team, both decodings", "",
        _md_table(safety_rows), "",
        "## Metrics, greedy + repetition penalty (95 % intervals)", "", _md_table(table), "",
        f"## Per language (en / zh), greedy + repetition penalty{f', first {cfg.limit} items per set' if cfg.limit else ''}"
        " (95 % intervals)", "", _md_table(lang_rows), "",
        "## Per language, red team under PPO's decoding (per-item means over the K answers, 95 % intervals)", "",
        _md_table(lang_rows_sampled), "",
        "Pairwise reports with per-item changes: [base vs SFT](base-vs-sft/report.html), "
        "[SFT vs RL](sft-vs-rl/report.html), [SFT vs RL under PPO's decoding](sft-vs-rl-sampled/report.html).", "",
        "## Plots", "",
    ]
    for path, caption in plots:
        lines += [f"![{caption}]({path})", "", f"*{caption}*", ""]
    lines += ["## Sample answers side by side", "", _md_table(samples), "", "## Stage times", "", _md_table(times), ""]
    page = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>medqa demo</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}",
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;"
        "vertical-align:top;white-space:pre-wrap}th{background:#f3f3f3}img{max-width:100%}</style></head><body>",
        "<h1>medqa demo: base → SFT → RL</h1>",
        *[f"<p>{html.escape(line.lstrip('- '))}</p>" for line in lines[2:10] if line],
        "<h2>Which reward terms RL moved (red team, per-item means, paired 95 % intervals)</h2>",
        _html_table(term_rows),
        "<h2>Safety rates on the red team, both decodings</h2>", _html_table(safety_rows),
        "<h2>Metrics, greedy + repetition penalty (95 % intervals)</h2>", _html_table(table),
        "<h2>Per language (en / zh), greedy + repetition penalty (95 % intervals)</h2>", _html_table(lang_rows),
        "<h2>Per language, red team under PPO's decoding (95 % intervals)</h2>", _html_table(lang_rows_sampled),
        "<p>Pairwise reports: <a href='base-vs-sft/report.html'>base vs SFT</a>, "
        "<a href='sft-vs-rl/report.html'>SFT vs RL</a>, <a href='sft-vs-rl-sampled/report.html'>SFT vs RL under "
        "PPO's decoding</a>.</p><h2>Plots</h2>",
        *[f"<figure><img src='{html.escape(p)}' alt='{html.escape(c)}'><figcaption>{html.escape(c)}</figcaption>"
          "</figure>" for p, c in plots],
        "<h2>Sample answers side by side</h2>", _html_table(samples),
        "<h2>Stage times</h2>", _html_table(times), "</body></html>",
    ]
    with atomic_write(out / "report.md") as fh:
        fh.write("\n".join(lines))
    with atomic_write(out / "report.html") as fh:
        fh.write("\n".join(page))
    with atomic_write(cfg.out / "summary.json") as fh:
        json.dump(summary, fh, ensure_ascii=False, indent=2)
    return summary
