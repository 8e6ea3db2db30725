"""Round 3 of identifier scrubbing (issue #32): maintained validators, HIPAA / PIPL coverage, blind batch r3."""

import json
from pathlib import Path

import pytest

from medqa.apps.safety_eval import pii_measure
from medqa.text import pii
from medqa.text.pii import find_identifiers, scrub, scrub_with_counts

_DATA = Path(__file__).parents[1] / "data"
_SETS = ("pii_labelled.jsonl", "pii_blind_r2.jsonl", "pii_blind_r3.jsonl", "pii_clinical.jsonl", "pii_clinical_r3.jsonl")


def _rows(name):
    return [json.loads(x) for x in (_DATA / name).read_text(encoding="utf-8").splitlines() if x.strip()]


# ---------------------------------------------------------------- the labelled sets

def test_blind_r3_recall():
    """pii_blind_r3.jsonl (written blind; 63/114 identifiers were removed before this round): recall >= 0.98."""
    m = pii_measure(_DATA / "pii_blind_r3.jsonl")
    assert m["identifiers"] >= 100
    assert m["found"] / m["identifiers"] >= 0.98, m


@pytest.mark.parametrize("name", ["pii_labelled.jsonl", "pii_blind_r2.jsonl"])
def test_earlier_sets_keep_full_recall(name):
    m = pii_measure(_DATA / name)
    assert m["identifiers"] >= 40
    assert m["found"] == m["identifiers"], m


@pytest.mark.parametrize("name", ["pii_clinical.jsonl", "pii_clinical_r3.jsonl", "pii_blind_r2.jsonl"])
def test_clinical_text_is_never_changed(name):
    changed = [(r["text"], scrub(r["text"])) for r in _rows(name) if not r.get("pii") and scrub(r["text"]) != r["text"]]
    assert len([r for r in _rows(name) if not r.get("pii")]) >= 30
    assert changed == []


@pytest.mark.parametrize("name", _SETS)
def test_listed_clinical_words_survive(name):
    lost = [(w, r["text"]) for r in _rows(name) for w in r.get("keep") or [] if w not in scrub(r["text"])]
    assert lost == []


# ---------------------------------------------------------------- validators decide what a number is

def _kinds(text):
    return [(kind, text[s:e]) for kind, s, e in find_identifiers(text)]


def test_resident_id_check_digit():
    valid, wrong = "330106199104173629", "330106199104173628"  # same number, last digit changed
    assert ("ID", valid) in _kinds(f"号码{valid}请核对")
    # A wrong check digit without a label is not an ID (left to other detectors) …
    assert not any(k == "ID" for k, _ in _kinds(f"号码{wrong}请核对"))
    # … but after an ID label it is still the person's (mistyped) ID.
    assert ("ID", wrong) in _kinds(f"身份证{wrong}，请核对")


def test_bank_card_luhn():
    good, bad = "4532-0171-8826-4934", "4532-0171-8826-4935"
    assert ("ACCOUNT", good) in _kinds(f"Visa {good}, thanks")
    assert not any(k == "ACCOUNT" for k, _ in _kinds(f"Visa {bad}, thanks"))
    assert any(k == "ACCOUNT" for k, _ in _kinds(f"card number {bad}, thanks"))  # the label says so
    assert not any(k == "ACCOUNT" for k, _ in _kinds("Lot 4532015112830366 expiry 2026"))  # a product number


def test_iban_checksum():
    assert ("ACCOUNT", "DE65500105170648291735") in _kinds("pay DE65500105170648291735 today")
    assert _kinds("pay DE65500105170648291736 today") == []


def test_ssn_nhs_and_ip_validation():
    assert ("ID", "536-90-4399") in _kinds("ref 536-90-4399 ok")
    assert _kinds("ref 666-09-9999 ok") == []  # area 666 is never issued
    assert ("ID", "485 772 0310") in _kinds("My NHS details: 485 772 0310")
    assert ("IP", "198.51.100.23") in _kinds("logged in from 198.51.100.23 today")
    assert _kinds("Version 2.1.0.3 of the app") == []
    assert not any(k == "IP" for k, _ in _kinds("from 999.51.100.23 today"))  # not an address


# ---------------------------------------------------------------- names, addresses, plates, job

