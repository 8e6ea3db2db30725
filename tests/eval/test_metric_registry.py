"""The metric registry (`medqa.eval.metrics.METRICS`) is the one list of metrics: one extra entry shows up in
`medqa eval score`'s metrics.json and printed summary, in `medqa eval run`'s summary line and in `medqa eval
compare`'s report, and leaves every other number as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import medqa.eval.metrics as registry
from medqa.eval.metrics import MetricSpec
from tests.eval.test_eval_score import ROWS_A, _write

# A metric from fields every item row already has: the answer after the think block is not empty.
ANSWERED = MetricSpec("answered", "proportion", counts=lambda it: True,
                      value=lambda it: float(it["answer_len_chars"] > 0), higher_is_better=True, seed_offset=20)


def test_the_registry_is_consistent():
    names = registry.metric_names()
    assert len(set(names)) == len(names)
    offsets = [m.seed_offset for m in registry.METRICS]
    assert len(set(offsets)) == len(offsets)  # no two metrics' intervals share a bootstrap seed
    # nor with the reward's (2), eos_rate's (7) or the teacher criteria's (teacher_overall's + 1, + 2, …) in summarise
    assert not ({2, 7} | set(range(11, 20))) & set(offsets)
    for name in registry.module_names():
        assert (registry.METRICS_DIR / name / f"{name}.py").is_file()
    with pytest.raises(KeyError, match="known: think_coverage"):
        registry.metric("bleu")


def test_one_entry_adds_a_metric_to_every_report(tmp_path, monkeypatch, capsys):
    from medqa.eval.cli import main

    rows_b = list(ROWS_A)
    rows_b[3] = ROWS_A[3][:2] + ("<think>\n只有思考\n</think>\n",) + ROWS_A[3][3:]  # g4: no answer in B
    for name, rows in (("a", ROWS_A), ("b", rows_b)):
        _write(tmp_path / f"{name}.jsonl", rows)
    assert main(["score", "--predictions", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "before")]) == 0
    before = json.loads((tmp_path / "before" / "metrics.json").read_text(encoding="utf-8"))
    capsys.readouterr()

    monkeypatch.setattr(registry, "METRICS", (*registry.METRICS, ANSWERED))
    for name in ("a", "b"):
        assert main(["score", "--predictions", str(tmp_path / f"{name}.jsonl"),
                     "--out", str(tmp_path / name / "gold")]) == 0
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")][-1]  # b's summary
    assert printed["answered"] == pytest.approx(5 / 6)
    m = json.loads((tmp_path / "a" / "gold" / "metrics.json").read_text(encoding="utf-8"))
    assert m["answered"] == 1.0 and m["counts"]["answered"] == {"k": 6, "n": 6} and len(m["ci95"]["answered"]) == 2
    strip = {"answered", "source"}
    assert {k: (v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items() if kk != "answered"})
            for k, v in m.items() if k not in strip} == {k: v for k, v in before.items() if k not in strip}

    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "report")]) == 0
    assert "answered: too few items for a verdict" in capsys.readouterr().out
    md = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "**answered**" in md and "| answered | 1.000 | 0.833 | -0.167 |" in md
    comp = json.loads((tmp_path / "report" / "comparison.json").read_text(encoding="utf-8"))
    assert comp["per_set"]["gold"]["answered"]["n_paired"] == 6

    def fake_predict(model, path, out, **kwargs):  # `eval run` without a model: the predictions are given
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, out)

    monkeypatch.setattr("medqa.apps.predict.run_predict", fake_predict)
    assert main(["run", "--model", "none", "--set", f"gold={tmp_path / 'b.jsonl'}",
                 "--out", str(tmp_path / "run")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("gold:"))
    assert "answered=0.833" in line and "think_coverage=0.833" in line
