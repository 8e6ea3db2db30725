"""P4: batched vs one-by-one greedy generation throughput on the tiny model, same prompts (goal >= 5x)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [
    "我胸口剧烈疼痛，出冷汗，怎么办？", "孩子发烧38.5度，需要吃什么药？", "高血压患者可以吃布洛芬吗？",
    "感冒咳嗽一周了怎么办", "糖尿病人饮食注意什么", "What should I do for a mild headache?",
    "My father suddenly cannot speak and his face droops.", "I have had a dry cough for two weeks, is it serious?",
]
N_PROMPTS, BATCH_SIZE, MAX_NEW_TOKENS, GOAL, ROUNDS = 32, 32, 48, 5.0, 3


def _questions() -> list[str]:
    """The first prompts of the prepared test split when present, else a fixed bilingual list."""
    from medqa.apps.predict import read_items

    test = ROOT / "data" / "processed" / "test.jsonl"
    qs = [it.question for it in read_items(test, limit=N_PROMPTS)] if test.is_file() else []
    while len(qs) < N_PROMPTS:
        qs.append(PROMPTS[len(qs) % len(PROMPTS)] + ("" if len(qs) < len(PROMPTS) else f"（{len(qs)}）"))
    return qs


def run(out_dir) -> dict:
    import torch

    from medqa.models.generation import (
        GenerationSettings,
        chat_input_ids,
        chat_messages,
        generate_batch,
        load_model,
    )
    from medqa.models.tiny import build_tiny_model

    tiny = ROOT / "models" / "tiny-qwen3"
    with tempfile.TemporaryDirectory() as tmp:
        if not (tiny / "config.json").is_file():
            tiny = build_tiny_model(Path(tmp) / "tiny", seed=42)
        torch.manual_seed(0)
        model, tok = load_model(str(tiny), device="cpu")
    questions = _questions()
    prompts = [chat_input_ids(tok, chat_messages(q), True) for q in questions]
    settings = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS)
    generate_batch(model, tok, prompts[:2], settings)  # warm-up
    # Best of ROUNDS, the two modes interleaved: the machine is shared, so a burst of someone else's load
    # hits both modes alike and the minimum is the least-disturbed measurement of each.
    t_single = t_batched = float("inf")
    for _ in range(ROUNDS):
        t = time.perf_counter()
        single = [generate_batch(model, tok, [p], settings)[0] for p in prompts]
        t_single = min(t_single, time.perf_counter() - t)
        t = time.perf_counter()
        batched = []
        for i in range(0, len(prompts), BATCH_SIZE):
            batched.extend(generate_batch(model, tok, prompts[i:i + BATCH_SIZE], settings))
        t_batched = min(t_batched, time.perf_counter() - t)
    tok_single = sum(g.gen_tokens for g in single)
    tok_batched = sum(g.gen_tokens for g in batched)
    ratio = (tok_batched / t_batched) / (tok_single / t_single)
    return {
        "name": "P4 batched vs one-by-one generation (tiny Qwen3, CPU, greedy)",
        "prompts": len(prompts), "rounds": ROUNDS, "batch_size": BATCH_SIZE, "max_new_tokens": MAX_NEW_TOKENS,
        "torch_threads": torch.get_num_threads(),
        "one_by_one_s": round(t_single, 3), "batched_s": round(t_batched, 3),
        "one_by_one_tokens_per_s": round(tok_single / t_single, 1),
        "batched_tokens_per_s": round(tok_batched / t_batched, 1),
        "ratio": round(ratio, 2), "goal": GOAL, "met": ratio >= GOAL,
        "identical_outputs": [g.text for g in single] == [g.text for g in batched],
    }
