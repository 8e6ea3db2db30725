"""`medqa bench` (`make bench`): every registered benchmark in one JSON + markdown table; missing or failing ones are
listed as failed and never given a number; P2 runs for real on the tiny model."""

import json
import sys
import textwrap

import pytest

import medqa.bench as bench
from medqa.bench import BENCHMARKS, Benchmark


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    pkg = tmp_path / "fakebench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "fast.py").write_text(textwrap.dedent("""
        def run(out_dir):
            return {"ratio": 6.5, "batched": 130.0, "single": 20.0}
    """))
    (pkg / "broken.py").write_text("def run(out_dir):\n    raise RuntimeError('judge did not start')\n")
    (pkg / "needs.py").write_text(
        "from medqa.bench import BenchmarkSkipped\n\ndef run(out_dir):\n    raise BenchmarkSkipped('no .venv-vllm')\n")
    for name in [m for m in sys.modules if m == "fakebench" or m.startswith("fakebench.")]:
        monkeypatch.delitem(sys.modules, name)  # an earlier test's copy, in its own tmp_path
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = (
        Benchmark("p1", "Fast thing", "fakebench.fast", "batched ÷ single", "ratio", 5.0, False, "{batched} vs {single}"),
        Benchmark("p2", "Not in the checkout", "fakebench.absent", "wait ÷ step", "share", 0.05, True),
        Benchmark("p3", "Breaks", "fakebench.broken", "a ÷ b", "ratio", 1.0, False),
    )
    monkeypatch.setattr(bench, "BENCHMARKS", registry)
    return registry


def test_one_run_writes_every_benchmark_with_its_status(fake_registry, tmp_path, capsys):
    out = tmp_path / "results"
    assert bench.main(["--out", str(out)]) == 1  # one benchmark failed
    report = json.loads((out / "bench.json").read_text())
    p1, p2, p3 = (report["benchmarks"][k] for k in ("p1", "p2", "p3"))
    assert p1["status"] == "measured" and p1["value"] == 6.5 and p1["met"] is True and p1["result"]["single"] == 20.0
    assert p2["status"] == "failed" and "value" not in p2 and "fakebench.absent" in p2["error"]
    assert p3["status"] == "failed" and "judge did not start" in p3["error"] and "value" not in p3
    table = (out / "bench.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| P")]
    assert [r.split("|")[1].strip() for r in rows] == ["P1", "P2", "P3"]
    assert "| 6.5 | ≥ 5 | yes | 130.0 vs 20.0 |" in rows[0]
    assert "| failed | ≤ 0.05 | — |" in rows[1] and "| failed |" in rows[2]


def test_a_benchmark_whose_requirement_is_missing_is_skipped_not_failed(fake_registry, tmp_path, monkeypatch):
    """P9 without .venv-vllm: listed as skipped with the reason, no number, and `make bench` still succeeds."""
    monkeypatch.setattr(bench, "BENCHMARKS", (*fake_registry, Benchmark("p9", "Needs", "fakebench.needs", "a ÷ b",
                                                                        "ratio", 5.0, False)))
    out = tmp_path / "results"
    assert bench.main(["--out", str(out), "--only", "p1", "p9"]) == 0
    p9 = json.loads((out / "bench.json").read_text())["benchmarks"]["p9"]
    assert p9["status"] == "skipped" and p9["error"] == "no .venv-vllm" and "value" not in p9
    assert "| skipped | ≥ 5 | — | no .venv-vllm |" in (out / "bench.md").read_text()


def test_p9_is_skipped_without_a_complete_vllm_environment(tmp_path, monkeypatch):
    import medqa.engine.server as server
    from medqa.bench.p9_rollout_engine import run

    monkeypatch.setattr(server, "VLLM_VENV", tmp_path / "half-installed")
    (tmp_path / "half-installed" / "bin").mkdir(parents=True)
    (tmp_path / "half-installed" / "bin" / "python").write_text("")  # a venv whose install has not finished
    monkeypatch.setenv("MEDQA_P9_MODEL", str(tmp_path / "model"))
    with pytest.raises(bench.BenchmarkSkipped, match="make vllm-setup"):
        run(tmp_path / "out")


def test_only_reruns_some_and_keeps_the_rest(fake_registry, tmp_path):
    out = tmp_path / "results"
    bench.main(["--out", str(out)])
    first = json.loads((out / "bench.json").read_text())["benchmarks"]
    assert bench.main(["--out", str(out), "--only", "p1"]) == 0  # the earlier failure is not this run's
    again = json.loads((out / "bench.json").read_text())["benchmarks"]
    assert again["p3"] == first["p3"] and again["p1"]["status"] == "measured"


def test_the_registry_names_p1_to_p4_and_p9_and_every_module_exposes_run():
    assert [b.key for b in BENCHMARKS] == ["p1", "p2", "p3", "p4", "p9"]
    for b in BENCHMARKS:
        assert callable(__import__(bench.module_name(b), fromlist=["run"]).run), b.key


def test_p2_measures_the_teacher_wait_share_of_ppo_steps(tiny_model_dir, tmp_path, monkeypatch):
    """P2 through the registry, shortened (2 steps per run, the first not counted): a measured share in [0, 1] and its detail."""
    from medqa.bench import p2_ppo_teacher
    from medqa.runs.io import write_jsonl

    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"id": f"p{i}", "prompt": [{"role": "user", "content": q}], "question": q, "reference": "",
                           "meta": {"risk_level": "low", "specialty": "general", "high_quality": True}}
                          for i, q in enumerate(["我发烧了怎么办", "How do I treat a mild burn?"] * 4)])
    real_run = p2_ppo_teacher.run
    monkeypatch.setattr(p2_ppo_teacher, "run", lambda out: real_run(out, steps=2, warm_steps=2,
                                                                    model=str(tiny_model_dir), prompts=str(prompts)))
    p2 = next(b for b in BENCHMARKS if b.key == "p2")
    entry = bench.run_one(p2, tmp_path / "out")
    assert entry["status"] == "measured", entry.get("error")
    assert 0.0 <= entry["value"] <= 1.0 and entry["value"] == entry["result"]["overlapped"]["teacher_wait_share"]
    assert "blocking call" in bench._detail(p2, entry)
