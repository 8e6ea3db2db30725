"""`make bench-shape` (medqa/bench/shape.py): the PPO log-prob path at Qwen3-1.7B's real vocabulary and width never
allocates a full-vocabulary fp32 copy of the sequence (the cheap real-shape check of the suite), and the benchmark's
plumbing runs end to end with the tiny shape (model cache, a GRPO stage, the JSON and markdown report)."""

import json

import pytest

from medqa.bench import shape
from medqa.models.tiny import QWEN3_1_7B
from medqa.train.ppo.core import CHUNK_POSITIONS


@pytest.mark.slow
def test_logprob_path_at_the_real_vocabulary_allocates_one_block_at_a_time():
    # From bf16 logits: the LM head's bf16 matmul adds no (tokens, vocab) fp32 tensor, and its backward takes over
    # 30 minutes on CPUs without AVX-512 (`make bench-shape` keeps it).
    tokens, vocab = 2 * CHUNK_POSITIONS, QWEN3_1_7B["vocab_size"]
    r = shape.logprob_path(QWEN3_1_7B["hidden_size"], vocab, tokens, lm_head=False)
    assert r["max_abs_logprob_difference"] < 1e-4
    full_fp32 = tokens * vocab * 4
    plain_fp32 = [t["bytes"] for t in r["plain"]["largest"] if t["dtype"] == "float32"]
    block_fp32 = [t["bytes"] for t in r["blocks"]["largest"] if t["dtype"] == "float32"]
    assert max(plain_fp32) >= full_fp32  # the plain formula: an fp32 (T, V) copy and a full log-softmax
    assert max(block_fp32) <= CHUNK_POSITIONS * vocab * 4  # block-wise: one block's fp32 at a time
    plain_peak, block_peak = r["plain"]["peak_rss_above_start_gib"], r["blocks"]["peak_rss_above_start_gib"]
    if plain_peak is not None and block_peak is not None:  # Linux: resident high-water mark of each pass
        assert block_peak < plain_peak, r


@pytest.mark.slow
def test_tiny_shape_run_caches_the_model_and_writes_the_report(tiny_model_dir, processed_dir, tmp_path, capsys):
    from medqa.data import build_rl_prompts

    prompts = tmp_path / "prompts.jsonl"
    build_rl_prompts(processed_dir, prompts)
    argv = ["--tiny", "--tokenizer", str(tiny_model_dir), "--data", str(processed_dir), "--prompts", str(prompts),
            "--model-dir", str(tmp_path / "model"), "--work", str(tmp_path / "work"), "--out",
            str(tmp_path / "shape.json"), "--stages", "grpo-lora", "--no-logprob-path"]
    assert shape.main(argv) == 0
    assert "built" in capsys.readouterr().out
    report = json.loads((tmp_path / "shape.json").read_text())
    run = report["stages"]["grpo-lora"]
    assert run["global_step"] == shape.SHAPE_STEPS and run["peak_rss_gib"] > 0
    assert "| grpo-lora |" in (tmp_path / "shape.md").read_text()
    assert shape.main([*argv, "--stages"]) == 0  # no stage: the cached model is reused
    assert "cached" in capsys.readouterr().out


def test_an_existing_file_that_is_not_a_report_is_never_replaced(tiny_model_dir, processed_dir, tmp_path, capsys):
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("")
    argv = ["--tiny", "--tokenizer", str(tiny_model_dir), "--data", str(processed_dir), "--prompts", str(prompts),
            "--model-dir", str(tmp_path / "model"), "--work", str(tmp_path / "work"), "--out", str(mine), "--stages"]
    assert shape.main(argv) == 2
    assert "not a bench-shape report" in capsys.readouterr().err
    assert mine.read_text() == '{"my": "notes"}' and not (tmp_path / "model").exists()
