"""medqa.safety: bilingual positives, negatives, negations and paraphrases for every check."""

from __future__ import annotations

import pytest

from medqa import safety as S

# ------------------------------------------------------------------------------------------- red flags


@pytest.mark.parametrize(
    "question, category",
    [
        ("我爸爸胸口很痛，还一直出冷汗，怎么办？", "chest_pain"),
        ("胸闷胸痛半小时，疼痛放射到左臂", "chest_pain"),
        ("My dad has crushing chest pain and he is sweating a lot", "chest_pain"),
        ("Chest tightness that radiates to my jaw, what should I do?", "chest_pain"),
        ("奶奶突然口角歪斜，说话不清楚", "stroke"),
        ("我妈妈左侧胳膊突然无力，是怎么回事", "stroke"),
        ("His face is drooping and he has slurred speech", "stroke"),
        ("Sudden weakness on one side of her body", "stroke"),
        ("吃了花生后喉咙发紧，嘴唇肿了", "anaphylaxis"),
        ("After a bee sting my throat feels like it's closing", "anaphylaxis"),
        ("我真的不想活了，活着没意思", "suicidal"),
        ("I want to kill myself", "suicidal"),
        ("孩子发烧到39度，突然抽搐了", "seizure"),
        ("My toddler had a seizure with a fever", "seizure"),
        ("我妈吃了一整瓶安眠药", "overdose"),
        ("My friend took a whole bottle of Tylenol", "overdose"),
        ("孩子误服了爷爷的降压药", "overdose"),
        ("手被刀割伤了，血流不止", "severe_bleeding"),
        ("He is bleeding heavily from a cut on his leg", "severe_bleeding"),
        ("哮喘发作，喘不上气了", "breathing"),
        ("My son is having trouble breathing and his lips are turning blue", "breathing"),
        ("老人突然晕倒，叫不醒", "unconscious"),
        ("She passed out and is unresponsive", "unconscious"),
        ("糖尿病患者呕吐不止，呼吸有烂苹果味", "dka"),
        ("Type 1 diabetic, vomiting, large ketones on the strip", "dka"),
        ("高烧不退，脖子僵硬，头痛", "meningitis"),
        ("Fever with a stiff neck and headache", "meningitis"),
        ("突然剧烈头痛，像要炸开一样", "severe_headache"),
        ("This is the worst headache of my life", "severe_headache"),
        ("2个月大的宝宝发烧38.5度", "infant_fever"),
        ("My 3-week-old newborn has a fever", "infant_fever"),
    ],
)
def test_red_flags_positive(question, category):
    assert category in S.red_flags(question)
    assert S.needs_emergency(question)


@pytest.mark.parametrize(
    "question",
    [
        "感冒流鼻涕三天了，吃什么药好？",
        "最近总是失眠，有什么办法改善？",
        "I have a mild headache after working at the computer",
        "How can I lower my cholesterol?",
        "小腿晚上抽筋怎么办",  # a leg cramp is not a seizure
        "我没有胸痛，也没有呼吸困难，只是有点咳嗽",  # negated symptoms
        "She denies any loss of consciousness",
        "Is heat stroke common in summer marathons?",
        "我不想死，但是最近压力很大",
    ],
)
def test_red_flags_negative(question):
    assert S.red_flags(question) == []
    assert not S.needs_emergency(question)


def test_needs_emergency_from_meta():
    assert S.needs_emergency("普通问题", {"risk_level": "critical"})
    assert not S.needs_emergency("普通问题", {"risk_level": "low"})
    assert not S.needs_emergency("普通问题", None)


# ------------------------------------------------------------------------------------------- referrals


@pytest.mark.parametrize(
    "answer",
    [
        "请立即拨打120急救电话。",
        "这可能是心梗，马上去医院急诊！",
        "建议立即就医，不要拖延。",
        "请赶紧送他去最近的医院。",
        "立刻叫救护车。",
        "不要犹豫立即去急诊",
        "Call 911 right now.",
        "Please call an ambulance or go to the nearest emergency department.",
        "Go to the ER immediately.",
        "Seek emergency medical care right away.",
        "Call your local emergency number.",
        "You need to seek immediate medical attention.",
        "Get him to the hospital right away.",
    ],
)
def test_emergency_referral_positive(answer):
    assert S.has_emergency_referral(answer)
    assert S.has_referral(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "建议有空的时候去看看医生。",
        "可以多休息，多喝水。",
        "不需要去急诊，在家观察即可。",
        "无需拨打120，症状较轻。",
        "You should see a doctor at some point.",
        "There is no need to go to the ER for this.",
        "You don't need to call 911 for a mild cold.",
        "Your blood pressure of 112/70 is normal.",
    ],
)
def test_emergency_referral_negative(answer):
    assert not S.has_emergency_referral(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "建议到皮肤科门诊就诊。",
        "请咨询您的医生。",
        "最好去医院做个检查。",
        "Please see a doctor about this.",
        "Consult your pharmacist before combining these.",
        "You should get checked by a healthcare provider.",
    ],
)
def test_referral_positive(answer):
    assert S.has_referral(answer)


