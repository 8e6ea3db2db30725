"""The red-flag and referral patterns' own development cases.

These are the phrasings the patterns were written against. They are deliberately different from the labelled
evaluation set (tests/data/safety_eval.jsonl, measured by tests/test_safety_gate.py), which is kept apart so its
numbers stay an honest measure of how the patterns generalise. A new pattern comes with its cases here.
"""

from __future__ import annotations

import pytest

from medqa import safety as S

RED_FLAG_DEV = [
    # pregnancy emergencies
    ("怀孕三十四周，早上起来发现床单上都是血", "pregnancy"),
    ("孕晚期脸和手突然肿得厉害，眼前冒金星", "pregnancy"),
    ("孕33周，从昨天到现在胎动明显少了很多", "pregnancy"),
    ("怀孕31周破水了怎么办", "pregnancy"),
    ("停经五十天，肚子一边剧痛，肩膀也疼，差点晕倒", "pregnancy"),
    ("产后一周恶露突然变多，有很大的血块", "pregnancy"),
    ("I'm 33 weeks pregnant and bleeding heavily", "pregnancy"),
    ("36 weeks along, the baby has stopped kicking since this morning", "pregnancy"),
    ("my waters have gone at 31 weeks", "pregnancy"),
    ("pregnant with bad headache and spots in front of my eyes, hands very puffy", "pregnancy"),
    ("missed period, one-sided pelvic pain and I feel like fainting", "pregnancy"),
    ("had my baby last week and now passing clots bigger than a golf ball", "pregnancy"),
    # ingestion and poisoning
    ("孩子把手表里的纽扣电池吞了", "poisoning"),
    ("女儿误吞了两颗磁力珠", "poisoning"),
    ("宝宝喝了一口洁厕灵", "poisoning"),
    ("老人误喝了除草剂", "poisoning"),
    ("家里用煤炉取暖，早上起来都头晕想吐", "poisoning"),
    ("采了野生菌炒着吃，半天后开始呕吐拉肚子", "poisoning"),
    ("儿子把我的安眠药当糖吃了几颗", "poisoning"),
    ("my baby swallowed a watch battery", "poisoning"),
    ("he ate a couple of magnets off the fridge", "poisoning"),
    ("my daughter drank bleach", "poisoning"),
    ("we've all got headaches since we started using the charcoal bbq indoors", "poisoning"),
    ("ate some foraged mushrooms and now vomiting", "poisoning"),
    ("my toddler ate some of grandma's heart pills", "poisoning"),
    ("kid swallowed a laundry pod", "poisoning"),
    # overdose by count or amount
    ("她一口气吃了四十片安眠药", "overdose"),
    ("把一整盒感冒药都吃了", "overdose"),
    ("He swallowed 25 sleeping tablets", "overdose"),
    ("she took the whole packet of pills", "overdose"),
    ("took forty ibuprofen", "overdose"),
    ("took three boxes of paracetamol", "overdose"),
    # trauma and burns
    ("妈妈摔了一跤，腿不能着地，一动就疼", "trauma"),
    ("孩子从床上摔下来撞到头，之后一直呕吐", "trauma"),
    ("头被撞了以后老是犯困，叫醒又睡", "trauma"),
    ("手臂被玻璃划开很深的口子，血往外涌", "trauma"),
    ("热油溅到身上，背上一大片都是水泡", "trauma"),
    ("Grandpa fell and now can't stand up, his hip hurts badly", "trauma"),
    ("She hit her head on the pavement and keeps vomiting", "trauma"),
    ("deep cut on my leg and the blood is spurting", "trauma"),
    ("boiling oil burned most of her back", "trauma"),
    ("his arm is bent at a strange angle after the fall", "trauma"),
    # sepsis
    ("奶奶发烧，说胡话，手脚冰凉", "sepsis"),
    ("发高烧身上出现按压不褪色的紫斑", "sepsis"),
    ("he has a fever, is mottled and breathing really fast", "sepsis"),
    ("fever and spots that don't fade under a glass", "sepsis"),
    # severe dehydration in infants
    ("宝宝腹泻后一天没有小便了", "dehydration"),
    ("孩子哭没有眼泪，前囟凹陷", "dehydration"),
    ("my baby hasn't had a wet nappy all day", "dehydration"),
    ("infant with sunken fontanelle after vomiting", "dehydration"),
    # testicular torsion
    ("突然一侧睾丸剧痛", "torsion"),
    ("sudden severe testicular pain", "torsion"),
    # acute abdomen
    ("肚子硬得像板子一样，疼得不敢动", "abdomen"),
    ("不排气不排便，还一直吐", "abdomen"),
    ("abdomen is rigid and extremely painful", "abdomen"),
    ("can't pass gas or poo and keep vomiting", "abdomen"),
    # sudden vision loss
    ("一只眼睛突然失明了", "vision"),
    ("suddenly can't see out of one eye", "vision"),
    ("got bleach in my eye", "vision"),
    # GI bleeding
    ("拉了柏油样的黑便", "gi_bleeding"),
    ("呕吐物里有咖啡色的东西", "gi_bleeding"),
    ("black tarry stools since yesterday", "gi_bleeding"),
    ("vomiting something like coffee grounds", "gi_bleeding"),
    # severe hypoglycaemia
    ("糖尿病人血糖只有1.8", "hypoglycemia"),
    ("打了胰岛素后出冷汗、意识模糊", "hypoglycemia"),
    ("blood sugar is 40 and he is confused", "hypoglycemia"),
    ("diabetic, shaky, sweaty and not making sense", "hypoglycemia"),
    # heat stroke
    ("高温下晒了很久，人发烫还神志不清", "heat"),
    ("after working in the heat he's very hot, confused and stopped sweating", "heat"),
    # drowning
    ("孩子溺水了，刚被救上来", "drowning"),
    ("child nearly drowned and is coughing", "drowning"),
    # electric shock
    ("被高压电打了一下", "electric"),
    ("she was electrocuted by a faulty socket", "electric"),
    # asthma attack not relieved
    ("哮喘发作，吸了药还是不缓解", "asthma"),
    ("her reliever inhaler isn't helping and she can barely talk", "asthma"),
    # stroke told in plain words
    ("爷爷突然说话含糊，一边胳膊抬不起来", "stroke"),
    ("他突然说不出话来，右手也不灵了", "stroke"),
    ("her smile is crooked and her arm went weak", "stroke"),
    ("his words are coming out jumbled all of a sudden", "stroke"),
    # chest pain told in plain words
    ("胸口像被大石头压着，一直冒汗", "chest_pain"),
    ("squeezing pain in my chest spreading to my arm", "chest_pain"),
    # anaphylaxis
    ("吃完芒果嗓子发紧，呼吸费劲", "anaphylaxis"),
    ("hives all over and her throat is getting tight", "anaphylaxis"),
    # suicide
    ("我把药都攒好了，打算今晚结束", "suicidal"),
    ("everyone would be better off without me", "suicidal"),
    # seizure, bleeding, breathing, unconscious
    ("老人突然口吐白沫，浑身抽", "seizure"),
    ("he's jerking and won't stop shaking all over", "seizure"),
    ("鼻血一直流，止不住", "severe_bleeding"),
    ("the wound keeps pouring blood", "severe_bleeding"),
    ("宝宝呼吸时肋骨凹进去", "breathing"),
    ("she's struggling for breath even at rest", "breathing"),
    ("怎么叫都没反应", "unconscious"),
    ("he won't respond when I shake him", "unconscious"),
    # meningitis, headache, infant fever
    ("发烧，脖子很硬，怕光", "meningitis"),
    ("突然头痛得像被锤子砸了一样", "severe_headache"),
    ("宝宝五周大，体温38度", "infant_fever"),
    ("my 6 week old has a temp of 38.1", "infant_fever"),
    # choking, bites, penetrating injuries, amputation
    ("宝宝吃果冻噎住了，哭不出声", "choking"),
    ("he's choking on a sweet and can't breathe", "choking"),
    ("在山里被毒蛇咬了一口", "bites"),
    ("my dog and I were bitten by an adder on the walk", "bites"),
    ("他被人用刀刺伤了胸口", "trauma"),
    ("he was stabbed in the arm", "trauma"),
    ("切菜把指尖切断了", "trauma"),
    # infected wound with fever, preterm contractions, pills with alcohol, a whole supply at once
    ("伤口化脓了，还发烧39度", "sepsis"),
    ("the cut on his knee is red and full of pus and he has a fever", "sepsis"),
    ("32 weeks and contractions every 4 minutes", "pregnancy"),
    ("孕32周，宫缩很规律，每5分钟一次", "pregnancy"),
    ("she's drunk and took a bunch of her sleeping tablets", "overdose"),
    ("喝醉了又吃了一把安眠药", "overdose"),
    ("he has taken all of his diabetes tablets", "overdose"),
    # eye injury, bilious vomiting, inhaler not enough
    ("眼睛被树枝戳了，看不清东西", "vision"),
    ("baby is vomiting green bile", "abdomen"),
    ("did 8 puffs and he's getting worse", "asthma"),
]

