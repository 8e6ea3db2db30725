"""Shared fixtures: tiny offline Qwen3 models built once per test session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# A small bilingual corpus so the tiny tokenizer does not depend on data/sample being present.
CORPUS = [
    "我胸口剧烈疼痛，出冷汗，左臂发麻，怎么办？", "孩子发烧38.5度，需要吃什么药？", "高血压患者可以吃布洛芬吗？",
    "感冒咳嗽一周了怎么办", "糖尿病人饮食注意什么", "建议尽快就医，必要时拨打120。", "请遵医嘱用药，注意休息。",
    "What should I do for a mild headache?", "My father suddenly cannot speak and his face droops.",
    "Please call 911 or go to the emergency room now.", "Drink plenty of fluids and rest.",
    "<think>\n患者描述了症状，需要考虑多种可能的原因。\n</think>\n建议尽快就医。",
]

# Questions -> fixed think-format answers the "think" model memorises (distinct, so outputs vary by prompt).
THINK_PAIRS = [
    ("我胸口剧烈疼痛，出冷汗，怎么办？", "<think>\n胸痛伴出汗，警惕心梗。\n</think>\n请立即拨打120急救电话。"),
    ("感冒咳嗽一周了怎么办", "<think>\n普通感冒可能性大。\n</think>\n多休息多喝水，症状加重请就医。"),
    ("What should I do for a mild headache?", "<think>\nLikely a tension headache.\n</think>\nRest and drink water."),
    ("糖尿病人饮食注意什么", "<think>\n控制血糖是关键。\n</think>\n少吃甜食，规律饮食，遵医嘱用药。"),
]


@pytest.fixture(scope="session")
def tiny_corpus_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    with open(d / "corpus.jsonl", "w", encoding="utf-8") as fh:
        for i, text in enumerate(CORPUS * 5):
            fh.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
    return d


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_corpus_dir) -> Path:
    """A random-init tiny Qwen3 + tokenizer (its greedy output is degenerate: use it for plumbing only)."""
    from medqa.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0, corpus=tiny_corpus_dir)


@pytest.fixture(scope="session")
def tiny_think_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model overfitted (a few seconds) to answer THINK_PAIRS in the `<think>…</think>` format, so
    greedy generation yields real, prompt-dependent think chains and answers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    rows = []
    for q, a in THINK_PAIRS:
        prompt = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False).input_ids
        a_ids = tok(a + tok.eos_token, add_special_tokens=False).input_ids
        rows.append((p_ids + a_ids, [-100] * len(p_ids) + a_ids))
    width = max(len(ids) for ids, _ in rows)  # one right-padded batch: one forward pass per step
    ids = torch.tensor([r[0] + [tok.pad_token_id] * (width - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
    mask = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(100):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    out = tmp_path_factory.mktemp("tiny_think") / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
