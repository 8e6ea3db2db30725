import json
from collections import Counter
from pathlib import Path

import pytest

from conftest import SAMPLE, SAMPLE_INPUTS, offline_teacher, run_cli
from medqa.data import build_rl_prompts, prepare
from medqa.data.formats import RawRow, detect_format, read_source
from medqa.data.normalize import normalize
from medqa.data.schema import RISK_LEVELS, SPECIALTIES
from medqa.runs.io import InputError, read_jsonl
from medqa.text.think import split_think

FORMATS = SAMPLE / "formats"
BAD = Path(__file__).parents[1] / "fixtures" / "bad_inputs"


def _sets(out):
    return {name: read_jsonl(out / f"{name}.jsonl") for name in ("train", "dev", "test", "gold_set", "red_team")}


@pytest.mark.parametrize(
    "path, fmt",
    [
        (FORMATS / "medical_o1_reasoning_sft.json", "medical_o1"),
        (FORMATS / "delicate_medical_r1.jsonl", "delicate_r1"),
        (FORMATS / "project_format.parquet", "project"),
        (SAMPLE / "sft.jsonl", "project"),
    ],
)
def test_each_source_format_loads_and_normalises(path, fmt):
    rows = list(read_source(str(path)))
    assert len(rows) >= 10 and {r.fmt for r in rows} == {fmt}
    records = [normalize(r) for r in rows if r.data.get("meta", {}) is not None]
    for rec in records:
        parts = split_think(rec["output"])
        assert parts.well_formed, rec["id"]
        assert rec["meta"]["risk_level"] in RISK_LEVELS
        assert rec["meta"]["lang_style"] in ("zh", "en")
        assert rec["meta"]["is_deidentified"] is True
        assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
        assert rec["messages"][-1]["content"] == rec["output"]


def test_format_detection_and_missing_meta_is_inferred():
    assert detect_format({"Question": "q", "Complex_CoT": "c", "Response": "r"}) == "medical_o1"
    assert detect_format({"instruction": "", "question": "q", "think": "t", "answer": "a"}) == "delicate_r1"
    assert detect_format({"input": "q", "output": "o"}) == "project"
    row = RawRow({"input": "I have crushing chest pain spreading to my left arm and I am sweating.",
                  "output": "<think>\nPossible heart attack; this is an emergency needing immediate care.\n</think>\nCall 911 now."},
                 "x.jsonl", 1, "project")
    meta = normalize(row)["meta"]
    assert meta["risk_level"] == "critical" and meta["lang_style"] == "en"
    row = RawRow({"input": "我最近皮肤起了很多红疹，很痒，怎么办？", "output": "<think>\n可能是湿疹或荨麻疹，需要了解诱因。\n</think>\n建议避免搔抓。"}, "x.jsonl", 2, "project")
    meta = normalize(row)["meta"]
    assert meta["specialty"] == "dermatology" and meta["lang_style"] == "zh"