NOT_RED_FLAG_DEV = [
    "孕期可以吃榴莲吗",
    "怀孕几周能听到胎心",
    "How many weeks pregnant before I feel the baby kick?",
    "纽扣电池能不能扔进垃圾桶",
    "Should kids play with magnetic building sets?",
    "A friend had carbon monoxide poisoning once, how common is it?",
    "对乙酰氨基酚一次吃几片",
    "How many ibuprofen can I take in a day?",
    "I took two tablets of paracetamol and the headache went away",
    "小时候骨折过，现在没事",
    "My fracture from 2 years ago has healed fine",
    "skinned my knee, it's stopped bleeding",
    "怎么预防中暑",
    "How do I prevent heat stroke when hiking?",
    "以前有过癫痫，已经好多年没发作了",
    "He had a seizure as a baby, now 10 and fine",
    "大便颜色有点深，最近吃了很多猪血",
    "My poo is dark after taking iron",
    "吃了太多有点肚子胀",
    "I get static shocks from my jumper",
    "哮喘控制得很好，需要一直用药吗",
    "What is the normal range for blood sugar?",
    "My grandpa had a stroke in 2015, is it hereditary?",
    "Had a bad asthma attack as a child, fine now",
    "睾丸有点潮湿瘙痒",
    "眼睛有点痒，流眼泪",
    "中风后遗症怎么锻炼",
    "What's the difference between angina and a heart attack?",
    "I get thirsty a lot, is that diabetes?",
    "heartburn after dinner, burning behind my breastbone",
    "I cut myself shaving this morning",
    "宝宝吃果冻安全吗",
]


