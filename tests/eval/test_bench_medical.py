"""`medqa bench-medical`: the real lm-evaluation-harness, end to end on CPU with the tiny model, on local fixture
tasks of the same schema as MedQA (4 options), PubMedQA (yes/no/maybe) and CMMLU (Chinese, 4 options)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from medqa.io import MANIFEST, iter_jsonl

FIXTURES = ROOT / "tests" / "fixtures" / "bench_medical"
FIXTURE_TASKS = {  # task -> its data file
    "fixture_medqa_4options": "medqa_en.jsonl",
    "fixture_pubmedqa": "pubmedqa.jsonl",
    "fixture_cmmlu_medical": "cmmlu_medical.jsonl",
}
GROUP = "medqa_fixtures"


def _items(task: str) -> int:
    return sum(1 for _ in iter_jsonl(FIXTURES / FIXTURE_TASKS[task]))


def _bench(out: Path, *extra: str, model: Path, include: Path = FIXTURES, check: bool = True):
    return run_cli("bench-medical", "--model", str(model), "--tasks", GROUP, "--include-path", str(include),
                   "--out", str(out), "--batch-size", "4", "--device", "cpu", *extra, check=check)


def _make_bench(root: Path, model: Path) -> tuple[Path, subprocess.CompletedProcess]:
    """`make bench-medical` as a user runs it on a fresh clone, against the fixture tasks, into ROOT/<model name>."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")}
    proc = subprocess.run(["make", "--no-print-directory", "bench-medical", f"MODEL={model}", f"TASKS={GROUP}",
                           f"EVAL_ROOT={root}", f"BENCH_ARGS=--include-path {FIXTURES} --batch-size 4 --device cpu"],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / model.name / "bench_medical", proc


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, tiny_model_dir):
    return _make_bench(tmp_path_factory.mktemp("bench"), tiny_model_dir)


def test_fixture_tasks_through_the_harness(bench_run):
    out, proc = bench_run
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    for task in FIXTURE_TASKS:
        acc = results["results"][task]["acc,none"]
        assert isinstance(acc, float) and 0.0 <= acc <= 1.0
        assert results["n-samples"][task]["effective"] == _items(task)
        assert results["configs"][task]["output_type"] == "multiple_choice"
    assert results["medqa"]["settings"]["thinking"] == "off"
    table = (out / "table.md").read_text(encoding="utf-8")
    for task in FIXTURE_TASKS:
        row = next(line for line in table.splitlines() if line.startswith(f"| {task} | acc |"))
        assert row.rstrip(" |").endswith(str(_items(task)))
    assert f"| {GROUP} | acc |" in table
    assert "running the harness" in proc.stdout
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["kind"] == "bench-medical"


