"""`medqa eval compare RUN_A RUN_B --out DIR`: did run B (e.g. after PPO) get safer than run A (e.g. SFT)?

A run is either one scored folder (`metrics.json` + `items.jsonl`) or a folder of them, one per evaluation set
(`outputs/eval/<name>/{gold,red_team,test}/`). Sets present in both runs are compared item by item (same ids; an
item answered several times counts once, with its per-item means):
each metric's difference B − A gets a paired bootstrap 95 % interval, and the verdict says "better"/"worse"
only when that interval excludes zero. Writes `report.md`, `report.html`, `plots/*.png`, `comparison.json`
and `flag_changes.jsonl` (every item whose safety flags changed).
"""

from __future__ import annotations

import html
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import medqa.eval.metrics as registry
from medqa.eval.stats import paired_bootstrap_diff
from medqa.runs.io import (
    InputError,
    atomic_write,
    check_output_dir,
    ensure_out_folder,
    read_jsonl,
    write_jsonl,
    write_manifest,
)

# Flags whose change the report lists item by item.
SAFETY_FLAGS = ("think_ok", "has_emergency_referral", "risky_prescription", "mc_correct")


def load_run(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """{set name: {"metrics": dict, "items": [..]}} for a scored folder or a folder of scored folders."""
    root = Path(path)
    if (root / "metrics.json").is_file():
        dirs = [root]
    else:
        dirs = sorted(d for d in root.iterdir() if (d / "metrics.json").is_file()) if root.is_dir() else []
    if not dirs:
        raise FileNotFoundError(f"{root}: no metrics.json here or in its sub-folders (run `medqa eval score` first)")
    run = {}
    for d in dirs:
        try:
            metrics = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(d / "metrics.json", e.lineno, None, f"malformed JSON ({e.msg})") from None
        items_path = d / "items.jsonl"
        if not items_path.is_file():
            raise FileNotFoundError(f"{items_path}: missing (score the predictions again)")
        run[d.name] = {"metrics": metrics, "items": read_jsonl(items_path)}
    return run


MIN_PAIRED = 10  # fewer paired items than this: no verdict (a bootstrap of 3 items proves nothing)


def _verdict(name: str, diff: tuple[float, float, float] | None, n: int) -> str:
    if diff is None:
        return "n/a (no items)"
    if n < MIN_PAIRED:
        return f"too few items for a verdict (n={n} < {MIN_PAIRED})"
    delta, lo, hi = diff
    spec = registry.metric(name)
    if lo <= 0 <= hi:
        return "no significant difference"
    if spec.higher_is_better is None:
        return "B " + spec.directions[0 if delta > 0 else 1]
    return "B better" if (delta > 0) == spec.higher_is_better else "B worse"


def _paired(items_a: list[dict], items_b: list[dict], name: str) -> tuple[list[float], list[float]]:
    spec = registry.metric(name)
    by_id = {it["id"]: it for it in items_b}
    xs, ys = [], []
    for a in items_a:
        b = by_id.get(a["id"])
        if b is not None and spec.counts(a) and spec.counts(b):
            xs.append(spec.value(a))
            ys.append(spec.value(b))
    return xs, ys


def _fmt(v: float | None, name: str) -> str:
    return registry.metric(name).format(v)


def _fmt_ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def compare_runs(a: dict, b: dict, seed: int = 0) -> dict[str, Any]:
    sets = [s for s in a if s in b]
    if not sets:
        raise ValueError(f"the runs share no evaluation set (A: {sorted(a)}, B: {sorted(b)})")
    result: dict[str, Any] = {"sets": sets, "per_set": {}, "overall": {}, "flag_changes": []}
    pooled: dict[str, tuple[list[float], list[float]]] = {spec.name: ([], []) for spec in registry.METRICS}
    for s in sets:
        ma, mb = a[s]["metrics"], b[s]["metrics"]
        rows = {}
        for m in pooled:
            xs, ys = _paired(a[s]["items"], b[s]["items"], m)
            pooled[m][0].extend(xs)
            pooled[m][1].extend(ys)
            diff = paired_bootstrap_diff(xs, ys, seed=seed) if xs else None
            rows[m] = {"a": ma.get(m), "b": mb.get(m), "a_ci95": ma.get("ci95", {}).get(m),
                       "b_ci95": mb.get("ci95", {}).get(m), "n_paired": len(xs),
                       "delta": diff[0] if diff else None, "delta_ci95": list(diff[1:]) if diff else None,
                       "verdict": _verdict(m, diff, len(xs))}
        result["per_set"][s] = rows
        by_id = {it["id"]: it for it in b[s]["items"]}
        for ia in a[s]["items"]:
            ib = by_id.get(ia["id"])
            if ib is None:
                continue
            for flag in SAFETY_FLAGS:
                if flag == "has_emergency_referral" and not ia.get("needs_emergency"):
                    continue
                va, vb = ia.get(flag), ib.get(flag)
                if va is not None and vb is not None and bool(va) != bool(vb):
                    result["flag_changes"].append({"set": s, "id": ia["id"], "flag": flag, "a": bool(va),
                                                   "b": bool(vb), "risk_level": ia.get("risk_level")})
    shared = sum(len({it["id"] for it in a[s]["items"]} & {it["id"] for it in b[s]["items"]}) for s in sets)
    result["shared_items"] = shared
    if not shared:
        result["warning"] = ("the runs share no item ids, so nothing could be compared: were A and B scored on the "
                             "same evaluation set?")
    for m, (xs, ys) in pooled.items():
        diff = paired_bootstrap_diff(xs, ys, seed=seed) if xs else None
        result["overall"][m] = {"n_paired": len(xs), "a": (sum(xs) / len(xs) if xs else None),
                                "b": (sum(ys) / len(ys) if ys else None),
                                "delta": diff[0] if diff else None,
                                "delta_ci95": list(diff[1:]) if diff else None, "verdict": _verdict(m, diff, len(xs))}
    return result


# ------------------------------------------------------------------------------------------------ plots


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def make_plots(a: dict, b: dict, result: dict, out: Path, names: tuple[str, str]) -> list[tuple[str, str]]:
    """Write the PNGs; returns [(file name relative to out, caption)]."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plots: list[tuple[str, str]] = []
    sets = result["sets"]
    colors = ("#7f8c8d", "#2e86c1")
    # 1. metric bars with CIs, one panel per metric, A/B bars per set
    metrics = [spec.name for spec in registry.METRICS if spec.scale == (0.0, 1.0) and any(
        result["per_set"][s][spec.name]["a"] is not None or result["per_set"][s][spec.name]["b"] is not None
        for s in sets)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics), 3.4), squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        for j, (run, name) in enumerate(((a, names[0]), (b, names[1]))):
            xs = [i + (j - 0.5) * 0.38 for i in range(len(sets))]
            vals = [run[s]["metrics"].get(m) for s in sets]
            cis = [run[s]["metrics"].get("ci95", {}).get(m) for s in sets]
            h = [v if v is not None else 0.0 for v in vals]
            err = [[max(0.0, v - c[0]) if (v is not None and c) else 0.0 for v, c in zip(vals, cis, strict=True)],
                   [max(0.0, c[1] - v) if (v is not None and c) else 0.0 for v, c in zip(vals, cis, strict=True)]]
            ax.bar(xs, h, width=0.38, yerr=err, capsize=3, color=colors[j], label=name)
        ax.set_xticks(range(len(sets)), sets, rotation=20)
        ax.set_ylim(0, 1.05)
        ax.set_title(m + (" ↓" if registry.metric(m).higher_is_better is False else " ↑"), fontsize=9)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Metrics per set (95 % CI)")
    _save(fig, out / "plots" / "metrics.png")
    plt.close(fig)
    plots.append(("plots/metrics.png", "Metric values per evaluation set with 95 % confidence intervals."))

    # 2. per-risk-level breakdown (pooled over sets)
    levels = sorted({str(it.get("risk_level") or "unknown") for run in (a, b) for s in sets
                     for it in run[s]["items"] if it["kind"] == "open"})
    if levels:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), squeeze=False)
        # the two safety rates, by name: this plot and its caption are about them
        for ax, m in zip(axes[0], ("emergency_coverage", "risky_prescription_rate"), strict=True):
            value, keep = registry.metric(m).value, registry.metric(m).counts
            for j, (run, name) in enumerate(((a, names[0]), (b, names[1]))):
                vals, ns = [], []
                for lv in levels:
                    xs = [value(it) for s in sets for it in run[s]["items"]
                          if keep(it) and str(it.get("risk_level") or "unknown") == lv]
                    vals.append(sum(xs) / len(xs) if xs else 0.0)
                    ns.append(len(xs))
                pos = [i + (j - 0.5) * 0.38 for i in range(len(levels))]
                bars = ax.bar(pos, vals, width=0.38, color=colors[j], label=name)
                for bar, n in zip(bars, ns, strict=True):
                    ax.annotate(f"n={n}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                ha="center", va="bottom", fontsize=7)
            ax.set_xticks(range(len(levels)), levels)
            ax.set_ylim(0, 1.1)
            ax.set_title(f"{m} by risk level", fontsize=9)
        axes[0][0].legend(fontsize=8)
        _save(fig, out / "plots" / "risk_levels.png")
        plt.close(fig)
        plots.append(("plots/risk_levels.png", "Emergency coverage and risky-prescription rate per risk level."))

    # 3. answer length distributions
    fig, axes = plt.subplots(1, len(sets), figsize=(3.6 * len(sets), 3.0), squeeze=False)
    for ax, s in zip(axes[0], sets, strict=True):
        for j, (run, name) in enumerate(((a, names[0]), (b, names[1]))):
            ax.hist([it["answer_len_chars"] for it in run[s]["items"]], bins=20, alpha=0.55, color=colors[j],
                    label=name)
        ax.set_title(f"{s}: answer length (chars)", fontsize=9)
    axes[0][0].legend(fontsize=8)
    _save(fig, out / "plots" / "lengths.png")
    plt.close(fig)
    plots.append(("plots/lengths.png", "Distribution of answer lengths (characters after </think>)."))

    # 4. teacher sub-scores (0-10), when the runs were judged
    crit = sorted({k for run in (a, b) for s in sets for k in (run[s]["metrics"].get("teacher") or {})
                   if k not in ("n", "models")})
    if crit:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(crit)), 3.2))
        for j, (run, name) in enumerate(((a, names[0]), (b, names[1]))):
            vals = []
            for c in crit:
                xs = [float(it["teacher_overall"] if c == "overall" else it["teacher_scores"][c])
                      for s in sets for it in run[s]["items"] if it.get("teacher_scores")
                      and (c == "overall" or c in it["teacher_scores"]) and
                      (c != "overall" or it.get("teacher_overall") is not None)]
                vals.append(sum(xs) / len(xs) if xs else 0.0)
            ax.bar([i + (j - 0.5) * 0.38 for i in range(len(crit))], vals, width=0.38, color=colors[j], label=name)
        ax.set_xticks(range(len(crit)), crit, rotation=20)
        ax.set_ylim(0, 10.5)
        ax.set_title("teacher sub-scores (0-10)", fontsize=9)
        ax.legend(fontsize=8)
        _save(fig, out / "plots" / "teacher.png")
        plt.close(fig)
        plots.append(("plots/teacher.png", "Mean teacher-judged sub-scores per run."))

    # 5. reward parts, when the predictions carried them
    parts = sorted({k for run in (a, b) for s in sets for k in (run[s]["metrics"].get("reward_parts") or {})})
    if parts:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(parts)), 3.2))
        for j, (run, name) in enumerate(((a, names[0]), (b, names[1]))):
            vals = []
            for k in parts:
                xs = [float(it["reward_parts"][k]) for s in sets for it in run[s]["items"]
                      if isinstance(it.get("reward_parts"), dict) and k in it["reward_parts"]]
                vals.append(sum(xs) / len(xs) if xs else 0.0)
            ax.bar([i + (j - 0.5) * 0.38 for i in range(len(parts))], vals, width=0.38, color=colors[j], label=name)
        ax.set_xticks(range(len(parts)), parts, rotation=20)
        ax.set_title("mean reward parts", fontsize=9)
        ax.legend(fontsize=8)
        _save(fig, out / "plots" / "reward_parts.png")
        plt.close(fig)
        plots.append(("plots/reward_parts.png", "Mean reward components per run."))
    return plots


# ------------------------------------------------------------------------------------------------ report

MAX_CHANGE_ROWS = 200


def _tables(result: dict, names: tuple[str, str]) -> tuple[list[list[str]], dict[str, list[list[str]]]]:
    head = ["metric", f"A ({names[0]})", f"B ({names[1]})", "Δ (B−A)", "Δ 95 % CI", "n", "verdict"]
    overall = [head]
    for m, r in result["overall"].items():
        overall.append([m, _fmt(r["a"], m), _fmt(r["b"], m), _fmt(r["delta"], m), _fmt_ci(r["delta_ci95"]),
                        str(r["n_paired"]), r["verdict"]])
    per_set = {}
    for s, rows in result["per_set"].items():
        t = [["metric", "A", "A 95 % CI", "B", "B 95 % CI", "Δ (B−A)", "n paired", "verdict"]]
        for m, r in rows.items():
            t.append([m, _fmt(r["a"], m), _fmt_ci(r["a_ci95"]), _fmt(r["b"], m), _fmt_ci(r["b_ci95"]),
                      _fmt(r["delta"], m), str(r["n_paired"]), r["verdict"]])
        per_set[s] = t
    return overall, per_set


def _md_table(rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "---|" * len(esc[0])]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _change_rows(result: dict, questions: dict[tuple[str, str], str]) -> list[list[str]]:
    rows = [["set", "id", "risk", "flag", "A → B", "question"]]
    for c in result["flag_changes"][:MAX_CHANGE_ROWS]:
        q = questions.get((c["set"], c["id"]), "")
        rows.append([c["set"], c["id"], str(c.get("risk_level") or ""), c["flag"], f"{c['a']} → {c['b']}",
                     q[:80] + ("…" if len(q) > 80 else "")])
    return rows


BENCH_FOLDER = "bench_medical"  # where `medqa bench-medical` writes into a model's eval folder (its default --out)


def bench_rows(run_a: str | os.PathLike, run_b: str | os.PathLike, names: tuple[str, str]) -> list[list[str]] | None:
    """The medical benchmarks (`medqa bench-medical`) of both runs side by side: per task, accuracy metric and scoring
    (rows of different scorings are not paired; a generate row's metric reads `acc (generate)`), A and B with their
    Wilson 95 % intervals over the items and B − A; None unless both runs have results."""
    from medqa.eval.bench_medical import RESULTS, table_rows

    def rows(run) -> dict[tuple[str, str], dict]:
        """{(task, metric and scoring): row} of a run's results; empty without results."""
        path = Path(run) / BENCH_FOLDER / RESULTS
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(path, e.lineno, None, f"malformed JSON ({e.msg})") from None
        return {(r["task"], r["metric"] + ("" if r["scoring"] == "loglik" else f" ({r['scoring']})")): r
                for r in table_rows(data)}

    a, b = rows(run_a), rows(run_b)
    if not (a and b):
        return None
    table = [["task", "metric", f"A ({names[0]})", "A 95 % CI", f"B ({names[1]})", "B 95 % CI", "Δ (B−A)", "n A / B"]]
    for key in sorted(set(a) & set(b)):
        ra, rb = a[key], b[key]
        table.append([*key, f"{ra['value']:.3f}", _fmt_ci(ra["ci95"]), f"{rb['value']:.3f}", _fmt_ci(rb["ci95"]),
                      f"{rb['value'] - ra['value']:+.3f}", f"{ra['n']} / {rb['n']}"])
    return table if len(table) > 1 else None


KIND = "eval-compare"  # the command recorded in the report folder's manifest
REPORT_ENTRIES = ("plots", "flag_changes.jsonl", "comparison.json", "report.md", "report.html", ".*.tmp")


def write_report(run_a: str | os.PathLike, run_b: str | os.PathLike, out_dir: str | os.PathLike,
                 seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """The report folder `out_dir`: empty, new, or an earlier report (else OutputError, unless `overwrite`)."""
    check_output_dir(out_dir, [run_a, run_b], overwrite=overwrite, kind=KIND)
    a, b = load_run(run_a), load_run(run_b)
    names = (Path(run_a).name or str(run_a), Path(run_b).name or str(run_b))
    if names[0] == names[1]:
        names = (f"A:{names[0]}", f"B:{names[1]}")
    out = ensure_out_folder(out_dir)
    write_manifest(out, KIND, REPORT_ENTRIES)
    result = compare_runs(a, b, seed=seed)
    plots = make_plots(a, b, result, out, names)
    questions = _questions(run_a, result["sets"])
    overall, per_set = _tables(result, names)
    changes = _change_rows(result, questions)
    n_changes = len(result["flag_changes"])
    lower = [spec.name for spec in registry.METRICS if spec.higher_is_better is False]
    verdict_lines = [f"- **{m}**: {r['verdict']}"
                     + (f" (Δ {_fmt(r['delta'], m)}, 95 % CI {_fmt_ci(r['delta_ci95'])}, n={r['n_paired']})"
                        if r["delta"] is not None else "") for m, r in result["overall"].items()]
    md = [f"# Evaluation report: {names[0]} (A) vs {names[1]} (B)", "",
          f"A = `{run_a}`, B = `{run_b}`; sets compared: {', '.join(result['sets'])}. Differences are B − A over "
          "the same items with a paired bootstrap 95 % interval; a verdict of better/worse needs the interval "
          f"to exclude 0. ↓ = lower is better ({', '.join(lower)}).", "", "## Verdicts (all sets pooled)", "",
          *([f"> **Warning:** {result['warning']}", ""] if result.get("warning") else []),
          *verdict_lines, "", _md_table(overall), ""]
    for s, t in per_set.items():
        md += [f"## Set `{s}`", "", _md_table(t), ""]
    md += ["## Plots", ""]
    for path, caption in plots:
        md += [f"![{caption}]({path})", "", f"*{caption}*", ""]
    bench = bench_rows(run_a, run_b, names)
    bench_note = ("Accuracy of each run's own `medqa bench-medical` results (log-likelihood scoring unless the metric "
                  "names another; the two runs may differ in tasks or item limits: compare only rows with the same n).")
    if bench:
        md += ["## Medical benchmarks", "", bench_note, "", _md_table(bench), ""]
    md += [f"## Items whose safety flags changed ({n_changes})", ""]
    if n_changes:
        md += [_md_table(changes), ""]
        if n_changes > MAX_CHANGE_ROWS:
            md += [f"First {MAX_CHANGE_ROWS} shown; all in `flag_changes.jsonl`.", ""]
    else:
        md += ["No item changed a safety flag.", ""]
    html_parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(names[0])} vs {html.escape(names[1])}</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}",
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px}",
        "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}.v{font-weight:600}</style></head><body>",
        f"<h1>Evaluation report: {html.escape(names[0])} (A) vs {html.escape(names[1])} (B)</h1>",
        f"<p>A = <code>{html.escape(str(run_a))}</code>, B = <code>{html.escape(str(run_b))}</code>; sets: "
        f"{html.escape(', '.join(result['sets']))}. Differences are B − A over the same items with a paired "
        "bootstrap 95 % interval; better/worse needs the interval to exclude 0.</p>",
        *([f"<p><strong>Warning:</strong> {html.escape(result['warning'])}</p>"] if result.get("warning") else []),
        "<h2>Verdicts (all sets pooled)</h2><ul>",
        *[f"<li><span class='v'>{html.escape(m)}</span>: {html.escape(r['verdict'])}</li>"
          for m, r in result["overall"].items()],
        "</ul>", _html_table(overall),
    ]
    for s, t in per_set.items():
        html_parts += [f"<h2>Set <code>{html.escape(s)}</code></h2>", _html_table(t)]
    html_parts.append("<h2>Plots</h2>")
    for path, caption in plots:
        html_parts.append(f"<figure><img src='{html.escape(path)}' alt='{html.escape(caption)}'>"
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if bench:
        html_parts += ["<h2>Medical benchmarks</h2>", f"<p>{html.escape(bench_note)}</p>", _html_table(bench)]
    html_parts.append(f"<h2>Items whose safety flags changed ({n_changes})</h2>")
    html_parts.append(_html_table(changes) if n_changes else "<p>No item changed a safety flag.</p>")
    html_parts.append("</body></html>")
    write_jsonl(out / "flag_changes.jsonl", result["flag_changes"])
    with atomic_write(out / "comparison.json") as fh:
        json.dump({k: v for k, v in result.items() if k != "flag_changes"} | {"n_flag_changes": n_changes,
                  "a": str(run_a), "b": str(run_b)}, fh, ensure_ascii=False, indent=2)
    with atomic_write(out / "report.md") as fh:
        fh.write("\n".join(md))
    with atomic_write(out / "report.html") as fh:
        fh.write("\n".join(html_parts))
    return result


def _questions(run_path, sets) -> dict[tuple[str, str], str]:
    """Question text per (set, id), from the predictions next to each scored folder when they exist."""
    out: dict[tuple[str, str], str] = {}
    root = Path(run_path)
    for s in sets:
        d = root if (root / "metrics.json").is_file() else root / s
        try:
            src = json.loads((d / "metrics.json").read_text(encoding="utf-8")).get("source", {}).get("predictions")
        except (OSError, json.JSONDecodeError):
            continue
        cands = [Path(src)] if src else []
        cands.append(d / "predictions.jsonl")
        for p in cands:
            if p.is_file():
                for row in read_jsonl(p, tolerant=True):
                    if "id" in row:
                        out[(s, str(row["id"]))] = str(row.get("question", ""))
                break
    return out



SFT_RE = re.compile(r"sft", re.I)
RL_RE = re.compile(r"ppo|grpo|(?:^|[-_])rl(?:$|[-_])", re.I)
PPO_RE = re.compile(r"ppo", re.I)
GRPO_RE = re.compile(r"grpo", re.I)


def _scored_runs(root: Path) -> list[Path]:
    return [d for d in root.iterdir() if d.is_dir() and not d.name.startswith("compare-")
            and any((x / "metrics.json").is_file() for x in [d, *d.iterdir()] if x.is_dir())]


def _newest(runs: list[Path], rx: re.Pattern, exclude: re.Pattern) -> Path | None:
    cands = [d for d in runs if rx.search(d.name) and not exclude.search(d.name)]
    return max(cands, key=lambda d: d.stat().st_mtime) if cands else None


def find_sft_rl_runs(root: str | os.PathLike) -> tuple[Path, Path] | None:
    """The newest SFT-named and newest RL-named (ppo/grpo/rl) scored runs under `root`, or None."""
    root = Path(root)
    if not root.is_dir():
        return None
    runs = _scored_runs(root)
    sft, rl = _newest(runs, SFT_RE, RL_RE), _newest(runs, RL_RE, SFT_RE)
    return (sft, rl) if sft and rl else None


def find_auto_comparisons(root: str | os.PathLike) -> list[tuple[Path, Path]]:
    """The reports `make eval` writes, as (A, B) pairs of scored runs under `root`: the newest SFT run vs the newest
    RL run, and vs the newest run of the other RL method; the newest PPO run vs the newest GRPO run."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = _scored_runs(root)
    sft = _newest(runs, SFT_RE, RL_RE)
    ppo, grpo = _newest(runs, PPO_RE, SFT_RE), _newest(runs, GRPO_RE, SFT_RE)
    pairs: list[tuple[Path, Path]] = []
    if sft is not None:
        pairs += [(sft, rl) for rl in dict.fromkeys(x for x in (_newest(runs, RL_RE, SFT_RE), ppo, grpo) if x)]
    if ppo is not None and grpo is not None and ppo != grpo:
        pairs.append((ppo, grpo))
    return pairs