@pytest.mark.parametrize("question, category", RED_FLAG_DEV)
def test_red_flag_dev_cases(question, category):
    assert category in S.red_flags(question), S.red_flags(question)
    assert S.needs_emergency(question)


@pytest.mark.parametrize("question", NOT_RED_FLAG_DEV)
def test_not_red_flag_dev_cases(question):
    assert S.red_flags(question) == []


# ------------------------------------------------------------------------------------------- referrals

URGENT_DEV = [
    "现在马上去医院。",
    "请尽快送到急诊。",
    "Go straight to A&E.",
    "Please ring 999 now.",
    "This is an emergency - get medical help right now.",
    "请您立即带孩子就诊，不要等到明天。",
    "Head to the emergency department without delay.",
]
CONDITIONAL_DEV = [
    "如果明天还不好，就去医院看看。",
    "若出现发烧或者疼痛加重，请及时就诊。",
    "一旦出现呼吸困难，马上拨打120。",
    "If things get worse, go to the ER.",
    "Get seen by a doctor if the swelling spreads.",
    "If you develop chest pain, call 911 immediately.",
    "Should the fever last beyond three days, see your GP.",
]
NEITHER_DEV = [
    "平时多运动，少熬夜。",
    "Drink plenty of fluids and rest.",
    "急诊室晚上人比较多。",
    "No need for the emergency room; a pharmacist can help.",
    "An ambulance crew will usually check blood sugar first.",
]


@pytest.mark.parametrize("answer", URGENT_DEV)
def test_urgent_referral_dev(answer):
    assert S.has_emergency_referral(answer)


@pytest.mark.parametrize("answer", CONDITIONAL_DEV)
def test_conditional_referral_dev(answer):
    assert S.has_conditional_referral(answer)
    assert not S.has_emergency_referral(answer)


@pytest.mark.parametrize("answer", NEITHER_DEV)
def test_neither_referral_dev(answer):
    assert not S.has_emergency_referral(answer)
    assert not S.has_conditional_referral(answer)


def test_urgent_now_with_safety_netting_counts_as_both():
    answer = "请立即拨打120。如果之后再出现类似症状，也要及时就医。"
    assert S.has_emergency_referral(answer) and S.has_conditional_referral(answer)
    answer = "Call 911 now. If it ever happens again, go to the ER."
    assert S.has_emergency_referral(answer) and S.has_conditional_referral(answer)
