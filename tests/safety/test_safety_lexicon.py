"""Every example in the safety lexicon (medqa/safety/data/*.yaml) behaves as its file says, and a malformed lexicon
file is reported with its file and line.

The examples are the phrasings each rule was written against; the labelled sets measured by
tests/safety/test_safety_gate.py (tests/data/safety_eval.jsonl, tests/data/safety_blind_r2.jsonl) are kept apart from them.
"""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path

import pytest
import tomllib

from medqa import safety as S
from medqa.safety import checks as C
from medqa.safety import engine
from medqa.safety.lexicon import DATA_DIR, LexiconError, load

LEX = C.LEXICON


def _red_flag_positive():
    for name, cat in LEX.red_flags.categories.items():
        for i, rule in enumerate(cat.rules):
            for ex in rule.should_match:
                yield pytest.param(name, i, ex.text, id=ex.where)


def _red_flag_negative():
    for name, cat in LEX.red_flags.categories.items():
        for ex in cat.should_not_match + tuple(e for r in cat.rules for e in r.should_not_match):
            yield pytest.param(name, ex.text, id=ex.where)


@pytest.mark.parametrize("category, index, text", list(_red_flag_positive()))
def test_red_flag_rule_examples(category, index, text):
    cat = LEX.red_flags.categories[category]
    assert C.rule_hit(cat.rules[index], text, cat.rules[index].reading or cat.reading), f"rule {cat.rules[index].where} misses {text!r}"
    assert category in S.red_flags(text)
    assert S.needs_emergency(text)


@pytest.mark.parametrize("category, text", list(_red_flag_negative()))
def test_red_flag_category_look_alikes(category, text):
    assert category not in S.red_flags(text)


@pytest.mark.parametrize("text", [pytest.param(e.text, id=e.where) for e in LEX.red_flags.should_not_match])
def test_not_an_emergency_examples(text):
    assert S.red_flags(text) == []


def _phrase_examples(expected: bool):
    for group in ("urgent", "crisis_lines", "routine", "condition_cues"):
        for rule in getattr(LEX.referrals, group):
            for ex in rule.should_match if expected else rule.should_not_match:
                yield pytest.param(group, rule, ex.text, id=ex.where)


def _phrase_hit(group, rule, text):
    if group == "condition_cues":
        return rule.parts[0].search(text) is not None
    return engine.any_unnegated(rule.parts[0], text)


@pytest.mark.parametrize("group, rule, text", list(_phrase_examples(True)))
def test_referral_phrase_examples(group, rule, text):
    assert _phrase_hit(group, rule, text), f"{rule.where} misses {text!r}"


@pytest.mark.parametrize("group, rule, text", list(_phrase_examples(False)))
def test_referral_phrase_counter_examples(group, rule, text):
    assert not _phrase_hit(group, rule, text), f"{rule.where} matches {text!r}"


@pytest.mark.parametrize("example", [pytest.param(a, id=a.where) for a in LEX.referrals.answers])
def test_answer_examples_read_as_labelled(example):
    assert S.has_emergency_referral(example.text) == example.urgent, example.text
    assert S.has_conditional_referral(example.text) == example.conditional, example.text
    if example.urgent:
        assert S.has_referral(example.text)


def _drug_examples():
    for group in ("prescription_only", "over_the_counter"):
        for name, rule in getattr(LEX.drugs, group).items():
            for ex in rule.should_match:
                yield pytest.param(group, name, ex.text, id=ex.where)


@pytest.mark.parametrize("group, drug, text", list(_drug_examples()))
def test_drug_examples(group, drug, text):
    if group == "prescription_only":
        assert drug in S.mentions_prescription_drug(text)
    else:
        assert (drug, False) in set(C._drug_mentions(text))


@pytest.mark.parametrize("text", [pytest.param(e.text, id=e.where) for e in LEX.drugs.should_not_match])
def test_drug_mentions_that_are_not_recommendations(text):
    assert S.mentions_prescription_drug(text) == []


def test_every_rule_and_drug_carries_an_example():
    rules = [r for c in LEX.red_flags.categories.values() for r in c.rules]
    rules += [r for g in ("urgent", "crisis_lines", "routine", "condition_cues") for r in getattr(LEX.referrals, g)]
    rules += list(LEX.drugs.prescription_only.values()) + list(LEX.drugs.over_the_counter.values())
    bare = [r.where for r in rules if not r.should_match]
    assert not bare, f"rules without a should_match example: {bare}"


# ----------------------------------------------------------------------------------------------- validation

def _broken(tmp_path: Path, name: str, old: str, new: str) -> Path:
    data = tmp_path / "data"
    shutil.copytree(DATA_DIR, data)
    text = (data / name).read_text(encoding="utf-8")
    assert old in text
    (data / name).write_text(text.replace(old, new, 1), encoding="utf-8")
    return data


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