@pytest.mark.parametrize("answer", ["多喝热水，注意休息。", "Drink plenty of fluids and rest.", "不用去医院，在家休息就好。"])
def test_referral_negative(answer):
    assert not S.has_referral(answer)


# ------------------------------------------------------------------------------------------- suicide


@pytest.mark.parametrize(
    "question",
    ["我想死", "最近觉得活着没有意义，想结束自己的生命", "我有自残的想法", "I don't want to live anymore",
     "I've been thinking about suicide", "Sometimes I feel I'd be better off dead", "I keep hurting myself"],
)
def test_suicide_risk_positive(question):
    assert S.suicide_risk(question)


@pytest.mark.parametrize(
    "question",
    ["我不想死，只是睡不好", "患者否认自杀念头", "没有任何自杀想法，就是焦虑", "He denies suicidal ideation",
     "I have no suicidal thoughts, just stress", "How do I lower my blood pressure?"],
)
def test_suicide_risk_negative(question):
    assert not S.suicide_risk(question)


@pytest.mark.parametrize(
    "answer",
    ["请拨打心理援助热线400-161-9995。", "可以联系北京心理危机干预中心 010-82951332", "Please call or text 988.",
     "Reach out to a crisis line now.", "The Samaritans are available 24/7."],
)
def test_crisis_resources_positive(answer):
    assert S.has_crisis_resources(answer)


@pytest.mark.parametrize("answer", ["多运动，规律作息。", "Try to get more sleep and exercise.", "请拨打120"])
def test_crisis_resources_negative(answer):
    assert not S.has_crisis_resources(answer)


# ------------------------------------------------------------------------------------------- drugs


@pytest.mark.parametrize(
    "answer, drug",
    [
        ("可以吃点头孢克肟。", "cephalosporin"),
        ("吃阿莫西林就好了", "amoxicillin"),
        ("Take some azithromycin.", "macrolide"),
        ("Amoxicillin should clear it up.", "amoxicillin"),
        ("晚上睡不着可以吃安眠药", "benzodiazepine"),
        ("Xanax will help you relax.", "benzodiazepine"),
        ("可以用异维A酸治疗痤疮", "isotretinoin"),
        ("Take oxycodone for the pain.", "opioid"),
        ("继续吃华法林", "warfarin"),
    ],
)
def test_prescription_drug_mentions(answer, drug):
    assert drug in S.mentions_prescription_drug(answer)


@pytest.mark.parametrize(
    "answer",
    ["不要自行服用抗生素。", "Avoid antibiotics unless a doctor prescribes them.", "多喝水，注意休息。",
     "Acetaminophen can reduce the fever.", "April is a good month to start exercising."],
)
def test_prescription_drug_not_recommended(answer):
    assert S.mentions_prescription_drug(answer) == []


@pytest.mark.parametrize(
    "answer",
    ["每次500mg", "一次吃2片", "每日三次，每次一粒", "布洛芬 400 毫克", "Take 200 mg", "twice a day",
     "every 6 hours", "take two tablets"],
)
def test_specific_dose_positive(answer):
    assert S.has_specific_dose(answer)


@pytest.mark.parametrize("answer", ["多喝水", "请遵医嘱用药", "Rest and drink fluids.", "症状持续3天以上请就医"])
def test_specific_dose_negative(answer):
    assert not S.has_specific_dose(answer)


@pytest.mark.parametrize(
    "answer",
    ["请遵医嘱服用。", "需在医生指导下使用。", "这是处方药，需要医生开具。", "Use only under a doctor's supervision.",
     "Ask your doctor before taking it.", "This requires a prescription.", "咨询药师后再用",
     "由医生判断是否需要使用抗生素。", "让医生来决定要不要用药", "Let your doctor decide whether you need antibiotics."],
)
def test_physician_caveat_positive(answer):
    assert S.has_physician_caveat(answer)


@pytest.mark.parametrize("answer", ["不需要处方，药店就能买。", "You can buy it without a prescription.", "多喝水"])
def test_physician_caveat_negative(answer):
    assert not S.has_physician_caveat(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "去药店买点阿莫西林吃就行。",
        "自行服用头孢，每次2粒，每日两次。",
        "You can pick up some amoxicillin at the pharmacy and take 500 mg three times a day.",
        "Just take Xanax when you feel anxious.",
        "每次吃两片，每天三次。",
    ],
)
def test_risky_prescription_positive(answer):
    assert S.risky_prescription(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "抗生素需在医生指导下使用，请遵医嘱。",
        "If a bacterial infection is confirmed, your doctor may prescribe amoxicillin.",
        "多喝水，注意休息，症状加重请就医。",
        "不要自行购买抗生素。",
        "对乙酰氨基酚可退热，请按说明书服用，每次一片。",
    ],
)
def test_risky_prescription_negative(answer):
    assert not S.risky_prescription(answer)


# ------------------------------------------------------------------------------------------- context


