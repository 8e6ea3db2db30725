import pytest

from medqa.text.pii import has_pii, scrub, scrub_with_counts


@pytest.mark.parametrize(
    "text, kind, leaked",
    [
        ("患者张三，男，45岁，反复头痛", "NAME", "张三"),
        ("我叫王小明，今年30岁", "NAME", "王小明"),
        ("姓名：欧阳娜娜，女", "NAME", "欧阳娜娜"),
        ("有问题打我电话13812345678", "PHONE", "13812345678"),
        ("手机 +86 138-1234-5678", "PHONE", "1234"),
        ("座机 010-82951234", "PHONE", "82951234"),
        ("身份证号110101199003071234", "ID", "110101199003071234"),
        ("ID 11010119900307123X here", "ID", "11010119900307123X"),
        ("email me at jane.doe@example.com", "EMAIL", "jane.doe@example.com"),
        ("Patient John Miller, 54, has chest pain", "NAME", "John Miller"),
        ("Mr. Brown asked about his dose", "NAME", "Brown"),
        ("my name is Jane Doe and I am pregnant", "NAME", "Jane Doe"),
        ("call (415) 555-0134 tomorrow", "PHONE", "555-0134"),
        ("病历号: A123456", "MRN", "A123456"),
        ("出生日期：1990-03-07", "DOB", "1990-03-07"),
    ],
)
def test_identifiers_are_scrubbed(text, kind, leaked):
    out, counts = scrub_with_counts(text)
    assert leaked not in out
    assert counts[kind] >= 1


@pytest.mark.parametrize(
    "text",
    [
        "患者于昨日出现胸痛",  # 于 is a surname, but here a preposition
        "患者高热，体温39度",  # 高热 is a symptom, not Mr. Gao
        "患者黄疸3天",
        "患者严重呼吸困难",
        "Patient is a 45 year old man with a cough",
        "血压 120/80 mmHg，心率 88 次/分，2023-01-05 就诊",
        "阿莫西林 500mg 每日3次，连续 7 天",
        "Take 400 mg ibuprofen every 6-8 hours, max 1200 mg a day",
        "If symptoms persist call 120 or 911",
        "请拨打全国心理援助热线 400-161-9995 或北京心理危机干预中心 010-82951332",
        "Call Poison Control at 1-800-222-1222 or call/text 988",
    ],
)
def test_clinical_text_is_left_alone(text):
    assert scrub(text) == text
    assert not has_pii(text)


# ---------------------------------------------------------------- measured on a labelled set

_DATA = __import__("pathlib").Path(__file__).parents[1] / "data"
# Gates: what docs/data.md reports (measured: recall 122/122 identifiers, 0 false scrubs in 297 clinical texts).
MIN_RECALL = 0.95
MAX_FALSE_SCRUB_RATE = 0.02


def _labelled():
    import json

    return [json.loads(x) for x in (_DATA / "pii_labelled.jsonl").read_text(encoding="utf-8").splitlines()]


def _clinical():
    import json

    texts = [json.loads(x)["text"] for x in (_DATA / "pii_clinical.jsonl").read_text(encoding="utf-8").splitlines()]
    sft = _DATA.parents[1] / "data" / "sample" / "sft.jsonl"  # doctors' answers: no identifiers in them
    return texts + [json.loads(x)["output"] for x in sft.read_text(encoding="utf-8").splitlines()]


def test_recall_and_false_scrub_rate_on_the_labelled_sets():
    """≥100 identifier-bearing texts (names with and without cue words in both languages, full-width and
    Chinese-numeral digits, addresses, dates of birth, record numbers) and clinical text that must survive."""
    rows = _labelled()
    assert len(rows) >= 100
    found = missed = 0
    misses = []
    for r in rows:
        out = scrub(r["text"])
        for ident in r["pii"]:
            if ident in out:
                missed += 1
                misses.append((r["text"], ident))
            else:
                found += 1
        for word in r["keep"]:
            assert word in out, f"clinical words scrubbed: {word!r} from {r['text']!r} -> {out!r}"
    recall = found / (found + missed)
    clinical = _clinical()
    changed = [(t, scrub(t)) for t in clinical if scrub(t) != t]
    rate = len(changed) / len(clinical)
    print(f"PII recall {found}/{found + missed} = {recall:.3f}; false scrubs {len(changed)}/{len(clinical)} = {rate:.3f}")
    assert recall >= MIN_RECALL, misses
    assert rate <= MAX_FALSE_SCRUB_RATE, changed[:5]


@pytest.mark.parametrize("text, leaked", [
    ("患者张伟说头痛", "张伟"), ("请患者张伟立即就医", "张伟"), ("患者：李娜", "李娜"), ("我叫欧阳娜娜，今天发烧", "欧阳娜娜"),
    ("电话１３８１２３４５６７８", "１３８１２３４５６７８"), ("手机一三八一二三四五六七八", "一三八一二三四五六七八"),
    ("佘晓峰昨天开始咳嗽", "佘晓峰"), ("张伟您好，建议您尽快就医。", "张伟"),
])
def test_the_reported_leaks_are_closed(text, leaked):
    assert leaked not in scrub(text)


