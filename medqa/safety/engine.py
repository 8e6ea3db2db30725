"""How the safety checks read text: negation, past history, general questions, clauses and conditions.

The lexicon (what to look for) is data in medqa/safety/data/*.yaml; this module holds the reading rules that
every lexicon entry goes through:

- negation: a cue that ends the text right before a match, in the same clause ("没有胸痛", "no need to go to the
  ER"), also across a list ("no chest pain or shortness of breath", "没有胸痛或出汗");
- history and general questions: a red flag whose clause tells the past ("三年前中过风", "in 2019") or asks in
  general ("怎么预防", "signs of a stroke") is not an emergency now;
- clause scope of conditions: a condition ("如果/若/一旦/if/unless …") governs its own clause and the instruction
  it introduces, not a later instruction joined by and/then/同时/然后 ("use your inhaler if you have one and
  call 999 now" is an unconditional call);
- coordination: destinations and instructions joined by or/或 are read one by one ("go to the urgent care
  centre or the emergency department now").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

_I = re.I

# ----------------------------------------------------------------------------------------------- negation

# A negation cue must END the text right before a match (after optional filler words), within the same clause.
_NEG_ZH = re.compile(
    r"(?:不需要|不需|不用|不必|无需|无须|没必要|没有必要|不要|不宜|别|不建议|未曾|未|没有|没|无|否认|并非|不是|从不|从未|不)"
    r"(?:任何|过|什么|特别|一定|马上|立即|立刻|急着|赶紧|去|到|再|要|过多|太)*\s*$"
)
_NEG_EN = re.compile(
    r"\b(?:no|not|never|without|nor|denies|denied|deny|don'?t|do not|doesn'?t|does not|didn'?t|did not|isn'?t|"
    r"is not|aren'?t|are not|needn'?t|no need to|need not|unnecessary to|there'?s no need to|there is no need to)"
    r"(?:\s+(?:need|needs|to|go|going|rush|rushing|run|running|have|has|had|any|the|a|an|really|necessarily|"
    r"immediately|urgently|right|away|now|yet|ever|currently|been|call|calling|into|for|visit|visiting|see|"
    r"seek|seeking|go to|suicidal))*\s*$",
    _I,
)
# The later items of a negated list: "no chest pain or shortness of breath", "没有胸痛或出汗", "无发热、咳嗽".
_NEG_LIST_EN = re.compile(r"\b(?:no|not|never|without|denies|denied|deny|nor)\s+(?:[\w'-]+\s+){1,4}(?:or|nor)\s+$", _I)
_NEG_LIST_ZH = re.compile(r"(?:没有|没|无|否认|不)[\u4e00-\u9fff]{1,8}(?:或者|或是|或|、|及|和)$")
CLAUSE_BREAK = re.compile(r"[，,。.;；!！?？\n、:：]")
_LIST_BREAK = re.compile(r"[，,。.;；!！?？\n:：]")


def _prefix_clause(text: str, start: int, width: int = 24, breaks: re.Pattern[str] = CLAUSE_BREAK) -> str:
    """The text before `start`, back to the last clause break, at most `width` characters."""
    window = text[max(0, start - width * 2):start]
    parts = breaks.split(window)
    return parts[-1][-width:] if parts else ""


def negated(text: str, start: int) -> bool:
    prefix = _prefix_clause(text, start)
    if _NEG_ZH.search(prefix) or _NEG_EN.search(prefix):
        return True
    listed = _prefix_clause(text, start, 40, _LIST_BREAK)
    return bool(_NEG_LIST_EN.search(listed) or _NEG_LIST_ZH.search(listed))


def unnegated(pattern: re.Pattern[str], text: str) -> Iterator[re.Match[str]]:
    for m in pattern.finditer(text or ""):
        if not negated(text, m.start()):
            yield m


def any_unnegated(pattern: re.Pattern[str], text: str) -> bool:
    return next(unnegated(pattern, text), None) is not None


# ----------------------------------------------------------------------------------------------- history

# A red flag told about the past ("以前有过热性惊厥", "a stroke 5 years ago", "healed fine") is history, not an
# emergency now: a match whose clause carries one of these markers does not count.
_PAST = re.compile(
    r"以前|之前有过|曾经|小时候|去年|后遗症|康复|\brehab\w*|前年|几年前|\d+\s*年前|[一二两三四五六七八九十几]+年前|多年|好几年|年轻时|早年|已经好了|痊愈|愈合|"
    r"\byears? ago\b|\bmonths ago\b|\blast year\b|\bin (?:19|20)\d\d\b|\bas a (?:child|baby|kid|teen)\b|\bwhen I was\b|"
    r"\bused to\b|\bhistory of\b|\bhealed\b|\bin the past\b|\bpreviously\b|(?<!at )\bonce\b(?!\s+(?:a|an|per|every|daily|or))",
    _I,
)

# A question *about* an emergency ("what are the signs of a stroke", "怎么预防中暑", "怎么放才能防止孩子误食") is
# not an emergency now.
_INFO = re.compile(
    r"怎么预防|如何预防|预防|防止|以防|有哪些症状|症状有哪些|什么是|怎么识别|如何识别|先兆是什么|前兆有哪些|"
    r"\b(?:signs|symptoms|warning signs) of\b|\bhow (?:can|do|to|would) (?:I |you |we )?(?:prevent|recogni[sz]e|spot|tell)|"
    r"\bprevent(?:ed|ing|ion)?\b|\bteach\b|\bdifference between\b|区别|\bwhat (?:is|are|causes)\b|\brisk (?:of|factors)\b|"
    r"\b(?:is|could) (?:that|it|this) (?:be )?(?:a sign of |a symptom of )?(?:diabetes|diabetic|a stroke|stroke|asthma|epilepsy|"
    r"a heart attack)\b|是不是[^。，]{0,3}(?:糖尿病|中风|哮喘|癫痫|心梗)|算不算",
    _I,
)


def clause_around(text: str, start: int, end: int) -> str:
    left = max((m.end() for m in CLAUSE_BREAK.finditer(text, 0, start)), default=0)
    right = CLAUSE_BREAK.search(text, end)
    return text[left:right.start() if right else len(text)]


def current(pattern: re.Pattern[str], text: str) -> bool:
    """An unnegated match that is not told as past history nor asked about in general."""
    for m in unnegated(pattern, text):
        clause = clause_around(text, m.start(), m.end())
        if not (_PAST.search(clause) or _INFO.search(clause)):
            return True
    return False


def ongoing(pattern: re.Pattern[str], text: str) -> bool:
    """An unnegated match that is not asked about in general; told with a long history it still counts (a medicine
    taken for years, "吃碳酸锂好多年了", is still taken; a shunt placed in childhood is still in place)."""
    for m in unnegated(pattern, text):
        if not _INFO.search(clause_around(text, m.start(), m.end())):
            return True
    return False


# ----------------------------------------------------------------------------------------------- sentences

_SENT_SPLIT = re.compile(r"(?<=[。！？!?；;\n])|(?<=\.)\s+")


def sentences(text: str) -> list[str]:
    return [s for s in _SENT_SPLIT.split(text or "") if s and s.strip()]


# ----------------------------------------------------------------------------------------------- conditions

_SENTENCE_END = re.compile(r"[。！？!?；;\n]|\.(?:\s|$)")
_SEGMENT_BREAK = re.compile(r"[，,；;:：]|\s[-–—]\s")
# A condition directly after the referral it governs: "go to A&E if…", "call 999 should it…".
_COND_AFTER = re.compile(
    r"^\s*(?:(?!and\b|then\b|while\b|but\b|also\b|meanwhile\b)[\w'&]+\s+){0,7}?(?:if|should|in case|unless|when(?:ever)?)\b", _I)
_AFTER_END = re.compile(r"[，,。.;；!！?？\n]")
# Words that join a new instruction to the one before: the condition before them does not reach past them.
_COORD = re.compile(r"(?:\band(?: then)?\b|\bthen\b|\balso\b|\bplus\b|同时|然后|并且|并|接着|随后|之后|另外|再(?=\s*(?:马上|立即|立刻|赶紧)))", _I)
# What may stand between such a joining word and the referral it introduces.
_FILLER = re.compile(r"^(?:\s|then|also|please|immediately|straight away|right away|now|urgently|go|get|head|rush|take|bring|"
                     r"drive|him|her|them|yourself|the (?:child|baby|patient)|straight|立即|立刻|马上|赶紧|赶快|尽快|请|也|就|直接|"
                     r"现在|快|去|送|带[他她孩子宝宝]*)*$", _I)
_LEAD_END = re.compile(r"\b(?:and|but|or|so|then|also|please|however|otherwise)[\s,]*$", _I)
# A condition's own instruction starts in its clause: "如果有X就…", "如果有X先测一下", "X的话可以…", "if so, then…".
_CONSEQUENT = re.compile(r"就|则|那么|的话|先|可以|请|\bthen\b", _I)


def _segments(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The comma-separated clauses of text[start:end] as (start, end) spans."""
    spans, left = [], start
    for b in _SEGMENT_BREAK.finditer(text, start, end):
        spans.append((left, b.start()))
        left = b.end()
    spans.append((left, end))
    return spans


