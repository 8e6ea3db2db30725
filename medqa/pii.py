"""Scrub personal identifiers from patient text before it is stored for training or leaves the machine.

Matching runs on a normalised view of the text — NFKC (full-width digits, letters and punctuation become ASCII)
and Chinese-numeral digits read as digits — but replacements are made in the original text, so everything that
is not an identifier stays exactly as written. Each identifier becomes a typed placeholder such as `[PHONE]`.

Detectors: regular expressions for emails, ID numbers (resident ID, passport, social-security and NHS numbers
after their label), record numbers, account numbers, messaging handles (微信号/QQ/WeChat/@handle), dates of birth
and addresses (Chinese, US-style streets, UK postcodes); the `phonenumbers` library (Google's libphonenumber) for
phone numbers in any common format; names after cue words in both languages (患者/我叫/姓名/kinship words such as
我婆婆/外婆/小姨夫…, patient/my name is/Mr./my daughter…, also greetings in answers: "张伟您好", "Dear …"),
English names with apostrophes and hyphens (O'Brien, Smith-Jones), and Chinese person names without a cue from
`jieba`'s part-of-speech tags (`nr`) when they start with a family name.

Cost: jieba's tagger is the expensive part, so it runs only on the blocks of Chinese text (jieba cuts each run of
Han/alphanumeric characters on its own) that hold a possible name: a family name in a position where a name could
be reported, or a cue word. Text without one is never segmented; the result is the same as tagging everything.
`scrub` returns the new text; `scrub_with_counts` also says what was removed (for data cards and tests).
Recall and the false-scrub rate on a labelled set are measured by tests/prepare/test_pii.py (numbers in docs/data.md).
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections import Counter

# Chinese family names (the common single-character surnames + the frequent compound ones).
_COMPOUND = "欧阳|司马|上官|诸葛|东方|皇甫|尉迟|公孙|慕容|长孙|司徒|夏侯|令狐|宇文|独孤|南宫|西门|端木|轩辕"
_SINGLE = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭"
    "陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔汤向常温康施文牛樊葛邢安"
    "齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路"
    "游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全"
    "佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚"
    "鄢劳谌奚皮粟冼蔺楼盘满闻位厉伊仝区郜海阚花权强帅屠豆朴盖练廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容敬来扈晁"
    "芮都普阙浦戈伏鹿薄邸雍辜羊阿乌母裘亓修邰赫杭况那宿鲜印逯隆茹诸战慕危玉银亢嵇公哈湛宾戎勾茅利於呼居揭干但尉冶斯"
    "元束檀衣信展阴昝智幸奉植衡富尧闭由"
)
_SURNAME = rf"(?:{_COMPOUND}|[{_SINGLE}])"
_ZH_NAME_SHAPE = re.compile(rf"{_SURNAME}[\u4e00-\u9fff]{{1,3}}")
_COMPOUND_RX = re.compile(_COMPOUND)
_HAN = re.compile(r"[\u4e00-\u9fff]")
_SURNAME_CHARS = frozenset(_SINGLE + _COMPOUND.replace("|", ""))

# Words that start with a family-name character but are clinical (never a name), checked on candidate names.
_NOT_NAMES = re.compile(
    r"^(?:高热|高烧|高血|高龄|高危|高压|黄疸|黄芪|黄体|白细|白带|白术|白内|严重|程度|方面|石膏|金黄|金银|龙胆|江湖|史上|万一|任何|钟点|"
    r"雷同|于昨|于今|于明|于\d|周围|周岁|周期|夏天|冯氏|曾经|胡椒|陈皮|何首|杜仲|王不|常规|常见|全身|全血|安全|安静|明显|明天|"
    r"平时|平均|平卧|平躺|平稳|平静|平常|时间|时候|乐观|和缓|和|应该|应当|应用|原因|原发|单纯|单侧|强烈|强直|于|管理|管状|华法|柏油|信号|边缘|边界|"
    r"连续|包括|包块|经常|经期|解热|解痉|容易|通过|初期|初次|宫颈|宫缩|房颤|房间|费用|卫生|花粉|梅毒|蒙脱|毛囊|毛发|甘油|甘草|"
    r"沙丁|沙眼|景天|来源|来自|苗条|谷丙|谷草|桂枝|党参|丁香|柴胡|葛根|施行|牛黄|牛奶|钱币|钙|文献|鲁米|杨梅|乔木|伍用|"
    r"贾第|詹姆|戴口|童年|成人|成年|成分|成为|方法|方式|方案|向心|向上|向下|孔径|孔隙|麻醉|麻疹|麻木|查体|查看|利尿|利多|"
    r"国内|国外|国际|元素|由于|衣原|展开|信息|那么|那些|都是|都有|都可|谢谢|安抚|宿舍|屈光|戴帽|戴口|水|可)")

# Chinese numerals read as digits (one character each, so positions do not move).
_ZH_DIGIT_CHARS = "零〇一二三四五六七八九幺壹贰叁肆伍陆柒捌玖"
_ZH_DIGIT_VALUES = "001234567891123456789"


def _digit_view(text: str) -> str:
    """`text` with runs of 7+ Chinese-numeral digits written as ASCII digits (same length)."""
    def conv(m: re.Match[str]) -> str:
        return m.group(0).translate(str.maketrans(_ZH_DIGIT_CHARS, _ZH_DIGIT_VALUES))

    return re.sub(rf"[{_ZH_DIGIT_CHARS}]{{7,}}", conv, text)


@functools.lru_cache(maxsize=8192)
def _nfkc(ch: str) -> str:
    return unicodedata.normalize("NFKC", ch)


def _normalise(text: str) -> tuple[str, list[int]]:
    """(NFKC of each character, map from each normalised position to its original position)."""
    table = {ord(ch): n for ch in set(text) if ord(ch) > 127 and (n := _nfkc(ch)) != ch}
    if all(len(n) == 1 for n in table.values()):  # the usual case: positions do not move
        return text.translate(table), list(range(len(text) + 1))
    out, where = [], []
    for i, ch in enumerate(text):
        n = _nfkc(ch) if ord(ch) > 127 else ch
        out.append(n)
        where.extend([i] * len(n))
    where.append(len(text))
    return "".join(out), where


_DATE = r"(?:\d{4}\s*[-/.年]\s*\d{1,2}\s*[-/.月]\s*\d{1,2}\s*日?|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}|" \
        r"\d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* \d{4}|" \
        r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* \d{1,2},? \d{4})"
_CN_PLACE = r"[\u4e00-\u9fff]{1,8}?(?:路|街|大道|大街|巷|弄|胡同|道)"
_CN_NUM = r"(?:\d+|[一二三四五六七八九十]+)"

# (kind, pattern, group): the span of `group` is replaced. Run on the normalised text.
_PATTERNS: list[tuple[str, re.Pattern[str], int]] = [
    ("EMAIL", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), 0),
    # 18-digit PRC resident ID (last char may be X), and the old 15-digit form.
    ("ID", re.compile(r"(?<![\dA-Za-z])(?:[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
                      r"|[1-9]\d{14})(?![\dXx])"), 0),
    # Passport, social-security, NHS, driving-licence and other ID numbers introduced by a label.
    ("ID", re.compile(r"(?:护照(?:号码|号)?|(?:港澳)?通行证(?:号码|号)?|身份证(?:号码|号)?|证件号(?:码)?|社保(?:卡)?号|驾驶证号|"
                      r"passport(?: no\.?| number| #)?|\bID (?:card )?(?:no\.?|number|#)|identity card (?:no\.?|number)|"
                      r"national insurance (?:no\.?|number)|\bNI number|social security (?:no\.?|number)|\bSSN|"
                      r"\bNHS (?:no\.?|number)|driver'?s licen[cs]e(?: no\.?| number)?)\s*(?:是|为|is|[:#])?\s*"
                      r"([A-Za-z]{0,2}\d[\dA-Za-z]{4,}(?:\([\dA-Za-z]\))?|\d{3}[ -]?\d{2,3}[ -]?\d{3,4})(?![\dA-Za-z])", re.I), 1),
    # US social-security numbers written in their own shape.
    ("ID", re.compile(r"(?<![\d-])(\d{3}-\d{2}-\d{4})(?![\d-])"), 1),
    # Medical record / admission / outpatient / insurance numbers introduced by a label.
    ("MRN", re.compile(r"(?:病历号|病案号|住院号|门诊号|就诊号|就诊卡号|档案号|医保卡号|医保号|\bMRN|hospital (?:no\.?|number)|"
                       r"(?:medical |hospital |patient )?record (?:no\.?|number|#)|case (?:no\.?|number))\s*(?:为|是|is|[:#])?\s*"
                       r"([A-Za-z]{0,4}-?\d[A-Za-z0-9-]{3,})", re.I), 1),
    # Bank card and account numbers introduced by a label.
    ("ACCOUNT", re.compile(r"(?:银行卡号?|卡号|账号|帐号|账户|帐户|account (?:no\.?|number|#)|\bacct\.?(?: no\.?| number)?|"
                           r"\bIBAN|sort code)\s*(?:是|为|is|[:#])?\s*(\d[\d -]{4,}\d|[A-Z]{2}\d{2}[A-Z0-9 ]{10,30}[A-Z0-9])", re.I), 1),
    # Messaging handles: after the app's name and a connector, or written as @handle.
    ("HANDLE", re.compile(r"(?<![A-Za-z])(?:微信(?:号|ID)?|QQ(?:号)?|抖音号?|小红书号?|微博|WeChat(?: ID)?|Weixin|Instagram|Insta|IG|"
                          r"Twitter|TikTok|Telegram|Snapchat|WhatsApp|Skype|Facebook|user ?name|handle)"
                          r"\s*(?:号码|号|ID)?\s*(?:是|为|is|[:])\s*"
                          r"(@?(?=[A-Za-z0-9_.-]{4,})[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?)", re.I), 1),
    ("HANDLE", re.compile(r"(?<![\w.@])(@(?!\d{1,2}(?:am|pm|:\d\d)\b)[A-Za-z0-9_](?:[A-Za-z0-9_.]{1,28}[A-Za-z0-9_]))(?![\w@])"), 1),
    # Dates of birth: after a label, or a date followed by 出生.
    ("DOB", re.compile(rf"(?:出生日期|出生年月日|出生年月|出生于|出生在|生日是|生日|DOB|D\.O\.B\.|date of birth|born on|born)"
                       rf"\s*[:]?\s*(?:is\s+)?({_DATE})", re.I), 1),
    ("DOB", re.compile(rf"({_DATE})\s*出生"), 1),
    # Street addresses: a road/street name with a house number (+ building, unit, room).
    ("ADDRESS", re.compile(rf"({_CN_PLACE}(?:[一二三四五六七八九十]+段)?{_CN_NUM}(?:号|弄)(?:院)?(?:{_CN_NUM}(?:号楼|栋|幢|号))?"
                           rf"(?:{_CN_NUM}单元)?(?:{_CN_NUM}(?:室|号))?)"), 1),
    ("ADDRESS", re.compile(r"([\u4e00-\u9fff]{2,8}(?:园|园区|小区|大厦|花园|新村)(?:[\u4e00-\u9fff]{1,3}区)?[A-Za-z0-9-]*\d"
                           r"[A-Za-z0-9-]*(?:栋|幢|号楼|单元|室))"), 1),
    ("ADDRESS", re.compile(r"\b(\d{1,5} (?:[A-Z][a-z]+ ){1,3}(?:Street|St\.?|Road|Rd\.?|Avenue|Ave\.?|Lane|Ln\.?|Boulevard|"
                           r"Blvd\.?|Drive|Dr\.?|Court|Ct\.?|Way|Place|Pl\.?))(?=\W|$)"), 1),
    # UK postcodes (CB1 2AD, SW1A 1AA).
    ("ADDRESS", re.compile(r"(?<![A-Za-z0-9])([A-Z]{1,2}\d[A-Z\d]? ?\d[ABD-HJLNP-UW-Z]{2})(?![A-Za-z0-9])"), 1),
]

# English names after a cue: one to three capitalised words.
_EN_WORD = r"(?:[A-Z]'[A-Z][a-z]+|[A-Z][a-z]+(?:[A-Z][a-z]+)?)"  # Liam, O'Brien, D'Angelo, MacDonald
_EN_NAME = rf"({_EN_WORD}(?:[ -]{_EN_WORD}){{0,2}})"
_EN_KIN = (r"son|daughter|wife|husband|partner|mum|mom|mother|dad|father|brother|sister|grandson|granddaughter|gran|"
           r"granny|grandma|grandmother|grandad|granddad|grandpa|grandfather|aunt|uncle|nephew|niece|cousin|friend|"
           r"flatmate|roommate|boyfriend|girlfriend|fianc[eé]e?|baby|child|toddler|stepson|stepdaughter")
_EN_CUES = re.compile(
    rf"(?:\b(?:[Pp]atient|[Pp]t\.?|[Nn]ame(?: is)?|[Nn]amed|[Cc]alled|[Cc]all me|[Tt]his is|I am|I'm|[Dd]ear|[Hh]i|[Hh]ello)"
    rf"\s*[:,]?\s+|\b(?:[Mm]y|[Hh]is|[Hh]er|[Oo]ur|[Tt]heir) (?:{_EN_KIN}),?\s+|\b(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+)(?!(?:Mr|Mrs|Ms|Miss|Dr)\b){_EN_NAME}")
# Capitalised words that follow those cues but are not names.
_EN_NOT_NAMES = frozenset(
    "I A An The This That My Your His Her Our Their Is Was Has Had Have With Who And Or But Not So Very Also Just "
    "Presents Reports Complains Denies Pregnant Worried Sorry Fine Okay Ok Here There Thank Thanks Doctor Nurse "
    "Patient Patients Mr Mrs Ms Dr Visits Sir Madam All Everyone Team Please Yes No American Chinese British English "
    "Male Female Man Woman Allergic Diabetic Asthmatic Tired Sick Feeling Taking On In At Of For To From By If When "
    "Today Yesterday Tomorrow Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split())

# Chinese cues: a name follows (患者张伟, 我叫…, 姓名：…) or precedes (张伟您好, 李娜女士).
_ZH_CUE_BEFORE = re.compile(
    r"(?:患者姓名|病人姓名|姓名|名字(?:是|叫)?|名叫|叫做|我叫|我是|本人|患者|病人|病患|患儿|家属|联系人|"
    r"(?:我|他|她)的?(?:老公|老婆|丈夫|妻子|爱人|妈妈|母亲|爸爸|父亲|儿子|女儿|孩子|宝宝|奶奶|爷爷|外婆|外公)(?:叫|名叫|是)|"
    r"(?:孩子|宝宝|小孩)(?:叫|名叫))\s*[:]?\s*")
# A kinship word right before a name (我婆婆王桂芬, 外婆刘芳芳, 小姨夫郑强): weaker than a naming cue, so what follows
# counts only when jieba tags it as a name or it is a three-character family + given name.
_ZH_KIN_CUE = re.compile(
    r"(?:老公|老婆|丈夫|妻子|爱人|媳妇|妈妈|母亲|爸爸|父亲|儿子|女儿|奶奶|爷爷|外婆|外公|姥姥|姥爷|婆婆|公公|岳父|岳母|"
    r"舅舅|舅妈|姑姑|姑父|姨妈|小姨夫|小姨|姨夫|伯伯|伯父|伯母|叔叔|婶婶|哥哥|姐姐|弟弟|妹妹|表哥|表姐|表弟|表妹|堂哥|堂姐|"
    r"堂弟|堂妹|孙子|孙女|外孙女|外孙|侄子|侄女|外甥女|外甥|女婿|儿媳|男朋友|女朋友|室友|同事|邻居)(?:叫|名叫|是)?\s*[:]?\s*")
_ZH_CUE_AFTER = re.compile(r"(?:您好|你好|女士|先生|阿姨|叔叔|同学|老师|的家属|的妈妈|的爸爸|说)")
_ZH_NAME_END = re.compile(r"[^\u4e00-\u9fff]|$")
# Without a cue word, a name tagged by jieba counts only between such neighbours (a transliterated drug name such
# as 阿托品 or 莫特罗 is also tagged `nr`, but sits inside other characters).
_ZH_BEFORE_NAME = re.compile(r"(?:^|[^\u4e00-\u9fff]|和|跟|与|同|带|给|让|帮|找|替|陪|问|叫|是)$")
_ZH_AFTER_NAME = re.compile(r"(?:[^\u4e00-\u9fff]|$|的|说|昨|今|前|最近|一直|总是|经常|怀孕|在|去|来|都|也|和|跟|是|有|得|被|"
                            r"现在|这|突然|已经|刚|才|还|又|从|因为|每|今年|平时|住)")
# Public figures of medicine that texts name (not patients).
_PUBLIC_NAMES = frozenset("华佗 扁鹊 张仲景 孙思邈 李时珍 葛洪 皇甫谧 钱乙 叶天士 吴鞠通 钟南山 屠呦呦 林巧稚 张孝骞 "
                          "吴阶平 裘法祖 王清任 朱丹溪 刘完素 张景岳".split())


@functools.lru_cache(maxsize=1)
def _posseg():
    import logging

    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba.posseg


def _zh_tokens(text: str, near: list[int]) -> list[tuple[int, int, str, str]]:  # (start, end, word, flag)
    """(start, end, word, flag) for every jieba token of the blocks of `text` that hold a position in `near`.

    jieba cuts each run of Han/alphanumeric characters (its `re_han_internal` block) on its own, so these tokens
    are the ones a cut of the whole text gives. An empty separator token ends each block."""
    posseg = _posseg()
    blocks = [m.span() for m in posseg.re_han_internal.finditer(text)]
    starts = [a for a, _ in blocks]
    chosen = sorted({i for p in near if (i := bisect.bisect_right(starts, p) - 1) >= 0 and p < blocks[i][1]})
    out: list[tuple[int, int, str, str]] = []
    for i in chosen:
        a, b = blocks[i]
        pos = a
        for pair in posseg.cut(text[a:b]):
            out.append((pos, pos + len(pair.word), pair.word, pair.flag))
            pos += len(pair.word)
        out.append((b, b, "", "x"))
    return out


def _is_zh_name(word: str) -> bool:
    return (2 <= len(word) <= 4 and word not in _PUBLIC_NAMES and word[-1] not in "你我他她它们并和了的吗呢吧啊度性率" and _ZH_NAME_SHAPE.fullmatch(word) is not None
            and not _NOT_NAMES.match(word) and not (len(word) == 4 and not _COMPOUND_RX.match(word)))


_CUE_NAME_NEXT = re.compile(
    r"[男女今主说是的，,、。；;\s(（:：\d]|[一二三四五六七八九十两]+岁|昨|前|最近|对|有|在|从|经常|术后|入院|"
    r"咳|发|头|胸|腹|糖|怀|孕|乳|右|左|今年|代诉|复诊|患|得")

Token = tuple[int, int, str, str]  # start, end, word, jieba flag


def _is_nr(tok: Token) -> bool:
    return tok[3].startswith("nr")


def _tagged_names(text: str, toks: list[Token]) -> list[tuple[int, int]]:
    """Names jieba tags (`nr*`; a lone surname joined with the given name after it) between ordinary neighbours."""
    spans, k = [], 0
    while k < len(toks):
        s, _, w, f = toks[k]
        if not (_is_nr(toks[k]) or (f == "ns" and re.fullmatch(_COMPOUND, w))):
            k += 1
            continue
        j = k
        if j + 1 < len(toks) and _is_nr(toks[j + 1]) and len(toks[j + 1][2]) <= 2 and (
                len(w) == 1 or re.fullmatch(_COMPOUND, w)):
            j += 1  # 冉 + 小雨, 欧阳 + 娜娜
        e = toks[j][1]
        name, before, after = text[s:e], text[max(0, s - 1):s], _ZH_AFTER_NAME.match(text[e:])
        listed = before == "、" or text[e:e + 1] == "、"  # an item of a list of symptoms (冷汗、冷敷)
        # A two-character name needs a word after it, not just punctuation.
        if (_is_zh_name(name) and not listed and _ZH_BEFORE_NAME.search(before) and after
                and (len(name) > 2 or re.match(r"[\u4e00-\u9fff]", after.group(0)))):
            spans.append((s, e))
        k = j + 1
    return spans


def _names_after_cues(text: str, toks: list[Token]) -> list[tuple[int, int]]:
    """A family name + given name right after a cue word (患者张伟说, 我叫欧阳娜娜，, 姓名：李娜), even where jieba
    does not tag it, unless jieba reads an ordinary word there (程序员, 高热, 严重)."""
    at_start = {t[0]: t for t in toks}
    spans = []
    cues = [(m, False) for m in _ZH_CUE_BEFORE.finditer(text)] + [(m, True) for m in _ZH_KIN_CUE.finditer(text)]
    for m, kin in cues:
        at = m.end()
        tok = at_start.get(at)
        if tok is not None:
            if _is_nr(tok) and _is_zh_name(tok[2]):
                spans.append((at, tok[1]))
                continue
            if len(tok[2]) >= 2 and not re.fullmatch(_COMPOUND, tok[2]):
                continue
        for length in (4, 3) if kin else (4, 3, 2):  # four characters only with a compound surname
            cand, rest = text[at:at + length], text[at + length:]
            if (len(cand) == length and _is_zh_name(cand) and (length < 4 or re.match(_COMPOUND, cand))
                    and (_ZH_NAME_END.match(rest) or _ZH_CUE_AFTER.match(rest) or _CUE_NAME_NEXT.match(rest))):
                spans.append((at, at + length))
                break
    return spans


def _names_before_titles(text: str, toks: list[Token]) -> list[tuple[int, int]]:
    """A name right before a greeting or title, as answers address people: 张伟您好, 李娜女士, 王秀兰阿姨."""
    at_start = {t[0]: t for t in toks}
    spans = []
    for m in _ZH_CUE_AFTER.finditer(text):
        for length in (3, 2, 4):
            st = m.start() - length
            if st < 0 or not _is_zh_name(text[st:m.start()]):
                continue
            starts_word = st == 0 or not re.match(r"[\u4e00-\u9fff]", text[st - 1]) or st in at_start
            if starts_word and (m.group(0) != "说" or (st in at_start and _is_nr(at_start[st]))):
                spans.append((st, m.start()))
                break
    return spans


_NAME_BEFORE_CHARS = frozenset("和跟与同带给让帮找替陪问叫是")
_SURNAME_CHAR_RX = re.compile("[" + "".join(sorted(_SURNAME_CHARS)) + "]")


def _tagged_candidates(text: str) -> list[int]:
    """Starts of the spans `_tagged_names` could report, found from the text alone (family name, neighbours and
    shape): where there is none, no jieba token can make a name."""
    out = []
    for m in _SURNAME_CHAR_RX.finditer(text):
        s = m.start()
        if s and _HAN.match(text[s - 1]) and text[s - 1] not in _NAME_BEFORE_CHARS:
            continue
        for length in (2, 3, 4):
            e = s + length
            if e > len(text):
                break
            after = _ZH_AFTER_NAME.match(text, e)
            if after and (length > 2 or _HAN.match(after.group(0))) and _is_zh_name(text[s:e]):
                out.append(s)
                break
    return out


def _zh_name_spans(text: str) -> list[tuple[int, int]]:
    if not _HAN.search(text):
        return []
    near = _tagged_candidates(text)
    near += [m.end() for rx in (_ZH_CUE_BEFORE, _ZH_KIN_CUE) for m in rx.finditer(text)]
    near += [m.start() - 1 for m in _ZH_CUE_AFTER.finditer(text) if m.start()]
    if not near:
        return []
    toks = _zh_tokens(text, near)
    return _tagged_names(text, toks) + _names_after_cues(text, toks) + _names_before_titles(text, toks)


def _en_name_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for m in _EN_CUES.finditer(text):
        words = m.group(1).replace("-", " ").split(" ")
        keep = []
        for w in words:
            if w in _EN_NOT_NAMES:
                break
            keep.append(w)
        if keep:
            start = m.start(1)
            spans.append((start, start + len(" ".join(keep))))
    return spans


_PHONE_RUN = re.compile(r"[\d(+][\d\s().+\-/]*\d")


def _phone_spans(view: str) -> list[tuple[int, int]]:
    spans = []
    if any(sum(c.isdigit() for c in m.group(0)) >= 7 for m in _PHONE_RUN.finditer(view)):
        spans += _matched_phone_spans(view)
    # Mainland mobiles inside other text (no separators), which the matcher can miss next to CJK characters.
    for m in re.finditer(r"(?<!\d)(?:\+?86[- ]?)?1[3-9]\d[- ]?\d{4}[- ]?\d{4}(?!\d)", view):
        spans.append((m.start(), m.end()))
    return spans


def _matched_phone_spans(view: str) -> list[tuple[int, int]]:
    """libphonenumber's matches (run only on text with a run of 7+ digits: no shorter number is valid)."""
    import phonenumbers

    spans = []
    for region in ("CN", "US"):
        for match in phonenumbers.PhoneNumberMatcher(view, region, leniency=phonenumbers.Leniency.VALID):
            digits = re.sub(r"\D", "", match.raw_string)
            if digits in PUBLIC_NUMBERS or digits.lstrip("0") in PUBLIC_NUMBERS:
                continue
            spans.append((match.start, match.end))
    return spans


