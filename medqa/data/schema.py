"""The project's record format and the vocabularies of its `meta` fields."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u4e00-\u9fff]")


def text_size(text: str) -> int:
    """Length with CJK characters counted twice (one Chinese character carries about a word's worth)."""
    return len(text) + len(_CJK.findall(text))

RISK_LEVELS = ("low", "medium", "high", "critical")
SPECIALTIES = (
    "cardiology", "neurology", "respiratory", "gastroenterology", "endocrinology", "pediatrics",
    "obstetrics_gynecology", "psychiatry", "dermatology", "infectious_disease", "emergency",
    "pharmacology", "orthopedics", "urology", "ophthalmology_ent", "general",
)
COMPLEXITIES = ("simple", "moderate", "complex")
LANG_STYLES = ("zh", "en")
SPLITS = ("train", "dev", "test")
OUTPUT_FILES = ("train.jsonl", "dev.jsonl", "test.jsonl", "gold_set.jsonl", "red_team.jsonl", "stats.json", "DATA_CARD.md")

DEFAULT_INSTRUCTION = {
    "zh": "你是一名专业、谨慎的医生助手。请先在<think>中推理，再给出回答。",
    "en": "You are a careful, professional medical assistant. Reason inside <think> first, then answer.",
}


def to_messages(instruction: str, question: str, output: str) -> list[dict]:
    """Chat messages for TRL's SFTTrainer (Qwen3's template renders the <think> block of the last turn)."""
    msgs = [{"role": "system", "content": instruction}] if instruction else []
    return msgs + [{"role": "user", "content": question}, {"role": "assistant", "content": output}]
