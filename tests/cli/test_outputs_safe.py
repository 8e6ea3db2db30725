"""Output folders never destroy what medqa did not write, and output mistakes are one-line errors (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import ROOT
from medqa.runs.io import MANIFEST, OutputError, atomic_dir, check_output_dir

SFT = ROOT / "data" / "sample" / "sft.jsonl"


def _user_project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    (proj / "code").mkdir(parents=True)
    lines = SFT.read_text(encoding="utf-8").splitlines(keepends=True)
    (proj / "mydata.jsonl").write_text("".join(lines[:40]), encoding="utf-8")  # enough for every split
    (proj / "thesis.tex").write_text("\\documentclass{article}", encoding="utf-8")
    (proj / "code" / "analysis.py").write_text("print(1)\n", encoding="utf-8")
    return proj


def _tree(p: Path) -> list[str]:
    return sorted(str(x.relative_to(p)) for x in p.rglob("*"))


def _prepare(capsys, *args: str) -> tuple[int, str]:
    from medqa.data.cli import main

    rc = main(["prepare", *args])
    return rc, capsys.readouterr().err.strip()


def test_prepare_into_a_folder_with_the_users_files_deletes_nothing(tmp_path, capsys):
    proj = _user_project(tmp_path)
    before = _tree(proj)
    rc, err = _prepare(capsys, "--input", str(proj / "mydata.jsonl"), "--out", str(proj))
    assert rc == 2 and len(err.splitlines()) == 1 and "input" in err and "Traceback" not in err
    assert _tree(proj) == before
    # Not even with --overwrite: the folder holds the input.
    rc, err = _prepare(capsys, "--input", str(proj / "mydata.jsonl"), "--out", str(proj), "--overwrite")
    assert rc == 2 and _tree(proj) == before
    # A foreign folder that holds no input: refused, then replaced only with --overwrite.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine", encoding="utf-8")
    rc, err = _prepare(capsys, "--input", str(proj / "mydata.jsonl"), "--out", str(other))
    assert rc == 2 and "notes.txt" in err and "--overwrite" in err and (other / "notes.txt").is_file()
    rc, _ = _prepare(capsys, "--input", str(proj / "mydata.jsonl"), "--out", str(other), "--overwrite")
    assert rc == 0 and not (other / "notes.txt").exists() and (other / MANIFEST).is_file()


def test_prepare_reruns_over_its_own_output_and_reads_no_output_inside_the_input(tmp_path, capsys):
    proj = _user_project(tmp_path)
    (proj / "thesis.tex").unlink()
    shutil.rmtree(proj / "code")
    out = proj / "processed"  # inside the input folder
    for _ in range(2):
        rc, err = _prepare(capsys, "--input", str(proj), "--out", str(out))
        assert rc == 0, err
        stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
        assert stats["inputs"] == [str(proj / "mydata.jsonl")]  # its own output is not read back as input
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["written_by"] == "medqa" and "train.jsonl" in manifest["entries"]
    # A file the user adds later to the output folder is not deleted by the next run.
    (out / "my-notes.md").write_text("keep", encoding="utf-8")
    rc, err = _prepare(capsys, "--input", str(proj / "mydata.jsonl"), "--out", str(out))
    assert rc == 2 and "my-notes.md" in err and (out / "my-notes.md").read_text(encoding="utf-8") == "keep"


@pytest.mark.parametrize("kind", ["file", "under-a-file", "unwritable"])
def test_bad_output_paths_are_one_line_errors(tmp_path, capsys, kind):
    f = tmp_path / "report.txt"
    f.write_text("precious", encoding="utf-8")
    out = {"file": f, "under-a-file": f / "sub", "unwritable": Path("/proc/medqa-x")}[kind]
    rc, err = _prepare(capsys, "--input", str(SFT), "--out", str(out))
    assert rc == 2 and len(err.splitlines()) == 1 and str(out) in err and "Traceback" not in err
    assert f.read_text(encoding="utf-8") == "precious"


def test_protected_folders_are_refused_even_with_overwrite(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    for out in (ROOT, ROOT.parent, tmp_path / "home", Path.cwd()):
        with pytest.raises(OutputError, match="refusing"):
            check_output_dir(out, overwrite=True)
    data = tmp_path / "d"
    data.mkdir()
    (data / "in.jsonl").write_text("{}\n", encoding="utf-8")
    with pytest.raises(OutputError, match="contains the input"), atomic_dir(data, inputs=[data / "in.jsonl"],
                                                                           overwrite=True) as tmp:
        (tmp / "x").write_text("x")
    assert (data / "in.jsonl").is_file()


def test_a_folder_without_manifest_is_refused_even_when_it_holds_only_names_medqa_writes(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(OutputError, match="did not write \\(config.json\\)"), atomic_dir(out) as tmp:
        (tmp / "config.json").write_text('{"new": 1}')
    assert json.loads((out / "config.json").read_text()) == {}
    with atomic_dir(out, overwrite=True) as tmp:  # the user says so
        (tmp / "config.json").write_text('{"new": 1}')
    assert json.loads((out / "config.json").read_text()) == {"new": 1}


def test_tiny_model_and_merge_refuse_a_foreign_folder(tmp_path, capsys):
    from medqa.apps.merge import main as merge_main
    from medqa.models.tiny import main as tiny_main

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    assert tiny_main(["--out", str(foreign)]) == 2
    assert "thesis.tex" in capsys.readouterr().err and (foreign / "thesis.tex").is_file()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "base")}))
    assert merge_main(["--adapter", str(adapter), "--out", str(tmp_path)]) == 2  # would hold the adapter
    assert "contains the input" in capsys.readouterr().err and (adapter / "adapter_config.json").is_file()
