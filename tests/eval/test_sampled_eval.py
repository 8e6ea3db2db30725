"""Evaluation under a sampled decoding: per-row seeds (reproducible whatever the batch), K answers per item averaged
per item before any interval, the decoding in the resume key and in metrics.json, and `--decoding-from` a PPO/GRPO
run's output folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT, THINK_PAIRS
from medqa.runs.io import read_jsonl


def _questions(path: Path, n: int = 4) -> Path:
    rows = [{"id": f"q{i}", "question": q, "reference": a, "meta": {"risk_level": "critical" if i == 0 else "low"}}
            for i, (q, a) in enumerate(THINK_PAIRS[:n])]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_sampled_predict_is_seeded_per_answer_and_resumes_by_sample(tmp_path, tiny_think_model_dir, capsys):
    from medqa.apps.predict import main

    inp = _questions(tmp_path / "in.jsonl")
    base = ["--model", str(tiny_think_model_dir), "--input", str(inp), "--max-new-tokens", "24", "--device", "cpu",
            "--no-progress", "--do-sample", "--temperature", "1.5", "--top-k", "0", "--top-p", "1.0", "--seed", "7"]
    one, four = tmp_path / "bs1.jsonl", tmp_path / "bs4.jsonl"
    assert main(base + ["--output", str(one), "--batch-size", "1", "--num-samples", "3"]) == 0
    assert main(base + ["--output", str(four), "--batch-size", "4", "--num-samples", "3"]) == 0
    a, b = read_jsonl(one), read_jsonl(four)
    assert [(r["id"], r["sample"]) for r in a] == [(f"q{i}", j) for i in range(4) for j in range(3)]
    # Each answer's draws depend on its seed only: the same text alone in a batch and beside three other prompts.
    assert [r["prediction"] for r in a] == [r["prediction"] for r in b]
    assert len({r["prediction"] for r in a}) > 4  # the samples of one item differ (not greedy repeated)
    assert a[0]["decoding"] == {"think": True, "max_new_tokens": 24, "sample": True, "seed": 7, "temperature": 1.5,
                                "top_p": 1.0, "top_k": 0}
    capsys.readouterr()
    # Asking for a fourth sample generates only that one per item; another temperature is another decoding.
    assert main(base + ["--output", str(one), "--num-samples", "4"]) == 0
    assert "4 generated, 12 already done" in capsys.readouterr().out
    assert [r["prediction"] for r in read_jsonl(one) if r["sample"] < 3] == [r["prediction"] for r in a]
    assert main([*base[:-6], "--temperature", "0.9", "--seed", "7", "--output", str(one), "--num-samples", "4"]) == 0
    assert "16 generated, 0 already done" in capsys.readouterr().out
    # Another seed, other answers.
    other = tmp_path / "seed8.jsonl"
    assert main([*base[:-1], "8", "--output", str(other), "--num-samples", "3"]) == 0
    assert [r["prediction"] for r in read_jsonl(other)] != [r["prediction"] for r in a]


def test_sampling_flags_are_checked(tmp_path, tiny_think_model_dir, capsys):
    from medqa.apps.predict import main

    inp = _questions(tmp_path / "in.jsonl")
    base = ["--model", str(tiny_think_model_dir), "--input", str(inp), "--output", str(tmp_path / "o.jsonl")]
    assert main(base + ["--num-samples", "2"]) == 2
    assert "needs sampling" in capsys.readouterr().err
    assert main(base + ["--temperature", "0.7"]) == 2
    assert "need --do-sample" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def _pred(rid: str, sample: int, prediction: str, reward: float, question: str = "胸口剧痛，出冷汗怎么办？") -> dict:
    return {"id": rid, "sample": sample, "question": question, "prediction": prediction, "reward": reward,
            "meta": {"risk_level": "critical"}, "gen_tokens": 10 if "</think>" in prediction else 16,
            "decoding": {"think": True, "max_new_tokens": 16, "sample": True, "seed": 1, "temperature": 0.7,
                         "top_p": 1.0, "top_k": 0}}


def test_k_samples_are_averaged_per_item_and_compared_by_item(tmp_path):
    from medqa.eval.compare import compare_runs, load_run
    from medqa.eval.score import score_file

    good = "<think>\n胸痛伴出汗需警惕心梗。\n</think>\n请立即拨打120急救电话，尽快就医。"
    open_ = "<think>\n胸痛"
    rows_a, rows_b = [], []
    for i in range(12):
        # A: item i closes its think block in 1 of 4 samples; B: in 3 of 4.
        rows_a += [_pred(f"i{i}", j, good if j == 0 else open_, 1.0 if j == 0 else -1.0) for j in range(4)]
        rows_b += [_pred(f"i{i}", j, good if j < 3 else open_, 1.0 if j < 3 else -1.0) for j in range(4)]
    for name, rows in (("a", rows_a), ("b", rows_b)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                                 encoding="utf-8")
    m = score_file(tmp_path / "a.jsonl", tmp_path / "run_a" / "red_team")
    assert m["n_items"] == 12 and m["num_samples"] == 4
    assert m["think_coverage"] == pytest.approx(0.25) and m["reward"] == pytest.approx(-0.5)
    assert m["eos_rate"] == pytest.approx(0.25)  # 1 of 4 answers per item ended before the 16-token budget
    assert m["decoding"]["temperature"] == 0.7
    lo, hi = m["ci95"]["think_coverage"]
    assert lo == hi == pytest.approx(0.25)  # every item's rate is 0.25: no spread over items (Wilson would say ±)
    items = read_jsonl(tmp_path / "run_a" / "red_team" / "items.jsonl")
    assert len(items) == 12 and items[0]["think_ok"] == pytest.approx(0.25) and items[0]["n_samples"] == 4
    assert len(read_jsonl(tmp_path / "run_a" / "red_team" / "samples.jsonl")) == 48
    score_file(tmp_path / "b.jsonl", tmp_path / "run_b" / "red_team")
    r = compare_runs(load_run(tmp_path / "run_a"), load_run(tmp_path / "run_b"))
    tc = r["overall"]["think_coverage"]
    assert tc["n_paired"] == 12 and tc["delta"] == pytest.approx(0.5) and tc["verdict"] == "B better"


def test_a_repeated_id_needs_distinct_samples(tmp_path):
    from medqa.eval.score import read_predictions
    from medqa.runs.io import InputError

    path = tmp_path / "p.jsonl"
    rows = [_pred("x", 0, "a", 0.0), _pred("x", 0, "b", 0.0)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(InputError, match=r"p.jsonl:2: id: duplicate id 'x'"):
        read_predictions(path)


def test_rollout_decoding_of_each_trainer():
    """What PPO and GRPO record from their configs (a config as a dict; unset top-p/top-k/penalty: off)."""
    from medqa.models.generation import rollout_decoding

    assert rollout_decoding("ppo", {"temperature": 0.5, "top_p": 1.0, "top_k": 0, "max_new_tokens": 256,
                                    "repetition_penalty": 1.3}) == {
        "trainer": "ppo", "temperature": 0.5, "top_p": 1.0, "top_k": 0, "max_new_tokens": 256,
        "enable_thinking": True, "repetition_penalty": 1.3}
    assert rollout_decoding("grpo", {"temperature": 0.9, "top_p": None, "top_k": None, "max_completion_length": 48,
                                     "chat_template_kwargs": {"enable_thinking": False}}) == {
        "trainer": "grpo", "temperature": 0.9, "top_p": 1.0, "top_k": 0, "max_new_tokens": 48,
        "enable_thinking": False, "repetition_penalty": 1.0}
    with pytest.raises(ValueError, match="kind must be one of ppo, grpo"):
        rollout_decoding("sft", {})


def test_decoding_from_a_run_folder_only(tmp_path, tiny_think_model_dir, capsys):
    from medqa.eval.cli import main
    from medqa.eval.decoding import decoding_from
    from medqa.models.generation import write_rollout_decoding

    # A recipe is not a run: the decoding a run sampled with is what it recorded, not what its recipe says today.
    recipe = ROOT / "recipes" / "ppo" / "demo" / "lora.yaml"
    with pytest.raises(FileNotFoundError, match=r"lora.yaml: not a PPO/GRPO output folder \(no rollout_decoding.json\)"):
        decoding_from(recipe)
    # A run folder: what the trainer wrote at its start (here a PPO run with a 12-token budget) round-trips.
    run = tmp_path / "ppo"
    written = write_rollout_decoding(run, "ppo", {"temperature": 1.3, "top_p": 0.9, "top_k": 5,
                                                  "max_new_tokens": 12, "enable_thinking": True,
                                                  "repetition_penalty": 1.2})
    assert decoding_from(run) == written and written["repetition_penalty"] == 1.2
    with pytest.raises(FileNotFoundError, match="rollout_decoding.json"):
        decoding_from(tmp_path)

    sets = ["--set", f"red_team={_questions(tmp_path / 'rt.jsonl')}"]
    out = tmp_path / "eval"
    args = ["run", "--model", str(tiny_think_model_dir), *sets, "--device", "cpu", "--no-progress",
            "--decoding-from", str(run), "--num-samples", "2"]
    assert main(args + ["--out", str(out)]) == 0
    m = json.loads((out / "red_team" / "metrics.json").read_text(encoding="utf-8"))
    assert m["num_samples"] == 2 and m["n_items"] == 4
    assert m["decoding"] == {"think": True, "max_new_tokens": 12, "sample": True, "seed": 42, "temperature": 1.3,
                             "top_p": 0.9, "top_k": 5, "repetition_penalty": 1.2}
    assert max(r["gen_tokens"] for r in read_jsonl(out / "red_team" / "predictions.jsonl")) <= 12
    assert main(args + ["--out", str(tmp_path / "x"), "--temperature", "0.5"]) == 2
    assert "drop --temperature" in capsys.readouterr().err
    assert main(["run", "--model", str(tiny_think_model_dir), *sets, "--out", str(tmp_path / "y"),
                 "--decoding-from", str(recipe)]) == 2
    assert "lora.yaml: not a PPO/GRPO output folder (no rollout_decoding.json)" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()  # refused before any work


def test_the_flags_become_one_settings_value_recorded_as_before():
    """`decoding_settings` is the one place flags become a GenerationSettings; `record()` writes the `decoding` dict
    of the rows (and their resume keys) exactly as before the settings were one value: key for key, in order."""
    import argparse

    from medqa.eval.decoding import add_decoding_args, decoding_settings
    from medqa.models.generation import GenerationSettings

    p = argparse.ArgumentParser()
    add_decoding_args(p)

    def settings(*argv: str) -> GenerationSettings:
        return decoding_settings(p.parse_args(list(argv)))

    greedy = settings("--max-new-tokens", "12")
    assert greedy == GenerationSettings(max_new_tokens=12, seed=42)
    assert list(greedy.record().items()) == [("think", True), ("max_new_tokens", 12), ("sample", False),
                                             ("seed", None)]
    sampled = settings("--no-think", "--do-sample", "--top-k", "0", "--repetition-penalty", "1.2", "--seed", "7",
                       "--num-samples", "3")
    assert sampled == GenerationSettings(enable_thinking=False, do_sample=True, top_k=0, repetition_penalty=1.2,
                                         seed=7)
    assert list(sampled.record().items()) == [("think", False), ("max_new_tokens", 512), ("sample", True),
                                              ("seed", 7), ("temperature", 0.6), ("top_p", 0.95), ("top_k", 0),
                                              ("repetition_penalty", 1.2)]
    with pytest.raises(ValueError, match="--temperature, --top-k need --do-sample"):
        settings("--temperature", "0.7", "--top-k", "3")
    with pytest.raises(ValueError, match="--num-samples 2 needs sampling"):
        settings("--num-samples", "2")
    with pytest.raises(ValueError, match="--decoding-from sets the decoding; drop --max-new-tokens, --no-think"):
        settings("--decoding-from", "runs/ppo", "--no-think", "--max-new-tokens", "8")
