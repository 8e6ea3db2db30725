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
from medqa.runs.io import MANIFEST, iter_jsonl

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


def _make_bench(root: Path, model: Path | str, *make_vars: str, bench_args: str = "--batch-size 4 --device cpu",
                env: dict[str, str] | None = None) -> tuple[Path, subprocess.CompletedProcess]:
    """`make bench-medical` as a user runs it on a fresh clone, against the fixture tasks, into ROOT/<model name>."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS")} | (env or {})
    proc = subprocess.run(["make", "--no-print-directory", "bench-medical", f"MODEL={model}", f"TASKS={GROUP}",
                           f"EVAL_ROOT={root}", f"BENCH_ARGS=--include-path {FIXTURES} {bench_args}", *make_vars],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / Path(model).name / "bench_medical", proc


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
    """An adapter on the think model, thinking on: log-likelihood under the thinking chat template (the harness's
    own enable_thinking would refuse log-likelihood requests; medqa passes it to the template only)."""
    out = tmp_path / "bench"
    proc = _bench(out, "--tasks", "fixture_pubmedqa", "--limit", "3", "--thinking", "on", model=sft_lora_output)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["medqa"]["settings"]["thinking"] == "on"
    assert "each option is scored as the first words of a thinking turn" in proc.stderr
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


# ---------------------------------------------------------------- --scoring generate

GEN_LIMIT, GEN_TOKS = 3, 8


@pytest.fixture(scope="module")
def generate_run(tmp_path_factory, tiny_model_dir):
    return _make_bench(tmp_path_factory.mktemp("bench-gen"), tiny_model_dir, "SCORING=generate", "THINKING=on",
                       f"MAX_GEN_TOKS={GEN_TOKS}", f"LIMIT={GEN_LIMIT}")


def test_generate_scoring_through_the_harness(generate_run, tiny_model_dir):
    """`make bench-medical SCORING=generate`: the real harness generates with the tiny model (thinking on), every
    fixture task has an accuracy over its items and a count of unparsable answers; a rerun resumes."""
    out, proc = generate_run
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["medqa"]["settings"] | {"scoring": "generate", "thinking": "on", "max_gen_toks": GEN_TOKS} == \
        results["medqa"]["settings"]
    total_unparsable = 0
    for task in FIXTURE_TASKS:
        n = min(GEN_LIMIT, _items(task))
        metrics = results["results"][task]
        assert 0.0 <= metrics["acc,none"] <= 1.0 and results["n-samples"][task]["effective"] == n
        assert isinstance(metrics["unparsable,none"], float) and 0 <= metrics["unparsable,none"] <= n
        total_unparsable += round(metrics["unparsable,none"])
        config = results["configs"][task]
        assert config["output_type"] == "generate_until"
        assert config["generation_kwargs"]["max_gen_toks"] == GEN_TOKS
    assert 0.0 <= results["results"][GROUP]["acc,none"] <= 1.0
    rows = {r["task"]: r for r in results["medqa"]["table"]}
    assert rows[GROUP]["unparsable"] == total_unparsable and rows[GROUP]["n"] == GEN_LIMIT * len(FIXTURE_TASKS)
    table = (out / "table.md").read_text(encoding="utf-8")
    assert "| n items | unparsable |" in table and "multiple choice by generation" in table
    assert (out / f"harness-{GROUP}.generate.json").is_file() and not (out / f"harness-{GROUP}.json").exists()
    assert "scoring generate" in proc.stdout

    _, again = _make_bench(out.parent.parent, tiny_model_dir, "SCORING=generate", "THINKING=on",
                           f"MAX_GEN_TOKS={GEN_TOKS}", f"LIMIT={GEN_LIMIT}")
    assert f"{GROUP}: finished earlier under the same model" in again.stdout
    assert "running the harness" not in again.stdout


CHOICES, WORDS = ["A", "B", "C", "D"], ["yes", "no", "maybe"]


@pytest.mark.parametrize(("text", "choices", "expected"), [
    ("<think>Could be B.</think>\n\nThe answer is C.", CHOICES, "C"),  # the think block is not read
    ("C. Vitamin C", CHOICES, "C"),
    ("(B) Colonoscopy", CHOICES, "B"),
    ("**D**", CHOICES, "D"),
    ("The correct answer is **B**. A is wrong.", CHOICES, "B"),
    ("答案：B", CHOICES, "B"),
    ("答案是 C。", CHOICES, "C"),
    ("I would pick Vitamin C", CHOICES, "C"),  # the only choice named
    ("A deficiency of vitamin C causes it", CHOICES, None),  # the article A and C: no single choice
    ("A and B", CHOICES, None),
    ("<think>A cut chain of thought, option A", CHOICES, None),  # an unclosed think block: no answer
    ("", CHOICES, None),
    ("Yes, it lowers blood pressure.", WORDS, "yes"),
    ("Answer: No", WORDS, "no"),
    ("The answer is not clear; maybe.", WORDS, "maybe"),  # "not" is not "no"
    ("<think>x</think>Answer: A", WORDS, None),
])
def test_answer_choice(text, choices, expected):
    from medqa.eval.bench_generate import answer_choice

    assert answer_choice(text, choices) == expected


def test_generate_variants_of_the_shipped_tasks(tmp_path):
    """Every task of medqa_all (the harness's own YAMLs, no hub) gets its generate_until variant with the same prompt
    and choices; a task that is not multiple choice is one line naming its YAML."""
    import hashlib

    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    from medqa.eval.bench_generate import ChoiceGenerationTask
    from medqa.eval.bench_medical import TASKS_DIR, BenchError, resolve_tasks

    tm = TaskManager(include_path=str(TASKS_DIR))
    leaves = [m for g in ("medqa_en", "medqa_zh") for m in load_yaml(TASKS_DIR / f"{g}.yaml")["task"]]
    before = {t: load_yaml(tm.task_index[t].yaml_path, resolve_func=True) for t in leaves}
    resolve_tasks(tm, "medqa_all", hashlib.sha256(), max_gen_toks=32)
    for task in leaves:
        cfg = tm.task_index[task].cfg
        assert cfg["class"] is ChoiceGenerationTask and cfg["output_type"] == "generate_until", task
        assert cfg["generation_kwargs"]["max_gen_toks"] == 32
        assert cfg["doc_to_text"] == before[task]["doc_to_text"] and cfg["doc_to_choice"] == before[task]["doc_to_choice"]

    (tmp_path / "free.yaml").write_text("task: free_text\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                                        "    test: d.jsonl\noutput_type: generate_until\ntest_split: test\n"
                                        "doc_to_text: q\ndoc_to_target: a\n", encoding="utf-8")
    (tmp_path / "d.jsonl").write_text('{"q": "?", "a": "!"}\n', encoding="utf-8")
    tm = TaskManager(include_path=str(tmp_path), include_defaults=False)
    with pytest.raises(BenchError) as err:
        resolve_tasks(tm, "free_text", hashlib.sha256(), max_gen_toks=32)
    assert str(err.value).startswith(f"{tmp_path / 'free.yaml'}: task free_text: --scoring generate needs "
                                     "output_type multiple_choice") and "\n" not in str(err.value)


# ---------------------------------------------------------------- --backend api

API_KEY = "sk-bench-test-key"
API_ANSWER = "<think>It could be B.</think>\n\nAnswer: A"  # option A for the letter tasks; no yes/no/maybe


class FakeCompletions:
    """An OpenAI-compatible /v1/completions server on a loopback port that answers every prompt API_ANSWER and
    keeps what it was sent (path, Authorization header, body). Use as a context manager; `url` is the
    completions URL."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from tests.teacher_helpers import send_json

        self.requests: list[tuple[str, str | None, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((self.path, self.headers.get("Authorization"), body))
                prompts = body["prompt"] if isinstance(body["prompt"][0], list) else [body["prompt"]]
                send_json(self, {"model": body["model"], "choices": [
                    {"index": i, "text": API_ANSWER, "finish_reason": "stop"} for i in range(len(prompts))]})

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/completions"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def __enter__(self) -> FakeCompletions:
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_api_backend_generate_against_a_loopback_server(tmp_path, tiny_model_dir):
    """`make bench-medical BACKEND=api BASE_URL=… SCORING=generate`: the URL travels in the environment (not on the
    command line make echoes), the key from OPENAI_API_KEY reaches the server as a bearer token and nowhere else,
    the think block of each answer is stripped and the choice read: every letter item is answered A, every
    PubMedQA item is unparsable."""
    with FakeCompletions() as server:
        out, proc = _make_bench(tmp_path, "served-tiny", "BACKEND=api", f"BASE_URL={server.url}", "SCORING=generate",
                                "MAX_GEN_TOKS=16", bench_args=f"--tokenizer {tiny_model_dir} --api-concurrency 2",
                                env={"OPENAI_API_KEY": API_KEY})
    command = next(line for line in proc.stdout.splitlines() if "bench-medical" in line and "--backend api" in line)
    assert 'MEDQA_BENCH_BASE_URL="$BASE_URL"' in command and server.url not in command
    n_items = sum(_items(t) for t in FIXTURE_TASKS)
    assert len(server.requests) == n_items
    assert {(path, auth) for path, auth, _ in server.requests} == {("/v1/completions", f"Bearer {API_KEY}")}
    assert {body["max_tokens"] for _, _, body in server.requests} == {16}
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["medqa"]["model"] == {"backend": "api", "base_url": server.url, "model": "served-tiny"}
    assert results["medqa"]["settings"]["thinking"] == "on"
    answered_a = {"fixture_medqa_4options": lambda r: r["label"] == 0,
                  "fixture_cmmlu_medical": lambda r: r["Answer"] == "A"}
    for task, is_a in answered_a.items():
        rows = [row for _, row in iter_jsonl(FIXTURES / FIXTURE_TASKS[task])]
        assert results["results"][task]["acc,none"] == pytest.approx(sum(map(is_a, rows)) / len(rows))
        assert results["results"][task]["unparsable,none"] == 0
    assert results["results"]["fixture_pubmedqa"]["acc,none"] == 0.0
    assert results["results"]["fixture_pubmedqa"]["unparsable,none"] == _items("fixture_pubmedqa")
    assert not any(API_KEY in p.read_text(encoding="utf-8") for p in out.iterdir() if p.is_file())


@pytest.mark.parametrize(("argv", "env", "expected"), [
    (["--base-url", "http://u:s3cr3t@127.0.0.1:9/v1/completions"], {},
     "--base-url http://127.0.0.1:9/v1/completions: user:password on the command line is visible to every user in "
     "`ps`; put the URL in the environment variable MEDQA_BENCH_BASE_URL instead"),
    (["--base-url=http://u:s3cr3t@127.0.0.1:9/v1/completions"], {}, "environment variable MEDQA_BENCH_BASE_URL"),
    ([], {"MEDQA_BENCH_BASE_URL": "http://u:s3cr3t@127.0.0.1:9/v1/completions"},
     "$MEDQA_BENCH_BASE_URL http://127.0.0.1:9/v1/completions: user:password in the URL is not sent by the "
     "harness's API client; drop it and put the API key in $OPENAI_API_KEY"),
    ([], {"MEDQA_BENCH_BASE_URL": "htps://u:s3cr3t@127.0.0.1:9/v1"}, "$MEDQA_BENCH_BASE_URL: base URL"),
    ([], {}, "--backend api needs the server's completions URL: --base-url or $MEDQA_BENCH_BASE_URL"),
])
def test_api_url_refusals_are_one_line_without_the_secret(argv, env, expected, tmp_path, monkeypatch, capsys):
    from medqa.eval.bench_medical import main

    monkeypatch.delenv("MEDQA_BENCH_BASE_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    assert main(["--model", "served", "--backend", "api", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medqa bench-medical: error: ") and expected in err[0], err
    assert "s3cr3t" not in err[0]
    assert not out.exists()