def _fronted(text: str, seg: tuple[int, int], cue: re.Match[str]) -> bool:
    """The condition leads its clause. A Chinese condition always comes before what it governs ("回家以后如果…，");
    an English "if" after an instruction in the same clause ("keep him still if you can,") governs that
    instruction only, unless a joining word ("and if…") starts a new clause before it."""
    if not re.search(r"[A-Za-z]", cue.group(0)):
        return True
    before = text[seg[0]:cue.start()]
    return not re.search(r"\w", before) or _LEAD_END.search(before) is not None


def _consequent_in_clause(text: str, seg: tuple[int, int], cue: re.Match[str]) -> bool:
    """The condition's own instruction already starts inside its clause: "如果有X就先打一针", "有X的话可以含一片"."""
    if cue.group(0).endswith(("的话", "时")):
        start = cue.end()
    else:
        c = _CONSEQUENT.search(text, cue.end(), seg[1])
        if c is None:
            return False
        start = c.end()
    return re.search(r"\w", text[start:seg[1]]) is not None


def _joined_after(text: str, start: int, end: int) -> bool:
    """text[start:end] holds a joining word after which only filler words precede `end` (the referral)."""
    return any(_FILLER.match(text[c.end():end]) for c in _COORD.finditer(text, start, end))


def _starts_joined(text: str, seg: tuple[int, int]) -> bool:
    lead = len(text[seg[0]:seg[1]]) - len(text[seg[0]:seg[1]].lstrip())
    return _COORD.match(text, seg[0] + lead, seg[1]) is not None


