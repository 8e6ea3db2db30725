"""Shared pytest fixtures: a tiny Qwen3 and a small chat-format dataset, built once per session in a tmp dir.

The data has the shape of `make data`'s output (data/processed/*.jsonl): id, instruction, input, output
(`<think>…</think>answer`), meta and `messages` (system, user, assistant); bilingual and of varied lengths.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from medqa.io import write_jsonl

SYSTEM = {
    "en": "You are a careful medical assistant. Think step by step, then answer.",
    "zh": "你是一名谨慎的医学助手。请先逐步思考，再回答。",
}
CASES = [  # (lang, symptom, condition, advice)
    ("en", "a persistent dry cough for three weeks", "post-viral cough or asthma", "see a doctor if it lasts longer"),
    ("en", "sudden chest pain spreading to the left arm", "a possible heart attack", "call emergency services now"),
    ("en", "fever, stiff neck and headache", "possible meningitis", "go to the emergency department immediately"),
    ("en", "itchy red rash after a new soap", "contact dermatitis", "stop the soap and use a mild moisturiser"),
    ("en", "frequent urination and constant thirst", "possible diabetes", "ask a doctor for a blood glucose test"),
    ("en", "a swollen painful big toe at night", "gout", "rest, hydrate and see a doctor about uric acid"),
    ("zh", "持续咳嗽三周，没有发烧", "感染后咳嗽或哮喘", "如果持续更久，请就医检查"),
    ("zh", "突发胸痛并放射到左臂", "可能是心肌梗死", "请立即拨打急救电话"),
    ("zh", "发烧、颈部僵硬和头痛", "可能是脑膜炎", "请立即前往急诊"),
    ("zh", "换新肥皂后出现发痒的红疹", "接触性皮炎", "停用该肥皂并使用温和的保湿霜"),
    ("zh", "尿频并且总是口渴", "可能是糖尿病", "请医生检查血糖"),
    ("zh", "夜间大脚趾红肿疼痛", "痛风", "休息、多喝水，并就尿酸问题咨询医生"),
]
EXTRA = {
    "en": ["The patient is otherwise healthy.", "They take no regular medicines.", "Symptoms are worse at night.",
           "There is no recent travel.", "A family member had similar problems."],
    "zh": ["患者其他方面健康。", "没有长期服药。", "夜间症状加重。", "最近没有旅行。", "家人有类似问题。"],
}


def make_row(i: int, rng: random.Random) -> dict:
    lang, symptom, condition, advice = CASES[i % len(CASES)]
    extra = " ".join(rng.sample(EXTRA[lang], k=rng.randint(0, len(EXTRA[lang]))))
    if lang == "en":
        question = f"I have {symptom}. {extra} What could it be?".replace("  ", " ")
        think = f"The key finding is {symptom}. {extra} This pattern suggests {condition}.".replace("  ", " ")
        answer = f"This may be {condition}. Please {advice}."
    else:
        question = f"我{symptom}。{extra}这可能是什么？"
        think = f"关键表现是{symptom}。{extra}这种情况提示{condition}。"
        answer = f"这可能是{condition}。{advice}。"
    output = f"<think>\n{think}\n</think>\n{answer}"
    return {
        "id": f"fx-{i:04d}", "instruction": SYSTEM[lang], "input": question, "output": output,
        "meta": {"source": "fixture", "risk_level": "low", "specialty": "general", "complexity": "simple",
                 "lang_style": lang, "is_deidentified": True},
        "messages": [{"role": "system", "content": SYSTEM[lang]}, {"role": "user", "content": question},
                     {"role": "assistant", "content": output}],
    }


def write_sft_data(out: Path, n_train: int = 48, n_dev: int = 12, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = [make_row(i, rng) for i in range(n_train + n_dev)]
    write_jsonl(out / "train.jsonl", rows[:n_train])
    write_jsonl(out / "dev.jsonl", rows[n_train:])
    return out


@pytest.fixture(scope="session")
def sft_data_dir(tmp_path_factory) -> Path:
    """data/processed-shaped train.jsonl + dev.jsonl (48 + 12 rows, English and Chinese)."""
    return write_sft_data(tmp_path_factory.mktemp("sft-data"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, sft_data_dir) -> Path:
    """A tiny random-init Qwen3 + tokenizer trained on the fixture text (seconds)."""
    from medqa.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen3"), seed=0, vocab_size=1024, corpus=sft_data_dir)
