import pytest

from medqa.pii import has_pii, scrub, scrub_with_counts


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