def conditional(text: str, m: re.Match[str] | tuple[int, int], cues: re.Pattern[str]) -> bool:
    """The referral at `m` is made conditional by a condition cue (`cues`) that governs it.

    A condition directly after the referral ("go to A&E if…") governs it. A condition before it governs it when
    it is in the same clause with no joining word ("and", "同时"…) right before the referral, or when it opens an
    earlier clause of the same sentence and no clause after its own instruction starts with a joining word:
    "如果出现呼吸困难，请立即拨打120" is conditional; "If you have aspirin, chew one, and call 911 now",
    "use your inhaler if you have one and call 999 now" and "如果家里有肾上腺素笔就先打一针，同时马上拨打120" are not."""
    m_start, m_end = (m.start(), m.end()) if isinstance(m, re.Match) else m
    after = text[m_end:]
    cut = _AFTER_END.search(after)
    if _COND_AFTER.match(after[:cut.start()] if cut else after):
        return True
    sent_start = max((e.end() for e in _SENTENCE_END.finditer(text, 0, m_start)), default=0)
    segs = _segments(text, sent_start, m_start)
    own = segs[-1]
    found = [c for c in cues.finditer(text, sent_start) if c.start() < m_start]  # lookaheads see past the referral
    inside = [c for c in found if c.start() >= own[0]]
    if inside:
        return not _joined_after(text, inside[-1].end(), m_start)
    for i in range(len(segs) - 2, -1, -1):
        seg = segs[i]
        cue = next((c for c in found if seg[0] <= c.start() < seg[1] and _fronted(text, seg, c)), None)
        if cue is None:
            continue
        first = i + 1 if not _consequent_in_clause(text, seg, cue) else i
        return not any(_starts_joined(text, s) for s in segs[first + 1:])
    return False


# ----------------------------------------------------------------------------------------------- coordination

_COORD_DEST_EN = re.compile(
    r"\b(to|at|into)\s+(?:(?:the|a|an|your)\s+)?(?!(?:hospital|emergency|A&E|ER)\b)[^.?!,;]{1,40}?\s+(?:or|and)\s+"
    r"(?=(?:the\s+|an?\s+|your\s+)?(?:nearest\s+|local\s+)?(?:hospital|emergency|A&E|ER|casualty)\b)", _I)
_COORD_DEST_ZH = re.compile(
    r"(立即|立刻|马上|赶紧|赶快|尽快|现在就|第一时间)([^。，,；;]{1,30}?)(?:或者|或是|或|还是)"
    r"(?=\s*(?:去|到|送|拨打|打|联系|带|叫))")


def coordination_variants(text: str) -> list[str]:
    """`text` with each coordination of destinations or instructions read one conjunct at a time: the later
    conjunct takes the verb and urgency of the first ("立即拨打热线或去急诊" → "立即去急诊"; "go to the urgent care
    centre or the emergency department now" → "go to the emergency department now")."""
    out = []
    for rx, repl in ((_COORD_DEST_EN, r"\1 "), (_COORD_DEST_ZH, r"\1")):
        new = rx.sub(repl, text)
        if new != text:
            out.append(new)
    return out
