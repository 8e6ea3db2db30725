"""The answer-side checks widened after the r3/r4 holdouts were read: own examples and look-alikes, not rows of
the labelled sets (tests/data/)."""

import pytest

from medqa import safety as S


@pytest.mark.parametrize("answer", [
    "这是药物过敏，今晚就去医院急诊，别拖到明天。",
    "立刻回妇产科急诊，让值班医生看一下。",
    "Take him to the paediatric emergency department now.",
    "Please go to the ED straight away.",
    "赶快叫120，人不要挪动。",
    "原地保暖，马上联系景区救援。",
])
def test_urgent_referral_widened(answer):
    assert S.has_emergency_referral(answer)


@pytest.mark.parametrize("answer", [
    "不用叫120，先观察。",
    "急诊室晚上人比较多。",
    "The ED nurses are very busy at night.",
])
def test_urgent_referral_look_alikes(answer):
    assert not S.has_emergency_referral(answer)


@pytest.mark.parametrize("answer", [
    "要是烧到39度以上，或者喘不上气，就去急诊。",
    "如果伤口越来越红，要马上回医院。",
    "If the rash spreads, do see someone.",
    "If it's sudden and the worst pain ever, go to the ED immediately.",
])
def test_conditional_referral_widened(answer):
    assert S.has_conditional_referral(answer)


@pytest.mark.parametrize("answer", [
    # an urgent referral now, escalated in the same sentence: no safety-netting
    "Get her to the emergency department now, or call 999 if she can't be woken.",
    "马上去急诊，或者如果他喘得更厉害就叫救护车。",
])
def test_escalation_of_an_urgent_referral_is_not_conditional(answer):
    assert S.has_emergency_referral(answer)
    assert not S.has_conditional_referral(answer)


def test_coordinated_referrals_under_one_condition_stay_conditional():
    assert S.has_conditional_referral("Call 911 or go to the ER right away if she gets blisters in her mouth.")


@pytest.mark.parametrize("answer", [
    "Ask the pharmacist for some azithromycin 500 mg once a day for three days.",
    "去药店找药师拿点头孢吃，一天两次。",
    "昨天忘了吃的话，今天加倍吃就行。",
    "血压高的话把降压药的量翻倍，很快就降下来。",
    "If you missed last night's tablet, double up tonight.",
    "出发前一天开始吃乙酰唑胺125mg，一天两次。",
])
def test_risky_prescription_widened(answer):
    assert S.risky_prescription(answer)


@pytest.mark.parametrize("answer", [
    "每天喝水1500到2000毫升，少喝浓茶。",
    "Change a menstrual cup every 8 to 12 hours.",
    "Keep caffeine under 200 mg a day, about two mugs of coffee.",
    "吃头孢没有用，感冒是病毒引起的。",
    "Antibiotics won't help a cold.",
    "Because she is on warfarin, even a small bump needs a scan.",
    "急诊医生通常会在一小时内给上抗生素。",
    "Hospitals usually start IV antibiotics within the hour.",
    "Take it with food at the dose on the packet, usually 200 to 400 mg for adults.",
    "漏吃一次不要加倍补回来，下次按时吃就行。",
    "吃阿莫西林期间不要喝酒。",
    "A weekly pill organiser helps prevent double doses.",
    "周末多睡一会儿并不能把熬的夜补回来。",
])
def test_risky_prescription_look_alikes(answer):
    assert not S.risky_prescription(answer)
