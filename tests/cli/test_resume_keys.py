"""Resume is keyed by what produced a row (input text + model or teacher), not by position or id; an output
that is its own input is refused; `data prepare` never writes one id twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import ROOT, THINK_PAIRS
from medqa.runs.io import read_jsonl


def _rows(path: Path, questions: list[str]) -> None:  # rows without ids: `line-N`
    path.write_text("".join(json.dumps({"question": q}, ensure_ascii=False) + "\n" for q in questions),
                    encoding="utf-8")


def test_predict_resume_follows_content_not_line_numbers(tmp_path, tiny_think_model_dir, capsys):
    from medqa.apps.predict import main

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    qs = [q for q, _ in THINK_PAIRS[:3]]
    base = ["--model", str(tiny_think_model_dir), "--input", str(inp), "--output", str(out), "--max-new-tokens", "48",
            "--device", "cpu", "--no-progress"]
    _rows(inp, qs[1:])
    assert main(base) == 0
    first = {r["question"]: r["prediction"] for r in read_jsonl(out)}
    # A row inserted at the top shifts every line-N id: the new row is predicted, the others are reused by content.
    _rows(inp, qs)
    capsys.readouterr()
    assert main(base) == 0
    assert "1 generated, 2 already done" in capsys.readouterr().out
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["line-1", "line-2", "line-3"] and [r["question"] for r in rows] == qs
    assert all(r["prediction"] == first[r["question"]] for r in rows[1:])
    assert rows[0]["prediction"] == THINK_PAIRS[0][1]  # the new row got its own answer, not a shifted one
    # Another input file into the same output: none of the old rows are kept or reused.
    other = tmp_path / "other.jsonl"
    _rows(other, [THINK_PAIRS[3][0]])
    assert main(base[:2] + ["--input", str(other)] + base[4:]) == 0
    assert [r["question"] for r in read_jsonl(out)] == [THINK_PAIRS[3][0]]
    # The output may not be the input.
    assert main(base[:4] + ["--output", str(inp)] + base[6:]) == 2
    assert "--output is the --input" in capsys.readouterr().err


def test_a_model_retrained_into_the_same_folder_does_not_reuse_answers(tmp_path, tiny_model_dir, capsys):
    """The resume key holds the model's content, not only its path: the answers of the model that was in a folder
    are not reused for the one trained into it since."""
    import torch
    from transformers import AutoModelForCausalLM

    from medqa.apps.predict import main
    from medqa.runs.io import content_fingerprint

    model = tmp_path / "sft"
    shutil.copytree(tiny_model_dir, model)
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _rows(inp, [q for q, _ in THINK_PAIRS[:2]])
    args = ["--model", str(model), "--input", str(inp), "--output", str(out), "--max-new-tokens", "8",
            "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0 and "0 generated, 2 already done" in capsys.readouterr().out
    before = content_fingerprint(model)
    m = AutoModelForCausalLM.from_pretrained(model)
    with torch.no_grad():
        m.get_input_embeddings().weight.add_(0.5)  # "retrained": other weights, same folder, same config
    m.save_pretrained(model)
    assert content_fingerprint(model) != before
    assert main(args) == 0 and "2 generated, 0 already done" in capsys.readouterr().out


def test_teacher_score_output_equal_to_input_is_refused(tmp_path, capsys):
    from medqa.teacher.cli import main

    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n", encoding="utf-8")
    before = inp.read_bytes()
    assert main(["score", "--input", str(inp), "--output", str(tmp_path / "." / "in.jsonl"), "--offline"]) == 2
    assert "is the --input" in capsys.readouterr().err and inp.read_bytes() == before


def test_teacher_score_resumes_by_pair_and_teacher(tmp_path, capsys):
    """A rerun against another teacher judges again; the same teacher reuses the rows (by pair hash)."""
    from medqa.teacher.cli import main
    from medqa.teacher.server import RunningServer, ServerOptions
    from tests.teacher_helpers import pairs, stats

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"question": q, "answer": a}, ensure_ascii=False) + "\n"
                           for q, a in pairs(3, "r")), encoding="utf-8")
    with RunningServer(ServerOptions(port=0)) as s1, RunningServer(ServerOptions(port=0)) as s2:
        common = ["score", "--input", str(inp), "--output", str(out), "--cache", "", "--quiet"]
        assert main([*common, "--base-url", s1.url]) == 0
        assert main([*common, "--base-url", s1.url]) == 0 and stats(s1.url)["total_requests"] == 3
        assert main([*common, "--base-url", s2.url]) == 0 and stats(s2.url)["total_requests"] == 3
    rows = read_jsonl(out)
    assert len(rows) == 3 and {r["teacher"]["endpoint"] for r in rows} == {s2.url + "/v1/chat/completions"}


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_data_prepare_never_writes_one_id_twice(tmp_path, capsys, on_error):
    from medqa.data.cli import main

    src = [json.loads(x) for x in (ROOT / "data" / "sample" / "sft.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = [{**r, "id": "same-id"} for r in src[:20]]
    inp = tmp_path / "dup.jsonl"
    inp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    rc = main(["prepare", "--input", str(inp), "--out", str(tmp_path / "out"), "--on-error", on_error])
    err = capsys.readouterr()
    if on_error == "fail":
        assert rc == 2 and f"{inp}:2: id: duplicate id 'same-id'" in err.err and not (tmp_path / "out").exists()
        return
    assert rc == 0 and "repeated ids renamed 19" in err.out
    ids = [r["id"] for f in ("train", "dev", "test") for r in read_jsonl(tmp_path / "out" / f"{f}.jsonl")]
    assert len(ids) == 20 and len(set(ids)) == 20
    shutil.rmtree(tmp_path / "out")