# Public hotlines that answers must be able to quote (crisis lines, poison control, emergency numbers):
# never scrubbed. Compared on digits only.
PUBLIC_NUMBERS = frozenset({
    "4001619995",  # 全国心理援助热线
    "01082951332",  # 北京心理危机研究与干预中心
    "1082951332",
    "18002221222",  # US Poison Control
    "8002221222",
    "18002738255",  # US National Suicide Prevention Lifeline (old number)
    "8002738255",
    "12356", "12320", "120", "110", "119", "911", "988", "999", "112",
})

_PLACEHOLDER = {"NAME": "[NAME]", "PHONE": "[PHONE]", "ID": "[ID]", "EMAIL": "[EMAIL]", "MRN": "[MRN]", "DOB": "[DOB]",
                "ADDRESS": "[ADDRESS]", "ACCOUNT": "[ACCOUNT]", "HANDLE": "[HANDLE]"}
_PRIORITY = ["EMAIL", "ID", "MRN", "ACCOUNT", "HANDLE", "DOB", "PHONE", "ADDRESS", "NAME"]


def find_identifiers(text: str) -> list[tuple[str, int, int]]:
    """(kind, start, end) of every identifier in `text` (positions in `text`), non-overlapping, in order."""
    if not text:
        return []
    norm, where = _normalise(text)
    view = _digit_view(norm)
    found: list[tuple[str, int, int]] = []
    for kind, pattern, group in _PATTERNS:
        for m in pattern.finditer(view):
            found.append((kind, m.start(group), m.end(group)))
    found += [("PHONE", s, e) for s, e in _phone_spans(view)]
    found += [("NAME", s, e) for s, e in _zh_name_spans(norm) + _en_name_spans(norm)]
    # Earlier kinds win overlaps (an ID number is not also a phone number); then longer spans.
    found.sort(key=lambda t: (_PRIORITY.index(t[0]), -(t[2] - t[1]), t[1]))
    taken: list[tuple[str, int, int]] = []
    for kind, s, e in found:
        if s < e and all(e <= ts or s >= te for _, ts, te in taken):
            taken.append((kind, s, e))
    return sorted(((kind, where[s], where[e - 1] + 1) for kind, s, e in taken), key=lambda t: t[1])


def scrub_with_counts(text: str) -> tuple[str, Counter]:
    """Replace personal identifiers in `text`; return the new text and a count per identifier kind."""
    counts: Counter = Counter()
    if not text:
        return text, counts
    out, last = [], 0
    for kind, s, e in find_identifiers(text):
        out.append(text[last:s])
        out.append(_PLACEHOLDER[kind])
        counts[kind] += 1
        last = e
    out.append(text[last:])
    return "".join(out), counts


def scrub(text: str) -> str:
    """Text with phone numbers, ID numbers, emails, record numbers, dates of birth, addresses and names replaced."""
    return scrub_with_counts(text)[0]


def has_pii(text: str) -> bool:
    return bool(find_identifiers(text))
