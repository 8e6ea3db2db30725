"""Transparent rules that fill in missing `meta`: language, risk level, specialty, complexity.

Every rule is a keyword table you can read; the first match wins in the order shown. Red-flag
(emergency) detection is not repeated here: it comes from `medqa.safety`, the one definition shared
with the rewards and the metrics.
"""

from __future__ import annotations

import re

from medqa.data.schema import RISK_LEVELS, text_size

_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")


def infer_language(text: str) -> str:
    """'zh' when CJK characters make up at least 30 % of the letters, else 'en' (decided by script)."""
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    return "zh" if cjk and cjk >= 0.3 * (cjk + latin / 4) else "en"


# Specialty keyword tables, checked in this order (specific before general).
SPECIALTY_KEYWORDS: dict[str, tuple[str, ...]] = {
    "psychiatry": ("抑郁", "焦虑", "失眠", "自杀", "轻生", "想死", "情绪", "惊恐", "depress", "anxiety", "suicid", "panic", "insomnia", "mood"),
    "obstetrics_gynecology": ("怀孕", "孕", "月经", "痛经", "哺乳", "妇科", "阴道", "pregnan", "menstrua", "period", "breastfeed", "vaginal", "ovary", "uter"),
    "pediatrics": ("孩子", "宝宝", "婴儿", "儿童", "小孩", "幼儿", "新生儿", "child", "baby", "infant", "toddler", "kid", "newborn", "son ", "daughter"),
    "cardiology": ("胸痛", "胸闷", "心悸", "心慌", "血压", "心脏", "心梗", "chest pain", "palpitation", "blood pressure", "hypertension", "heart"),
    "neurology": ("头痛", "头晕", "偏头痛", "麻木", "中风", "卒中", "癫痫", "口角歪斜", "headache", "migraine", "dizz", "numb", "stroke", "seizure", "epilep"),
    "respiratory": ("咳嗽", "哮喘", "气短", "呼吸困难", "肺", "痰", "cough", "asthma", "shortness of breath", "wheez", "lung", "pneumon"),
    "gastroenterology": ("胃", "腹泻", "腹痛", "便秘", "恶心", "呕吐", "肝", "反酸", "stomach", "diarrh", "abdominal", "constipat", "nausea", "vomit", "liver", "reflux"),
    "endocrinology": ("糖尿病", "血糖", "甲状腺", "胰岛素", "diabet", "glucose", "thyroid", "insulin"),
    "dermatology": ("皮疹", "湿疹", "痘", "瘙痒", "皮肤", "荨麻疹", "rash", "eczema", "acne", "itch", "skin", "hives"),
    "infectious_disease": ("发烧", "发热", "感染", "病毒", "流感", "新冠", "抗生素", "fever", "infection", "virus", "flu", "covid", "antibiotic"),
    "orthopedics": ("骨折", "腰痛", "关节", "扭伤", "颈椎", "膝", "fracture", "back pain", "joint", "sprain", "knee", "spine"),
    "urology": ("尿", "肾", "前列腺", "urin", "kidney", "prostat", "bladder"),
    "ophthalmology_ent": ("眼", "视力", "耳", "鼻", "咽喉", "喉咙", "eye", "vision", "ear", "nose", "throat", "sinus"),
    "pharmacology": ("药", "剂量", "副作用", "drug", "dose", "medication", "side effect", "pill"),
}

# Risk words (besides red flags, which make an item critical).
HIGH_RISK_KEYWORDS = (
    "持续高烧", "高烧不退", "便血", "黑便", "咯血", "剧烈", "晕厥", "孕期", "怀孕", "孕妇", "新生儿", "婴儿", "自行购买", "处方药", "抗生素",
    "blood in", "coughing up blood", "severe", "fainted", "pregnan", "newborn", "infant", "prescription", "antibiotic", "opioid",
)
MEDIUM_RISK_KEYWORDS = (
    "持续", "反复", "加重", "发烧", "发热", "疼", "痛", "用药", "药", "persistent", "recurr", "worse", "fever", "pain", "medication", "drug", "dose",
)


def infer_specialty(text: str, red_flags: list[str] | None = None) -> str:
    low = text.lower()
    if red_flags:
        return "emergency"
    for specialty, words in SPECIALTY_KEYWORDS.items():
        if any(w in low for w in words):
            return specialty
    return "general"


def infer_risk_level(text: str, red_flags: list[str]) -> str:
    """critical: a red-flag symptom (medqa.safety.red_flags); high/medium: keyword tables above; else low."""
    low = text.lower()
    if red_flags:
        return "critical"
    if any(w in low for w in HIGH_RISK_KEYWORDS):
        return "high"
    if any(w in low for w in MEDIUM_RISK_KEYWORDS):
        return "medium"
    return "low"


def infer_complexity(question: str, think: str) -> str:
    """By the length of the reasoning the reference needed (characters; CJK counts double)."""
    size = text_size(think)
    return "simple" if size < 120 else "moderate" if size < 400 else "complex"


def complete_meta(meta: dict | None, question: str, think: str, answer: str, *, source: str,
                  flags: list[str] | None = None) -> dict:
    """Fill only the meta fields that are missing; keep every field the record already has. `flags`: the
    question's red flags when the caller has them already (else computed here)."""
    from medqa.safety import red_flags

    meta = dict(meta or {})
    if flags is None:
        flags = red_flags(question)
    meta.setdefault("source", source)
    meta.setdefault("lang_style", infer_language(question + answer))
    if meta.get("risk_level") not in RISK_LEVELS:
        meta["risk_level"] = infer_risk_level(question, flags)
    meta.setdefault("specialty", infer_specialty(question, flags))
    meta.setdefault("complexity", infer_complexity(question, think))
    return meta