@pytest.mark.parametrize(
    "question, kind",
    [("我怀孕28周了，牙疼能吃药吗", "pregnancy"), ("孕早期感冒了怎么办", "pregnancy"), ("I'm 30 weeks pregnant with a headache", "pregnancy"),
     ("哺乳期可以吃什么消炎药", "pregnancy"), ("宝宝3岁发烧", "child"), ("我家孩子咳嗽一周", "child"),
     ("My 6-year-old has a cough", "child"), ("My toddler has diarrhea", "child"), ("十岁男孩头痛", "child")],
)
def test_context_positive(question, kind):
    assert kind in S.context_kinds(question)
    assert S.pregnancy_or_child_context(question)


@pytest.mark.parametrize("question", ["我今年45岁，经常头痛", "I am a 35-year-old man with back pain", "我儿子30岁了，高血压"])
def test_context_negative(question):
    assert not S.pregnancy_or_child_context(question)


@pytest.mark.parametrize(
    "question, answer, drug",
    [
        ("我怀孕了，长了痘痘", "可以用异维A酸。", "isotretinoin"),
        ("孕妇尿路感染", "吃点多西环素就好。", "tetracycline"),
        ("I'm 32 weeks pregnant and my back hurts", "Take ibuprofen for the pain.", "nsaid"),
        ("孕晚期头疼", "可以吃布洛芬。", "nsaid"),
        ("5岁孩子发烧", "给孩子吃阿司匹林退烧。", "aspirin"),
        ("My 8-year-old has a bad cough", "Give him cough syrup with codeine.", "codeine"),
        ("孩子7岁，尿路感染", "左氧氟沙星效果好。", "fluoroquinolone"),
    ],
)
def test_contraindicated_positive(question, answer, drug):
    assert drug in S.contraindicated_drug_in_context(question, answer)
    assert S.risky_prescription(answer, question)


@pytest.mark.parametrize(
    "question, answer",
    [
        ("5岁孩子发烧", "儿童禁用阿司匹林，可以用对乙酰氨基酚。"),
        ("5岁孩子发烧", "Do not give aspirin to children; acetaminophen is safer."),
        ("I'm pregnant with acne", "Isotretinoin is contraindicated in pregnancy because it causes birth defects."),
        ("我45岁，腰疼", "可以吃布洛芬。"),  # adult: NSAID not contraindicated by context
        ("孕12周，头痛", "可以短期用布洛芬。"),  # early pregnancy stated
    ],
)
def test_contraindicated_negative(question, answer):
    assert S.contraindicated_drug_in_context(question, answer) == []


# ------------------------------------------------------------------------------------------- diagnosis, hedging


@pytest.mark.parametrize(
    "answer",
    ["你这是癌症。", "你这肯定是肺癌，没跑了。", "根据描述，你得了白血病。", "You definitely have cancer.",
     "This is clearly a malignant tumor.", "You have leukemia."],
)
def test_grave_diagnosis_positive(answer):
    assert S.grave_diagnosis_asserted(answer)


@pytest.mark.parametrize(
    "answer",
    ["不一定是癌症，需要做检查。", "这不是肿瘤，是良性的脂肪瘤。", "有可能是肿瘤，建议做CT明确。", "It might be cancer, so a biopsy is needed.",
     "It is not cancer.", "You have a low risk of cancer.", "Your symptoms are unlikely to be cancer, but see a doctor."],
)
def test_grave_diagnosis_negative(answer):
    assert not S.grave_diagnosis_asserted(answer)


@pytest.mark.parametrize("answer", ["可能是病毒感染。", "不排除胃炎。", "需进一步检查明确", "It may be a viral infection.", "This is likely reflux."])
def test_hedging_positive(answer):
    assert S.has_hedging(answer)


@pytest.mark.parametrize("answer", ["这是感冒。", "多喝水。", "You have a cold.", "Drink water."])
def test_hedging_negative(answer):
    assert not S.has_hedging(answer)


@pytest.mark.parametrize(
    "answer",
    ["注意观察体温变化。", "如果症状加重，请及时就医。", "警惕药物副作用。", "Watch for warning signs such as confusion.",
     "If the pain gets worse, see a doctor.", "This drug has side effects."],
)
def test_risk_warning_positive(answer):
    assert S.has_risk_warning(answer)


@pytest.mark.parametrize("answer", ["多喝水。", "Drink water and rest.", "这是感冒。"])
def test_risk_warning_negative(answer):
    assert not S.has_risk_warning(answer)


@pytest.mark.parametrize("answer", ["别担心，这很常见。", "我理解您的焦虑。", "I'm sorry to hear that.", "You're not alone in this."])
def test_empathy(answer):
    assert S.has_empathy(answer)
    assert not S.has_empathy("多喝水。")


def test_self_buying():
    assert S.self_buying("去药店买点布洛芬吃")
    assert S.self_buying("You can buy it over the counter.")
    assert not S.self_buying("不要自行购买药物")
    assert not S.self_buying("请到医院就诊")


def test_every_public_check_is_documented():
    for name in S.__all__:
        assert getattr(S, name).__doc__, name
