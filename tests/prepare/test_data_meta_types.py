"""Lenient meta types: descriptive meta scalars are coerced to strings and counted; only structural errors fail."""

from __future__ import annotations

import json

import pytest

from medqa.data import prepare
from medqa.runs.io import InputError, read_jsonl


def _rows(repo_root, n=30):
    return read_jsonl(repo_root / "data" / "sample" / "sft.jsonl")[:n]


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_numeric_descriptive_meta_is_coerced_and_counted(tmp_path, repo_root):
    rows = _rows(repo_root)
    rows[0]["meta"]["complexity"] = 3
    rows[1]["meta"]["complexity"] = 2.5
    rows[2]["meta"]["specialty"] = True
    rows[3]["meta"]["source"] = None
    src = _write(tmp_path / "in.jsonl", rows)
    stats = prepare([str(src)], tmp_path / "out")
    assert stats["meta_coerced"] == {"meta.complexity: float -> str": 1, "meta.complexity: int -> str": 1,
                                     "meta.source: NoneType -> dropped": 1, "meta.specialty: bool -> str": 1}
    on_disk = json.loads((tmp_path / "out" / "stats.json").read_text(encoding="utf-8"))
    assert on_disk["meta_coerced"] == stats["meta_coerced"]
    out = {r["id"]: r["meta"] for name in ("train", "dev", "test") for r in read_jsonl(tmp_path / "out" / f"{name}.jsonl")}
    out.update({r["id"]: r["meta"] for r in read_jsonl(tmp_path / "out" / "gold_set.jsonl")})
    assert out[rows[0]["id"]]["complexity"] == "3" and out[rows[2]["id"]]["specialty"] == "true"
    assert out[rows[3]["id"]]["source"] == "in"  # dropped, then filled like a missing value
    assert "Meta values coerced to strings" in (tmp_path / "out" / "DATA_CARD.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("line, meta, field, reason", [
    (2, ["not", "an", "object"], "meta", "expected"),
    (3, {"complexity": ["a", "b"]}, "meta.complexity", "expected a string, got list"),
    (4, {"risk_level": 3}, "meta.risk_level", "is not one of"),
])
def test_structural_meta_errors_still_fail(tmp_path, repo_root, line, meta, field, reason):
    rows = _rows(repo_root, 5)
    rows[line - 1]["meta"] = meta
    with pytest.raises(InputError) as exc:
        prepare([str(_write(tmp_path / "in.jsonl", rows))], tmp_path / "out")
    assert (exc.value.line, exc.value.field) == (line, field) and reason in exc.value.reason
    assert not (tmp_path / "out").exists()