@pytest.mark.parametrize("text, leaked", [
    ("Our son Oliver Howell is 4", "Howell"),  # gazetteer: census given name + surname, no cue needed
    ("Mum (Margaret O'Sullivan-Reid) fell", "O'Sullivan-Reid"),
    ("the lady's husband, Roberto de Souza, drove", "de Souza"),
    ("Patient: María José de la Cruz, MRN 1", "de la Cruz"),
    ("claim for Klaus Müller-Schmidt, admitted", "Müller-Schmidt"),
    ("我婆婆钟离翠英今年72岁", "钟离翠英"),  # compound surname
    ("他叫周奕辰，现在每天用药", "周奕辰"),  # jieba reads it as an idiom; the naming verb decides
    ("我妈林淑芬做完手术", "林淑芬"),
    ("李总让我帮他问问", "李总"),
    ("我老公慕容振华，身份证号", "振华"),
])
def test_names(text, leaked):
    assert leaked not in scrub(text)


@pytest.mark.parametrize("text", [
    "Suspected Stevens-Johnson syndrome after lamotrigine.",
    "Guillain-Barré syndrome after a diarrhoeal illness",
    "Wolff-Parkinson-White on the ECG",
    "Referred to the Royal Marsden Hospital",
    "Grace period of two weeks, then May review",
    "和医生说清楚症状，向医生咨询用药",
    "我在社区医院的主任那里开了药",
    "WBC 15.3×10^9/L, platelets 452×10^9/L",
    "IPv6 ::1 and ratio 10:1:1 at 12:30:45",
])
def test_look_alikes_are_kept(text):
    assert scrub(text) == text


@pytest.mark.parametrize("text, kind, leaked", [
    ("我妈住在浙江省杭州市拱墅区湖墅南路218号3幢1单元502室，邮编310005", "ADDRESS", "浙江省杭州市"),
    ("I live at 2217 Maple Ridge Drive, Columbus, OH 43215.", "ADDRESS", "Columbus"),
    ("车牌浙A·7K35M，停在门口", "PLATE", "7K35M"),
    ("his car reg, LK19 XWP.", "PLATE", "LK19 XWP"),
    ("blog: https://example.org/about-me, thanks", "URL", "example.org"),
    ("我在协和医院心内科当护士长，叫周慧敏", "JOB", "协和医院"),
    ("I'm a forklift driver at the Tesco distribution centre in Daventry.", "JOB", "Tesco"),
    ("My Medicare number is 3HK7-RN2-WD48 and", "MRN", "3HK7"),
    ("My NI number is JK 48 29 17 B.", "ID", "JK 48"),
    ("mobile +44 7700 900562. The scan", "PHONE", "900562"),
])
def test_new_kinds(text, kind, leaked):
    out, counts = scrub_with_counts(text)
    assert leaked not in out and counts[kind] >= 1, (out, counts)


def test_every_placeholder_kind_names_its_hipaa_and_pipl_category():
    rows = {kind: (hipaa, pipl) for kind, _, hipaa, pipl in pii.DETECTORS}
    assert set(rows) == set(pii._PLACEHOLDER)
    assert all(hipaa and pipl for hipaa, pipl in rows.values())
    letters = {h.split(" ")[0] for h, _ in rows.values()} | {p.strip()[0] for h, _ in rows.values() for p in h.split(";")[1:]}
    assert set("ABCDEFGHIJKLMNO") <= letters  # the textual Safe Harbor identifiers (P, Q: biometrics, photos)


def test_segmenting_only_candidate_blocks_still_finds_the_same_on_r3(monkeypatch):
    texts = [r["text"] for name in ("pii_blind_r3.jsonl", "pii_clinical_r3.jsonl") for r in _rows(name)]
    fast = [find_identifiers(t) for t in texts]

    def full_tokens(text, near):
        out, pos = [], 0
        for pair in pii._posseg().cut(text):
            out.append((pos, pos + len(pair.word), pair.word, pair.flag))
            pos += len(pair.word)
        return out

    monkeypatch.setattr(pii, "_zh_tokens", full_tokens)
    monkeypatch.setattr(pii, "_tagged_candidates", lambda text: [0])
    assert [find_identifiers(t) for t in texts] == fast