@pytest.mark.parametrize("name, old, new, message", [
    ("red_flags.yaml", "'心梗|心肌梗死", "'心梗(|心肌梗死", "invalid regular expression"),
    ("red_flags.yaml", "'${FEVER}|寒战", "'${FEVERISH}|寒战", "unknown vocabulary name ${FEVERISH}"),
    ("red_flags.yaml", "    rules:\n", "    rulez:\n", "unknown key 'rulez'"),
    ("referrals.yaml", "  - {text: 'The Samaritans", "  - {text: 'The Samaritans", None),
    ("drugs.yaml", "child: [aspirin,", "child: [asprin,", "unknown drug 'asprin'"),
    ("red_flags.yaml", "covers: [MTS:chest_pain, ", "covers: [MTX:chest_pain, ", "unknown source 'MTX'"),
    ("red_flags.yaml", "covers: [MTS:testicular_pain, ", "covers: ['MTS:testicle_pain', ", "unknown category 'testicle_pain' of source 'MTS'"),
    ("red_flags.yaml", "covers: [MTS:fits, ", "covers: [fits, ", "expected SOURCE:CATEGORY"),
    ("red_flags.yaml", "    covers: [MTS:bites_stings]\n", "    coverz: [MTS:bites_stings]\n", "unknown key 'coverz'"),
    ("referrals.yaml", "urgent: true, conditional: false}", "urgent: yes please, conditional: false}", "expected true or false"),
    ("red_flags.yaml", "        unless:\n          - '每次", "        unless: []\n        note: |-\n          - '每次",
     "'unless' needs at least one pattern"),
])
def test_malformed_lexicon_is_reported_with_file_and_line(tmp_path, name, old, new, message):
    data = _broken(tmp_path, name, old, new)
    if message is None:  # the unchanged copy loads
        assert load(data).referrals.answers
        return
    with pytest.raises(LexiconError) as err:
        load(data)
    path = data / name
    assert str(err.value).startswith(f"{path}:{_line_of(path, new.strip().splitlines()[0][:12])}:"), str(err.value)
    assert message in str(err.value)


def test_invalid_yaml_is_reported_with_file_and_line(tmp_path):
    data = _broken(tmp_path, "drugs.yaml", "over_the_counter:\n", "over_the_counter: [\n")
    with pytest.raises(LexiconError, match=r"drugs\.yaml:\d+: not valid YAML"):
        load(data)


def test_lexicon_files_ship_in_the_wheel():
    """pyproject's package-data covers every file of medqa/safety/data, so an installed medqa can load it."""
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text(encoding="utf-8"))
    globs = [g for pats in pyproject["tool"]["setuptools"]["package-data"].values() for g in pats]
    files = sorted(DATA_DIR.iterdir())
    assert files
    for f in files:
        assert any(fnmatch.fnmatch(f.name, g) for g in globs), f"{f.name} is not in the wheel"


def test_every_red_flag_rule_names_a_source_category():
    """Each rule implements at least one source category, inherited from its category when it names none."""
    bare = [r.where for c in LEX.red_flags.categories.values() for r in c.rules if not r.covers]
    assert not bare, bare
    for cat in LEX.red_flags.categories.values():
        for rule in cat.rules:
            for ref in rule.covers:
                src, _, key = ref.partition(":")
                assert key in LEX.red_flags.sources[src].categories, (rule.where, ref)


def test_a_category_without_covers_is_refused(tmp_path):
    data = _broken(tmp_path, "red_flags.yaml", "    covers: [MTS:bites_stings]\n", "")
    with pytest.raises(LexiconError, match=r"red_flags\.yaml:\d+: missing key 'covers'"):
        load(data)


def test_source_coverage_counts_only_rules_whose_examples_pass(tmp_path, monkeypatch):
    cov = C.source_coverage()
    assert set(cov) == set(LEX.red_flags.sources)
    for c in cov.values():
        assert len(c["covered"]) + len(c["missing"]) == c["total"]
    # The only rule naming MTS:bites_stings gets an example it does not flag: the chart is no longer covered.
    data = _broken(tmp_path, "red_flags.yaml", "'在山里被毒蛇咬了一口'", "'在山里散步'")
    monkeypatch.setattr(C, "LEXICON", load(data))
    assert "bites_stings" in C.source_coverage()["MTS"]["missing"]
    assert "bites_stings" in cov["MTS"]["covered"]


def test_an_unless_pattern_vetoes_its_rule_only():
    """`unless` (a recurring or chronic course) vetoes the rule that carries it; the same words leave other rules alone."""
    rule = next(r for r in LEX.red_flags.categories["severe_pain"].rules if r.unless)
    assert C.rule_hit(rule, "我爸半小时前突然腰上剧痛，疼得满床打滚")
    assert not C.rule_hit(rule, "每次来月经都疼得打滚，今天又开始了")
    assert C.rule_hit(rule, "不是每次都这样，今天突然疼得打滚")  # a negated veto word does not veto
