"""Scrub personal identifiers from patient text before it is stored for training or leaves the machine.

Rules are regular expressions, applied in order; each replaces a match with a typed placeholder such as
`[PHONE]`, so the text stays readable for the model and the judge. `scrub` returns the new text;
`scrub_with_counts` also says what was removed (for data cards and tests).
"""

from __future__ import annotations

import re
from collections import Counter

# Chinese family names (common single-character surnames + the frequent compound ones).
_SURNAMES = (
    "欧阳|司马|上官|诸葛|东方|皇甫|尉迟|公孙|慕容|长孙|"
    "王|李|张|刘|陈|杨|黄|赵|吴|周|徐|孙|马|朱|胡|郭|何|高|林|罗|郑|梁|谢|宋|唐|许|韩|冯|邓|曹|彭|曾|肖|田|董|"
    "袁|潘|蒋|蔡|余|杜|叶|程|苏|魏|吕|丁|任|沈|姚|卢|姜|崔|钟|谭|陆|汪|范|金|石|廖|贾|夏|韦|付|方|白|邹|孟|熊|"
    "秦|邱|江|尹|薛|闫|段|雷|侯|龙|史|陶|黎|贺|顾|毛|郝|龚|邵|万|钱|严|覃|武|戴|莫|孔|汤"
)

_NOT_NAMES = "高热|高烧|高血|高龄|黄疸|白细|白带|严重|程度|方面|石膏|金黄|龙胆|江湖|史上|万一|任何|钟点|雷同"

_RULES: list[tuple[str, re.Pattern[str], str]] = [
    ("EMAIL", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[EMAIL]"),
    # 18-digit PRC resident ID (last char may be X), and the old 15-digit form.
    ("ID", re.compile(r"(?<!\d)(?:[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]|[1-9]\d{14})(?![\dXx])"), "[ID]"),
    # Mainland mobiles (optionally +86), landlines with area code, and NANP numbers.
    ("PHONE", re.compile(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)"), "[PHONE]"),
    ("PHONE", re.compile(r"(?<!\d)0\d{2,3}-\d{7,8}(?!\d)"), "[PHONE]"),
    ("PHONE", re.compile(r"(?<![\d-])(?:\+1[ -]?)?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?!\d)"), "[PHONE]"),
    # Medical record / insurance numbers introduced by a label.
    ("MRN", re.compile(r"(?:(?<=病历号)|(?<=住院号)|(?<=门诊号)|(?<=MRN)|(?<=MRN:)|(?<=MRN：))\s*[:：#]?\s*[A-Za-z0-9-]{4,}", re.I), " [MRN]"),
    # Names after 患者/病人/我叫/姓名 (Chinese): surname + 1–2 given-name characters, followed by punctuation,
    # a gender/age word or a digit; medical words that start with a surname character (高热, 黄疸…) are kept.
    ("NAME", re.compile(
        rf"(?:(?<=患者)|(?<=病人)|(?<=我叫)|(?<=姓名:)|(?<=姓名：))\s*(?!{_NOT_NAMES})(?:{_SURNAMES})[\u4e00-\u9fff]{{1,2}}?"
        r"(?=[，,。、；;\s（(：:]|男|女|先生|女士|小朋友|今年|\d|$)"), "[NAME]"),
    # Titles and patient patterns in English: "patient John Smith", "Mr. Smith", "my name is Jane Doe".
    ("NAME", re.compile(r"(?<=\b[Pp]atient )(?!is\b|was\b|has\b|with\b|presents\b|reports\b)[A-Z][a-z]+(?: [A-Z][a-z]+)?"), "[NAME]"),
    ("NAME", re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Dr)\.? [A-Z][a-z]+(?: [A-Z][a-z]+)?"), "[NAME]"),
    ("NAME", re.compile(r"(?<=\b[Mm]y name is )[A-Z][a-z]+(?: [A-Z][a-z]+)?"), "[NAME]"),
    # Full dates of birth.
    ("DOB", re.compile(r"(?:(?<=出生日期)|(?<=出生于)|(?<=生日)|(?<=DOB)|(?<=born on))\s*[:：]?\s*\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}日?", re.I), " [DOB]"),
]


# Public hotlines that answers must be able to quote (crisis lines, poison control, emergency numbers):
# never scrubbed. Compared on digits only.
PUBLIC_NUMBERS = frozenset({
    "4001619995",  # 全国心理援助热线
    "01082951332",  # 北京心理危机研究与干预中心
    "18002221222",  # US Poison Control
    "8002221222",
    "18002738255",  # US National Suicide Prevention Lifeline (old number)
    "8002738255",
    "12356", "12320", "120", "110", "119", "911", "988", "999", "112",
})


def scrub_with_counts(text: str) -> tuple[str, Counter]:
    """Replace personal identifiers in `text`; return the new text and a count per identifier kind."""
    counts: Counter = Counter()
    if not text:
        return text, counts

    def replace(m: re.Match[str]) -> str:
        if kind == "PHONE" and re.sub(r"\D", "", m.group(0)) in PUBLIC_NUMBERS:
            return m.group(0)
        counts[kind] += 1
        return placeholder

    for kind, pattern, placeholder in _RULES:  # noqa: B007 (read by `replace`)
        text = pattern.sub(replace, text)
    return text, counts


def scrub(text: str) -> str:
    """Text with phone numbers, ID numbers, emails, record numbers, dates of birth and names replaced."""
    return scrub_with_counts(text)[0]


def has_pii(text: str) -> bool:
    return bool(scrub_with_counts(text)[1])
