import json

import pytest

from medqa.runs.io import InputError, append_jsonl, atomic_write, iter_jsonl, read_jsonl, write_jsonl


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"a": 1}, {"a": 2}])
    write_jsonl(target, [{"b": 1}])
    assert read_jsonl(target) == [{"b": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


@pytest.mark.parametrize(
    "content, line, reason",
    [
        (b'{"a": 1}\n{"a": \n', 2, "malformed JSON"),
        (b'{"a": 1}\n\n{"a": 2}\n[1, 2]\n', 4, "expected a JSON object"),
        (b'{"a": 1}\n{"a": "\xff\xfe"}\n', 2, "not valid UTF-8"),
    ],
)
def test_bad_lines_are_located(tmp_path, content, line, reason):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError) as exc:
        read_jsonl(path)
    assert exc.value.line == line
    assert str(exc.value).startswith(f"{path}:{line}: ")
    assert reason in str(exc.value)


def test_on_error_collects_and_continues(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"a": 1}\nnot json\n{"a": 3}\n')
    errors = []
    assert [obj["a"] for _, obj in iter_jsonl(path, on_error=errors.append)] == [1, 3]
    assert [e.line for e in errors] == [2]


def test_append_after_torn_write_keeps_rows_apart(tmp_path):
    path = tmp_path / "cache.jsonl"
    append_jsonl(path, [{"k": 1}])
    with open(path, "ab") as fh:  # a write cut by SIGKILL: no closing brace, no newline
        fh.write(b'{"k": 2, "val')
    append_jsonl(path, [{"k": 3}])
    assert [r["k"] for r in read_jsonl(path, tolerant=True)] == [1, 3]
    with pytest.raises(InputError):
        read_jsonl(path)
    assert json.loads(path.read_text().splitlines()[-1]) == {"k": 3}


def test_atomic_dir_swaps_whole_folders(tmp_path):
    from medqa.runs.io import MANIFEST, atomic_dir

    out = tmp_path / "model"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "b.txt").write_text("half")
            raise RuntimeError("killed mid-save")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "a.txt"]  # the old folder, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp folder left behind
    with atomic_dir(out) as tmp:
        (tmp / "c.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "c.txt"]