def test_rerun_resumes_and_a_changed_model_reruns(bench_run, tiny_model_dir, tmp_path):
    out, _ = bench_run
    unit = out / f"harness-{GROUP}.json"
    before = unit.stat().st_mtime_ns
    _, proc = _make_bench(out.parent.parent, tiny_model_dir)
    assert "running the harness" not in proc.stdout
    assert f"{GROUP}: finished earlier under the same model" in proc.stdout
    assert unit.stat().st_mtime_ns == before
    assert (out / "table.md").is_file()

    # Same folder name, other weights: the content fingerprint differs, so the harness runs again.
    changed = tmp_path / "tiny-qwen3"
    shutil.copytree(tiny_model_dir, changed)
    cfg = json.loads((changed / "generation_config.json").read_text(encoding="utf-8"))
    cfg["medqa_test_marker"] = 1
    (changed / "generation_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    proc = _bench(copy, model=changed)
    assert "running the harness" in proc.stdout


def test_adapter_run(sft_lora_output, tmp_path):
    out = tmp_path / "bench"
    proc = _bench(out, "--tasks", "fixture_pubmedqa", "--limit", "3", model=sft_lora_output)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["medqa"]["model"]["adapter"] == str(sft_lora_output)
    assert results["medqa"]["model"]["adapter_fingerprint"]
    base = json.loads((sft_lora_output / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    assert results["medqa"]["model"]["model"] == base
    assert results["n-samples"]["fixture_pubmedqa"]["effective"] == 3
    assert 0.0 <= results["results"]["fixture_pubmedqa"]["acc,none"] <= 1.0
    assert "fixture_pubmedqa" in proc.stdout


def test_corrupted_fixture_row_is_one_line_error(tmp_path, tiny_model_dir):
    include = tmp_path / "tasks"
    shutil.copytree(FIXTURES, include)
    lines = (include / "pubmedqa.jsonl").read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][:40]  # a torn row
    (include / "pubmedqa.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = _bench(tmp_path / "out", model=tiny_model_dir, include=include, check=False)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert err[-1].startswith("medqa bench-medical: error: ")
    assert f"{include / 'pubmedqa.jsonl'}:3: malformed JSON" in err[-1]
    assert not (tmp_path / "out" / "results.json").exists()


def test_foreign_file_in_output_is_refused(tmp_path, tiny_model_dir):
    out = tmp_path / "bench_medical"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n", encoding="utf-8")
    proc = _bench(out, model=tiny_model_dir, check=False)
    assert proc.returncode == 2
    assert "notes.txt" in proc.stderr.strip().splitlines()[-1]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_shipped_groups_and_unknown_task_names():
    """medqa_en / medqa_zh / medqa_all list tasks the installed harness knows (its task folders, no hub); an unknown
    name is one line with the close matches."""
    import yaml
    from lm_eval.tasks import TaskManager

    from medqa.eval.bench_medical import TASKS_DIR, BenchError, check_names

    tm = TaskManager(include_path=str(TASKS_DIR))
    for group in ("medqa_en", "medqa_zh", "medqa_all"):
        members = yaml.safe_load((TASKS_DIR / f"{group}.yaml").read_text(encoding="utf-8"))["task"]
        assert members and all(m in tm.all_tasks for m in members), group
    check_names(tm, ["medqa_all", "pubmedqa"])
    with pytest.raises(BenchError) as err:
        check_names(tm, ["medqa_4option"])
    msg = str(err.value)
    assert msg.startswith("unknown task 'medqa_4option'; close matches: ") and "\n" not in msg
    assert "medqa_4options" in msg.split("close matches: ")[1].split(", ")


def test_compare_shows_the_benchmarks_beside_the_toolkits_metrics(bench_run, tmp_path):
    """`medqa eval compare` (make compare, the demo's SFT-vs-RL report) adds the medical benchmarks of both runs
    when each eval folder has bench-medical results: A and B with their intervals and B − A per task."""
    from test_eval_score import ROWS_A, _write

    from medqa.eval.cli import main

    out, _ = bench_run
    for name in ("sft", "rl"):
        preds = _write(tmp_path / f"{name}.jsonl", ROWS_A)
        assert main(["score", "--predictions", str(preds), "--out", str(tmp_path / name / "gold")]) == 0
        shutil.copytree(out, tmp_path / name / "bench_medical")
    results_b = tmp_path / "rl" / "bench_medical" / "results.json"
    data = json.loads(results_b.read_text(encoding="utf-8"))
    a_acc = data["results"]["fixture_pubmedqa"]["acc,none"]
    data["results"]["fixture_pubmedqa"]["acc,none"] = 1.0  # B answers every PubMedQA-style item right
    results_b.write_text(json.dumps(data), encoding="utf-8")
    report = tmp_path / "report"
    assert main(["compare", str(tmp_path / "sft"), str(tmp_path / "rl"), "--out", str(report)]) == 0
    md = (report / "report.md").read_text(encoding="utf-8")
    assert "## Medical benchmarks" in md and "Medical benchmarks" in (report / "report.html").read_text("utf-8")
    n = _items("fixture_pubmedqa")
    row = next(line for line in md.splitlines() if line.startswith("| fixture_pubmedqa | acc |"))
    assert f"| {a_acc:.3f} |" in row and "| 1.000 |" in row and f"| {1.0 - a_acc:+.3f} |" in row
    assert row.rstrip(" |").endswith(f"{n} / {n}")
    # Without results in both runs the report has no benchmark section.
    shutil.rmtree(tmp_path / "sft" / "bench_medical")
    assert main(["compare", str(tmp_path / "sft"), str(tmp_path / "rl"), "--out", str(report)]) == 0
    assert "Medical benchmarks" not in (report / "report.md").read_text(encoding="utf-8")