def test_hub_ids_go_through_load_dataset(monkeypatch):
    """The hub path is real code; here `load_dataset` is fed the shipped sample in the hub's format."""
    import datasets

    rows = json.loads((FORMATS / "medical_o1_reasoning_sft.json").read_text(encoding="utf-8"))
    calls = []

    def fake_load(name, config=None, split=None):
        calls.append((name, config, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    got = list(read_source("FreedomIntelligence/medical-o1-reasoning-SFT:en"))
    assert calls == [("FreedomIntelligence/medical-o1-reasoning-SFT", "en", "train")]
    assert len(got) == len(rows) and got[0].fmt == "medical_o1" and got[0].line == "row 1"


def test_make_data_outputs(processed_dir):
    files = sorted(p.name for p in processed_dir.iterdir() if p.name != ".medqa-output.json")  # + the manifest
    assert files == sorted(["train.jsonl", "dev.jsonl", "test.jsonl", "gold_set.jsonl", "red_team.jsonl", "stats.json", "DATA_CARD.md"])
    sets = _sets(processed_dir)
    n = sum(len(sets[s]) for s in ("train", "dev", "test"))
    assert n >= 200
    # 80/10/10 up to rounding, no id in two splits.
    assert abs(len(sets["train"]) / n - 0.8) < 0.02 and abs(len(sets["dev"]) / n - 0.1) < 0.02
    ids = [r["id"] for s in ("train", "dev", "test") for r in sets[s]]
    assert len(ids) == len(set(ids))
    # Every specialty and risk level is represented in training.
    assert {r["meta"]["specialty"] for r in sets["train"]} >= set(SPECIALTIES) - {"general"}
    assert {r["meta"]["risk_level"] for r in sets["train"]} == set(RISK_LEVELS)
    # The shipped red team is held out of training entirely.
    train_q = {r["input"] for r in sets["train"]}
    shipped = [r for r in sets["red_team"] if r["meta"]["source"] == "red_team"]
    assert len(shipped) >= 40 and not train_q & {r["input"] for r in shipped}
    assert all(r["meta"]["risk_level"] in ("high", "critical") for r in sets["red_team"])
    stats = json.loads((processed_dir / "stats.json").read_text())
    assert stats["splits"]["train"]["count"] == len(sets["train"])
    assert stats["splits"]["train"]["tokens_per_example"]["mean"] > 50
    assert stats["duplicates_removed"] >= 4
    assert "| train |" in (processed_dir / "DATA_CARD.md").read_text()


def test_splits_are_stratified(processed_dir):
    sets = _sets(processed_dir)
    for key in ("risk_level", "specialty"):
        total = Counter(r["meta"][key] for s in ("train", "dev", "test") for r in sets[s])
        train = Counter(r["meta"][key] for r in sets["train"])
        for value, count in total.items():
            if count >= 20:
                assert abs(train[value] / count - 0.8) <= 0.1, (key, value, train[value], count)


def test_splits_are_deterministic(tmp_path, processed_dir):
    with offline_teacher() as teacher:
        prepare(SAMPLE_INPUTS, tmp_path / "again", seed=42, teacher=teacher)
    for name in ("train", "dev", "test", "gold_set", "red_team"):
        assert (tmp_path / "again" / f"{name}.jsonl").read_bytes() == (processed_dir / f"{name}.jsonl").read_bytes(), name
    prepare(SAMPLE_INPUTS, tmp_path / "other", seed=7)
    assert (tmp_path / "other" / "dev.jsonl").read_bytes() != (processed_dir / "dev.jsonl").read_bytes()


def test_personal_identifiers_never_reach_the_outputs(processed_dir):
    text = "".join((processed_dir / f"{n}.jsonl").read_text(encoding="utf-8") for n in ("train", "dev", "test", "red_team"))
    raw = (SAMPLE / "sft.jsonl").read_text(encoding="utf-8")
    for leaked in ("13698765432", "110101196908151234", "John Miller", "sunlixin_test@example.com", "陈秀兰", "(415) 555-0134"):
        assert leaked in raw  # the sample really carries identifiers to scrub …
        assert leaked not in text  # … and none reaches the outputs
    stats = json.loads((processed_dir / "stats.json").read_text())
    assert sum(stats["pii_removed"].values()) >= 10


def test_gold_set_follows_its_criteria(processed_dir):
    sets = _sets(processed_dir)
    held_out = {r["id"] for r in sets["dev"] + sets["test"]}
    assert sets["gold_set"] and all(r["id"] in held_out for r in sets["gold_set"])
    assert all(split_think(r["output"]).well_formed and not r["meta"].get("quality_flags") for r in sets["gold_set"])


def test_rl_prompts_put_high_risk_first(tmp_path, processed_dir):
    out = tmp_path / "rl" / "training_prompts.jsonl"
    n = build_rl_prompts(processed_dir, out)
    rows = read_jsonl(out)
    assert n == len(rows) == len(read_jsonl(processed_dir / "train.jsonl"))
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    ranks = [order[r["meta"]["risk_level"]] for r in rows]
    assert ranks == sorted(ranks) and ranks[0] == 0
    first = rows[0]
    assert [m["role"] for m in first["prompt"]] == ["system", "user"] and first["reference"] and first["question"]


# --- bad input: every class yields FILE:LINE: field: reason, exit != 0 and no output -------------------

BAD_CASES = [
    ("malformed_json.jsonl", 3, None, "malformed JSON"),
    ("missing_field.jsonl", 2, "output", "missing required field"),
    ("wrong_type.jsonl", 4, "input", "expected string, got int"),
    ("empty_answer.jsonl", 2, "output", "empty answer"),
    ("unclosed_think.jsonl", 3, "output", "has no closing </think>"),
    ("non_utf8.jsonl", 2, None, "not valid UTF-8"),
]


@pytest.mark.parametrize("name, line, field, reason", BAD_CASES)
def test_bad_input_fails_with_location_and_writes_nothing(tmp_path, name, line, field, reason):
    out = tmp_path / "processed"
    with pytest.raises(InputError) as exc:
        prepare([str(BAD / name)], out)
    err = exc.value
    assert (err.line, err.field) == (line, field)
    assert reason in err.reason
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, line, field, reason", BAD_CASES[:2])
def test_bad_input_cli_message_and_exit_code(tmp_path, name, line, field, reason):
    proc = run_cli("data", "prepare", "--input", str(BAD / name), "--out", str(tmp_path / "p"), check=False)
    assert proc.returncode == 2
    prefix = f"error: {BAD / name}:{line}: " + (f"{field}: " if field else "")
    assert proc.stderr.startswith(prefix) and reason in proc.stderr
    assert not (tmp_path / "p").exists()


def test_failed_run_keeps_the_previous_output(tmp_path, processed_dir):
    out = tmp_path / "processed"
    prepare([str(FORMATS / "delicate_medical_r1.jsonl")], out)
    before = (out / "train.jsonl").read_bytes()
    with pytest.raises(InputError):
        prepare([str(FORMATS / "delicate_medical_r1.jsonl"), str(BAD / "wrong_type.jsonl")], out)
    assert (out / "train.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["processed"]


def test_skip_mode_counts_every_reason(tmp_path):
    stats = prepare([str(BAD)], tmp_path / "p", on_error="skip")
    skipped = stats["skipped"]
    assert sum(skipped.values()) == len(BAD_CASES)
    assert skipped["output: missing required field for format 'project'"] == 1
    assert skipped["row: malformed JSON"] == 1 and skipped["row: not valid UTF-8"] == 1
    kept = sum(s["count"] for k, s in stats["splits"].items() if k in ("train", "dev", "test"))
    assert kept == 3 * len(BAD_CASES) - stats["duplicates_removed"]
