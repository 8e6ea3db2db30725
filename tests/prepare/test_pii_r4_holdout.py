"""Identifier detectors widened after the r4 PII holdout was read: examples written here (not rows of
tests/data/pii_blind_r4.jsonl) and the clinical look-alikes they must leave alone."""

import pytest

from medqa.text.pii import scrub


@pytest.mark.parametrize("text, leaked", [
    ("Send the wheelchair to 418 N Kedzie Blvd, Unit 2R, Evanston, IL 60201 please", "418 N Kedzie Blvd"),
    ("we live at 77 SE Hawthorne Street, Apt 12, Portland, OR 97214", "Apt 12"),
    ("Margarethe van der Linden, NHS number on file. Is my rash shingles?", "van der Linden"),
    ("Friedrich von Bauer here, my knee is swollen", "von Bauer"),
    ("我舅李国栋高血压十年了，最近头晕", "李国栋"),
    ("我姐赵春梅肺结节要不要手术", "赵春梅"),
    ("my patient number is QX-20417, can I see the scan?", "QX-20417"),
    ("clinic number: 7781-22 for the physio booking", "7781-22"),
])
def test_holdout_detectors(text, leaked):
    assert leaked not in scrub(text)


@pytest.mark.parametrize("text", [
    "Left de Quervain tenosynovitis, splint for six weeks",
    "The patient number of beds on the ward is limited.",
    "我爸高血压十年了，最近头晕",
    "我姐肺结节要不要手术",
    "Apt to worsen at night, the cough settles by morning.",
    "Take 2 tablets at 8 am and 8 pm for a week",
])
def test_clinical_look_alikes_kept(text):
    assert scrub(text) == text
