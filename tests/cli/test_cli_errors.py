"""User mistakes are one clear line and exit 2 (never a traceback); "some items failed" is exit 1; small input
edge cases (a UTF-8 BOM, a huge line, empty files, runs with nothing in common) are handled and said."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medqa.runs.io import InputError, iter_jsonl
from medqa.teacher.server import RunningServer, ServerOptions
from tests.teacher_helpers import pairs, stats


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    for var in ("DEEPSEEK_API_KEY", "MEDQA_TEACHER_API_KEY"):
        monkeypatch.delenv(var, raising=False)


def _qa(path: Path, n: int = 2) -> Path:
    path.write_text("".join(json.dumps({"question": q, "answer": a}, ensure_ascii=False) + "\n" for q, a in pairs(n)),
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("flag, value", [("--concurrency", "0"), ("--timeout", "0"), ("--timeout", "-1"),
                                         ("--base-url", "not a url"), ("--base-url", "ftp://example.com"),
                                         ("--teacher-concurrency", "x")])
def test_bad_teacher_arguments_are_refused_when_parsed(tmp_path, capsys, flag, value):
    from medqa.teacher.cli import main

    with pytest.raises(SystemExit) as e:
        main(["score", "--input", str(_qa(tmp_path / "in.jsonl")), "--output", str(tmp_path / "o.jsonl"), flag, value])
    err = capsys.readouterr().err
    assert e.value.code == 2 and flag.split("-")[-1] in err and "Traceback" not in err
    assert not (tmp_path / "o.jsonl").exists()


def test_a_malformed_base_url_is_never_requested_or_retried(tmp_path, capsys):
    """A scheme-less URL used to be retried as connection errors; now it is refused before any request."""
    from medqa.teacher.setup import TeacherArgs, TeacherSetupError

    for url in ("127.0.0.1:8765", "http//x", "ftp://x/v1"):
        with pytest.raises(TeacherSetupError, match="http"):
            TeacherArgs(teacher_base_url=url)


def test_exit_codes_distinguish_usage_from_failed_items(tmp_path, capsys):
    from medqa.teacher.cli import main

    inp = _qa(tmp_path / "in.jsonl")
    assert main(["score", "--input", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o.jsonl"),
                 "--offline", "--quiet"]) == 2
    assert "missing.jsonl" in capsys.readouterr().err.strip().splitlines()[-1]
    with RunningServer(ServerOptions(port=0, fail_rate=1.0, status=500)) as bad:
        assert main(["score", "--input", str(inp), "--output", str(tmp_path / "o.jsonl"), "--base-url", bad.url,
                     "--max-retries", "0", "--cache", "", "--quiet"]) == 1
        assert stats(bad.url)["total_requests"] == 2


def test_utf8_bom_is_accepted(tmp_path, capsys):
    from medqa.teacher.cli import main

    inp = tmp_path / "windows.jsonl"
    inp.write_bytes(b"\xef\xbb\xbf" + _qa(tmp_path / "plain.jsonl").read_bytes())
    assert [row["question"] for _, row in iter_jsonl(inp)] == [q for q, _ in pairs(2)]
    assert main(["score", "--input", str(inp), "--output", str(tmp_path / "o.jsonl"), "--offline", "--cache", "",
                 "--quiet"]) == 0


def test_an_overlong_line_is_refused_with_its_location(tmp_path, monkeypatch):
    import medqa.runs.io

    monkeypatch.setattr(medqa.runs.io, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "big.jsonl"
    path.write_text('{"question": "ok", "answer": "ok"}\n' + json.dumps({"question": "x" * 5000}) + "\n",
                    encoding="utf-8")
    with pytest.raises(InputError, match=r"big.jsonl:2: line is 5,017 bytes, over the 1,000-byte limit"):
        list(iter_jsonl(path))


def test_empty_predictions_are_an_input_error(tmp_path, capsys):
    from medqa.apps.predict import main as predict_main
    from medqa.eval.cli import main as eval_main

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    assert eval_main(["score", "--predictions", str(empty), "--out", str(tmp_path / "s")]) == 2
    assert "no predictions" in capsys.readouterr().err
    assert predict_main(["--model", "unused", "--input", str(empty), "--output", str(tmp_path / "p.jsonl")]) == 2
    assert "no rows" in capsys.readouterr().err


def test_compare_of_runs_without_shared_ids_warns(tmp_path, capsys):
    from medqa.eval.cli import main

    def run(name: str, prefix: str) -> Path:
        preds = tmp_path / f"{name}.jsonl"
        preds.write_text("".join(json.dumps({"id": f"{prefix}{i}", "question": "头痛怎么办？", "prediction": "多休息。"},
                                            ensure_ascii=False) + "\n" for i in range(3)), encoding="utf-8")
        assert main(["score", "--predictions", str(preds), "--out", str(tmp_path / name / "gold_set")]) == 0
        return tmp_path / name

    a, b = run("a", "x"), run("b", "y")
    capsys.readouterr()
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    assert "share no item ids" in capsys.readouterr().err
    assert "share no item ids" in (tmp_path / "cmp" / "report.md").read_text(encoding="utf-8")
