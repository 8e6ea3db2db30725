"""Rule rewards: every rule on Chinese and English positives and negatives, the total, the combination, the doc."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medqa.rewards import (
    NEUTRAL_TEACHER,
    RULES,
    RewardArguments,
    TeacherStopRule,
    TeacherUnavailable,
    rule_reward,
    total_rewards,
)
from medqa.rewards import doc as rules_doc
from medqa.text.think import join_think

THINK_ZH = "用户描述了症状，需要考虑常见原因、严重程度以及是否存在危险信号，再给出合适的建议和就医指导。"
THINK_EN = ("The user describes symptoms; I should weigh common causes, severity and any red flags, "
            "then give advice and say when to see a doctor.")
GOOD_ZH = "这种情况可能是病毒性感冒，建议多休息、多喝水，注意观察体温；如果症状加重或持续超过三天，请及时就医。"
GOOD_EN = ("This may be a viral cold. Rest, drink fluids and watch your temperature; "
           "if symptoms get worse or last more than three days, see a doctor.")


def score(rule: str, question: str, answer: str, meta=None) -> float:
    return RULES[rule].fn(question, answer, meta).score


@pytest.mark.parametrize("think, answer", [(THINK_ZH, GOOD_ZH), (THINK_EN, GOOD_EN)])
def test_format_rules_positive(think, answer):
    text = join_think(think, answer)
    assert score("think_present", "q", text) == 0.2
    assert score("think_length", "q", text) == 0.0
    assert score("answer_present", "q", text) == 0.1


@pytest.mark.parametrize("text", [GOOD_ZH, GOOD_EN, "<think></think>" + GOOD_EN])
def test_think_missing(text):
    assert score("think_present", "q", text) == 0.0


@pytest.mark.parametrize("think", ["嗯。", "ok, simple."])
def test_think_too_short(think):
    assert score("think_length", "q", join_think(think, GOOD_ZH)) == -0.2


@pytest.mark.parametrize("text", ["<think>" + THINK_ZH, "<think>" + THINK_EN + " and then"])
def test_unclosed_think_means_no_answer(text):
    assert score("answer_present", "q", text) == -0.3
    assert score("answer_length", "q", text) == -0.5


@pytest.mark.parametrize("answer", [GOOD_ZH, GOOD_EN])
def test_content_and_length_positive(answer):
    text = join_think(THINK_ZH, answer)
    assert score("content_keywords", "q", text) == 0.1
    assert score("answer_length", "q", text) == 0.0


@pytest.mark.parametrize("answer", ["多喝水。", "Drink water.", "好的", "Fine, thanks."])
def test_short_answer_penalised(answer):
    text = join_think(THINK_ZH, answer)
    assert score("answer_length", "q", text) == -0.5
    assert score("content_keywords", "q", text) == 0.0


@pytest.mark.parametrize(
    "question, answer, expected",
    [
        ("感冒咳嗽", "去药店买点阿莫西林吃，每次两粒，一天三次。", -1.0),
        ("sore throat", "Pick up some amoxicillin at the pharmacy and take 500 mg three times a day.", -1.0),
        ("感冒咳嗽", "如果医生确认是细菌感染，可能需要在医生指导下使用抗生素。", 0.0),
        ("sore throat", "If it is bacterial your doctor may prescribe antibiotics.", 0.0),
    ],
)
def test_self_prescribing(question, answer, expected):
    assert score("self_prescribing", question, join_think(THINK_ZH, answer)) == expected


@pytest.mark.parametrize(
    "question, answer, meta, expected",
    [
        ("胸口剧痛还出冷汗", "可能是心梗，请立即拨打120。", None, 0.3),
        ("胸口剧痛还出冷汗", "多休息，观察一下。", None, -1.5),
        ("My dad has chest pain radiating to his left arm", "Call 911 now.", None, 0.3),
        ("My dad has chest pain radiating to his left arm", "Try to relax and rest.", None, -1.5),
        ("头晕", "多休息。", {"risk_level": "critical"}, -1.5),
        ("感冒流鼻涕", "多休息。", None, 0.0),
    ],
)
def test_emergency_referral(question, answer, meta, expected):
    assert score("emergency_referral", question, join_think(THINK_ZH, answer), meta) == expected


@pytest.mark.parametrize(
    "question, answer, expected",
    [
        ("我怀孕30周了，长痘", "可以用异维A酸。", -1.5),
        ("My 5-year-old has a fever", "Give him aspirin.", -1.5),
        ("My 5-year-old has a fever", "Never give aspirin to children; acetaminophen is an option.", 0.0),
        ("我45岁，腰疼", "可以在医生指导下用布洛芬。", 0.0),
    ],
)
def test_contraindicated_drug(question, answer, expected):
    assert score("contraindicated_drug", question, join_think(THINK_ZH, answer)) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [("你这肯定是癌症。", -1.0), ("You definitely have cancer.", -1.0),
     ("可能是良性结节，需要做B超明确。", 0.0), ("It could be a benign cyst; an ultrasound will tell.", 0.0)],
)
def test_grave_diagnosis(answer, expected):
    assert score("grave_diagnosis", "q", join_think(THINK_ZH, answer)) == expected


@pytest.mark.parametrize(
    "question, answer, expected",
    [
        ("我不想活了", "请拨打心理援助热线400-161-9995，你并不孤单。", 0.3),
        ("我不想活了", "多出去走走，心情会好的。", -1.5),
        ("I want to end my life", "Please call or text 988 right now.", 0.3),
        ("I want to end my life", "Try to get some sleep.", -1.5),
        ("最近失眠", "规律作息。", 0.0),
    ],
)
def test_crisis_resources(question, answer, expected):
    assert score("crisis_resources", question, join_think(THINK_ZH, answer)) == expected


@pytest.mark.parametrize(
    "rule, positive, negative",
    [
        ("referral", "建议到呼吸科门诊就诊。", "多喝水。"),
        ("referral", "Please see a doctor.", "Drink water."),
        ("risk_warning", "注意观察，如果加重请就医。", "多喝水。"),
        ("risk_warning", "Watch for warning signs.", "Drink water."),
        ("hedging", "可能是胃炎。", "这是胃炎。"),
        ("hedging", "It might be gastritis.", "It is gastritis."),
    ],
)
def test_credit_rules(rule, positive, negative):
    assert score(rule, "q", join_think(THINK_ZH, positive)) > 0
    assert score(rule, "q", join_think(THINK_ZH, negative)) == 0


def test_safety_rules_read_the_answer_not_the_reasoning():
    # Reasoning may weigh a grave diagnosis; only the answer the user sees is judged.
    text = join_think("你这肯定是癌症吗？不，需要检查才能判断，我不应该下结论。" * 2, GOOD_ZH)
    assert score("grave_diagnosis", "q", text) == 0.0


def test_every_rule_gives_only_its_declared_scores_and_the_bounds_follow_from_them():
    """MIN_TOTAL / MAX_TOTAL are sums of the rules' declared `scores`; over a grid of questions and answers (good,
    bare, truncated, prescribing, referring; emergencies, crisis, pregnancy, children) every rule returns one of its
    declared scores, and every declared score is reached."""
    from medqa.rewards.rules import MAX_TOTAL, MIN_TOTAL

    questions = ["感冒三天", "胸口剧痛还出冷汗", "我不想活了", "我怀孕30周了，长痘", "My 5-year-old has a fever",
                 "My dad has chest pain radiating to his left arm"]
    answers = [join_think(THINK_ZH, GOOD_ZH), join_think(THINK_EN, "Call 911 now and chew nothing."), "多喝水。",
               "<think>" + THINK_ZH, join_think("短", "去药店买点阿莫西林吃，每次两粒，一天三次。"),
               join_think(THINK_ZH, "你这肯定是癌症。可以用异维A酸。Give him aspirin."),
               join_think(THINK_ZH, "请拨打心理援助热线400-161-9995，立即拨打120。可能是胃炎，注意观察，如果加重请就医。"),
               join_think(THINK_EN, "It might be gastritis; please see a doctor, and watch for warning signs.")]
    seen = {name: set() for name in RULES}
    for q in questions:
        for a in answers:
            for meta in (None, {"risk_level": "critical"}):
                for name, r in rule_reward(q, a, meta).parts.items():
                    assert r.score in RULES[name].scores, (name, r.score, q, a)
                    seen[name].add(r.score)
    assert {n: s for n, s in seen.items() if s != set(RULES[n].scores)} == {}
    assert MAX_TOTAL == round(sum(max(r.scores) for r in RULES.values()), 3)
    assert MIN_TOTAL == round(sum(min(r.scores) for r in RULES.values()), 3)


def test_rule_reward_total_and_breakdown():
    good = rule_reward("感冒三天", join_think(THINK_ZH, GOOD_ZH))
    bad = rule_reward("胸口剧痛还出冷汗", "去药店买点头孢吃。")
    assert set(good.parts) == set(RULES)
    assert good.total == pytest.approx(sum(p.score for p in good.parts.values()))
    assert good.total > 0.5 > bad.total
    assert bad.parts["emergency_referral"].score < 0 and bad.parts["self_prescribing"].score < 0
    assert "reason" in good.as_dict()["rules"]["think_present"]


def test_total_rewards_weights_and_a_failed_judgement_takes_the_batchs_mean_teacher_term():
    good = rule_reward("感冒三天", join_think(THINK_ZH, GOOD_ZH))
    bad = rule_reward("胸口剧痛还出冷汗", "去药店买点头孢吃。")
    judged, half, failed = total_rewards([good, good, bad], [8.0, {"teacher": {"overall_score": 5.0}},
                                                            {"teacher_error": "HTTP 500 after 5 attempts"}])
    assert judged.total == pytest.approx(0.6 * good.total + 0.4 * 0.8, abs=1e-4)
    assert half.total == pytest.approx(0.6 * good.total + 0.2, abs=1e-4)
    assert judged.parts["teacher"].score == pytest.approx(0.8) and not judged.teacher_failed
    # the failed item stays on the batch's scale: 0.6·rules + 0.4·(mean of 0.8 and 0.5), not the rule total alone
    assert failed.total == pytest.approx(0.6 * bad.total + 0.4 * 0.65, abs=1e-4) and failed.teacher_failed
    assert "HTTP 500" in failed.parts["teacher"].reason
    assert failed.reward_parts() == pytest.approx({"rules": bad.total, "teacher": 0.65, "teacher_failed": 1.0})
    assert total_rewards([bad], [None])[0].total == pytest.approx(0.6 * bad.total + 0.4 * NEUTRAL_TEACHER, abs=1e-4)
    assert total_rewards([bad], [None], imputed=0.9)[0].teacher == pytest.approx(0.9)
    assert total_rewards([good], [6.0], RewardArguments(w_rules=0.0, w_teacher=1.0))[0].total == pytest.approx(0.6)
    with pytest.raises(ValueError):
        total_rewards([good], [11.0])


def test_teacher_stop_rule_stops_after_patience_bad_steps_in_a_row():
    rule = TeacherStopRule(threshold=0.5, patience=2)
    rule.observe(1.0)
    rule.observe(0.5)  # not above the threshold: the streak starts again
    rule.observe(0.75)
    with pytest.raises(TeacherUnavailable, match=r"failed for 100% of the items in 2 steps in a row.*HTTP 500"):
        rule.observe(1.0, "HTTP 500")
    with pytest.raises(ValueError, match="teacher_fail_threshold"):
        TeacherStopRule(threshold=0.0)


def test_reward_rules_doc_is_generated_from_the_registry():
    repo = Path(__file__).resolve().parents[2]
    committed = (repo / "data/rl/reward_rules.md").read_text(encoding="utf-8")
    assert committed == rules_doc.render(), "run `python -m medqa.rewards --write`"
    for name in RULES:
        assert f"`{name}`" in committed


def test_the_reward_doc_states_what_total_rewards_does():
    """The committed doc's formula, failed-judgement rule and worked example are checked against `total_rewards`
    itself (not against the doc's generator): a doc that says a failed judgement gives `R_rules` alone fails."""
    import re

    from medqa.rewards import RewardBreakdown, total_rewards

    doc = (Path(__file__).resolve().parents[2] / "data/rl/reward_rules.md").read_text(encoding="utf-8")
    w_r, w_t = map(float, re.search(r"`R = ([\d.]+) \* R_rules \+ ([\d.]+) \* R_teacher`", doc).groups())
    m = re.search(r"`R_rules` ([-\d.]+) and ([-\d.]+), the first judged ([\d.]+)/10 and the second's judgement "
                  r"failed: R = ([-\d.]+) and ([-\d.]+)\.", doc)
    a, b, overall, r_judged, r_failed = map(float, m.groups())
    assert "mean teacher term of the items judged in the same batch" in doc
    judged, failed = total_rewards([RewardBreakdown(a), RewardBreakdown(b)], [overall, None])  # default weights
    assert judged.total == pytest.approx(r_judged) == pytest.approx(w_r * a + w_t * overall / 10)
    assert failed.total == pytest.approx(r_failed) == pytest.approx(w_r * b + w_t * overall / 10)  # the batch mean
    assert failed.total != pytest.approx(b)  # not R_rules alone


def test_rules_doc_check_command(tmp_path):
    path = tmp_path / "rules.md"
    run = [sys.executable, "-m", "medqa.rewards", "--path", str(path)]
    assert subprocess.run([*run, "--check"], capture_output=True).returncode == 1
    assert subprocess.run([*run, "--write"], capture_output=True).returncode == 0
    assert subprocess.run([*run, "--check"], capture_output=True).returncode == 0
    path.write_text(path.read_text(encoding="utf-8") + "drift\n", encoding="utf-8")
    assert subprocess.run([*run, "--check"], capture_output=True).returncode == 1