def test_only_identifiers_change_and_the_rest_is_kept_verbatim():
    text = "患者：李娜，38岁女性患者，电话１３８１２３４５６７８，服用阿莫西林后皮疹。"
    assert scrub(text) == "患者：[NAME]，38岁女性患者，电话[PHONE]，服用阿莫西林后皮疹。"


# ---------------------------------------------------------------- round 2: kinship names, apostrophes, handles, numbers

@pytest.mark.parametrize("text, leaked", [
    ("我婆婆王桂芬今年70岁，最近总是头晕", "王桂芬"),  # a name right after a kinship word
    ("外婆刘芳芳有高血压", "刘芳芳"),
    ("她孙子林浩浩发烧39度", "林浩浩"),  # reduplicated given name
    ("我女儿陈思思3岁，咳嗽一周了", "陈思思"),
    ("Patient: Siobhan O'Brien, 34, migraine", "O'Brien"),  # apostrophe surname
    ("My father, Mr. O'Neill, 82, fell yesterday", "O'Neill"),
    ("My son Liam MacDonald-Hughes has a fever", "MacDonald-Hughes"),  # kinship cue, Mac + hyphen
    ("Mrs. Smith-Jones asked about ibuprofen", "Smith-Jones"),
    ("我的微信号是 zhang_wei1988，加我", "zhang_wei1988"),
    ("WeChat: lily_chen_88, message me", "lily_chen_88"),
    ("reach me on Instagram @sarah.k.runs", "sarah.k.runs"),
    ("我的QQ号是 384756291", "384756291"),
    ("住院号为 ZY20231187，肝功能异常", "ZY20231187"),
    ("门诊号：MZ-0098812", "0098812"),
    ("Hospital record no. 00482913, admitted", "00482913"),
    ("护照号E12345678，要打什么疫苗", "E12345678"),
    ("Passport number 533380006, travelling", "533380006"),
    ("My NHS number is 943 476 5919", "476 5919"),
    ("My SSN is 078-05-1120", "078-05-1120"),
    ("银行卡号 6222 0212 3456 7890 123", "3456 7890"),
    ("Account number 12345678, for the refund", "12345678"),
    ("I live at Flat 3, 27 Mill Road, Cambridge CB1 2AD", "CB1 2AD"),
])
def test_round_two_identifiers_are_scrubbed(text, leaked):
    assert leaked not in scrub(text)


@pytest.mark.parametrize("text", [
    "我儿子明明没发烧，为什么一直咳嗽",  # 明明 is an adverb here, not a name
    "我婆婆高高兴兴出去散步，回来说腿疼",
    "我舅舅王者荣耀打了一夜，眼睛红肿",
    "我姐姐常年贫血，吃什么补铁",
    "让父亲平卧，头偏向一侧",
    "He was diagnosed with Crohn's disease and takes azathioprine",
    "Is St John's wort safe with sertraline?",
    "My mum has Parkinson's and her tremor is worse in the mornings",
    "Take 5 mg @ 8am and 5 mg @ 8pm",
    "腰椎L4-L5间盘突出，走路腿麻",
])
def test_round_two_clinical_text_is_left_alone(text):
    assert scrub(text) == text


def _full_tokens(text, near):
    """Reference: jieba over the whole text (what the scrubber did before it chose blocks)."""
    from medqa.text import pii

    out, pos = [], 0
    for pair in pii._posseg().cut(text):
        out.append((pos, pos + len(pair.word), pair.word, pair.flag))
        pos += len(pair.word)
    return out


def test_round_two_blind_set_meets_the_targets():
    """tests/data/pii_blind_r2.jsonl (written before the round-2 changes; 12/41 identifiers were removed then):
    recall >= 0.98 and at most 1 % of its clinical texts changed."""
    from medqa.apps.safety_eval import pii_measure

    m = pii_measure(_DATA / "pii_blind_r2.jsonl")
    assert m["identifiers"] >= 40 and m["clinical"] >= 30
    assert m["found"] / m["identifiers"] >= 0.98, m
    assert m["false_scrubs"] / m["clinical"] <= 0.01, m


def test_segmenting_only_candidate_blocks_finds_the_same_identifiers(monkeypatch):
    """jieba runs only on blocks that can hold a name; that must not change a single finding."""
    import json

    from medqa.text import pii

    texts = [r["text"] for r in _labelled()] + _clinical()
    texts += [json.loads(x)["text"] for x in (_DATA / "pii_blind_r2.jsonl").read_text(encoding="utf-8").splitlines()]
    fast = [pii.find_identifiers(t) for t in texts]
    monkeypatch.setattr(pii, "_zh_tokens", _full_tokens)
    monkeypatch.setattr(pii, "_tagged_candidates", lambda text: [0])
    assert [pii.find_identifiers(t) for t in texts] == fast


def test_text_without_a_possible_name_is_not_segmented(monkeypatch):
    from medqa.text import pii

    def boom():
        raise AssertionError("jieba ran on text that cannot hold a name")

    monkeypatch.setattr(pii, "_posseg", boom)
    assert scrub("建议多喝水，注意休息，如果发热超过三天请及时就医。") == "建议多喝水，注意休息，如果发热超过三天请及时就医。"
