"""Evaluation-only sources (multiple-choice exams) are recognised by `medqa data prepare`, never trained on."""

import shutil

from conftest import SAMPLE, run_cli
from medqa.data.formats import detect_format, eval_only_format, list_files

EXAM = SAMPLE / "exam" / "cmb_sample.jsonl"


def test_exam_rows_are_detected_as_evaluation_only():
    exam_row = {"id": "mc-01", "question": "q", "options": {"A": "a", "B": "b"}, "answer": "A"}
    assert detect_format(exam_row) == "exam_mc"
    assert detect_format({"instruction": "", "question": "q", "think": "t", "answer": "a"}) == "delicate_r1"
    assert eval_only_format(EXAM) == "exam_mc"
    assert eval_only_format(SAMPLE / "sft.jsonl") is None
    assert eval_only_format(SAMPLE / "formats" / "project_format.parquet") is None


def test_a_folder_input_skips_the_exam_file_with_one_note(tmp_path, processed_dir):
    proc = run_cli("data", "prepare", "--input", str(SAMPLE), "--out", str(tmp_path / "x"), "--seed", "42",
                   "--teacher-cache", "")
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and str(EXAM) in notes[0] and "make eval" in notes[0], proc.stderr
    # The whole sample folder gives exactly what `make data` (its SAMPLE_INPUTS) gives.
    for name in ("train", "dev", "test", "gold_set", "red_team"):
        assert (tmp_path / "x" / f"{name}.jsonl").read_bytes() == (processed_dir / f"{name}.jsonl").read_bytes(), name


def test_an_explicit_exam_file_is_a_clear_error_that_names_make_eval(tmp_path):
    out = tmp_path / "x"
    proc = run_cli("data", "prepare", "--input", str(EXAM), "--out", str(out), check=False)
    assert proc.returncode == 2
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1 and str(EXAM) in message
    assert "multiple-choice exam" in message and "make eval" in message and "think" not in message
    assert not out.exists()


def test_a_folder_of_exam_files_only_is_an_error(tmp_path):
    folder = tmp_path / "exams"
    folder.mkdir()
    shutil.copy(EXAM, folder / "a.jsonl")
    notes = []
    try:
        list_files(str(folder), note=notes.append)
    except ValueError as err:
        assert "no training files" in str(err) and str(folder) in str(err)
    else:
        raise AssertionError("a folder holding only an exam file was accepted")
    assert len(notes) == 1 and "a.jsonl" in notes[0]
