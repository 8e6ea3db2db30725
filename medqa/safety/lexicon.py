"""The safety lexicon: medqa/safety/data/*.yaml, parsed, checked and compiled once at import.

Each file is read with line numbers kept, so a mistake is reported as `FILE:LINE: what is wrong` (an unknown key,
a missing field, a regular expression that does not compile, an unknown `${VOCABULARY}` name, a contraindication
naming a drug that is not listed, a `covers` entry naming a source or source category that `sources:` does not list).
Nothing is half-loaded: the first error stops the import.

red_flags.yaml's `sources:` lists published triage systems and their categories (presentation charts, criteria);
every red-flag category names in `covers` the source categories it implements, as `SOURCE:CATEGORY`, and a rule
may name its own (replacing its category's for that rule), its own `reading`, and `unless` patterns that veto it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

DATA_DIR = Path(__file__).with_name("data")
_I = re.I
_VOCAB_REF = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


class LexiconError(ValueError):
    """A lexicon file is malformed; the message starts with FILE:LINE."""

    def __init__(self, path: Path | str, line: int, message: str):
        self.path, self.line = str(path), line
        super().__init__(f"{path}:{line}: {message}")


class _Node:
    """A YAML node with its file and line, and typed accessors that fail with FILE:LINE."""

    def __init__(self, node: yaml.Node, path: Path):
        self.node, self.path = node, path

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def fail(self, message: str) -> LexiconError:
        return LexiconError(self.path, self.line, message)

    def mapping(self, required: tuple[str, ...] = (), optional: tuple[str, ...] = (), any_keys: bool = False
                ) -> dict[str, _Node]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.fail(f"expected a mapping, got {self._kind()}")
        out: dict[str, _Node] = {}
        for k, v in self.node.value:
            key = _Node(k, self.path).string()
            if key in out:
                raise _Node(k, self.path).fail(f"duplicate key {key!r}")
            if not any_keys and key not in required + optional:
                raise _Node(k, self.path).fail(f"unknown key {key!r} (expected one of {', '.join(required + optional)})")
            out[key] = _Node(v, self.path)
        missing = [k for k in required if k not in out]
        if missing:
            raise self.fail(f"missing key {missing[0]!r}")
        return out

    def sequence(self) -> list[_Node]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.fail(f"expected a list, got {self._kind()}")
        return [_Node(n, self.path) for n in self.node.value]

    def string(self) -> str:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag != "tag:yaml.org,2002:str" or not self.node.value:
            raise self.fail(f"expected a non-empty string, got {self._kind()}")
        return self.node.value

    def boolean(self) -> bool:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag != "tag:yaml.org,2002:bool":
            raise self.fail(f"expected true or false, got {self._kind()}")
        return self.node.value.lower() in ("true", "yes", "on")

    def strings(self) -> tuple[str, ...]:
        return tuple(n.string() for n in self.sequence())

    def _kind(self) -> str:
        if isinstance(self.node, yaml.ScalarNode):
            return f"{self.node.value!r}"
        return "a list" if isinstance(self.node, yaml.SequenceNode) else "a mapping"


def _root(path: Path) -> _Node:
    try:
        with open(path, encoding="utf-8") as fh:
            node = yaml.compose(fh, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise LexiconError(path, mark.line + 1 if mark else 1, f"not valid YAML: {getattr(e, 'problem', e)}") from None
    if node is None:
        raise LexiconError(path, 1, "empty file")
    return _Node(node, path)


def _compile(node: _Node, vocabulary: dict[str, str] | None = None) -> re.Pattern[str]:
    text = node.string()
    if vocabulary is not None:
        def expand(m: re.Match[str]) -> str:
            if m.group(1) not in vocabulary:
                raise node.fail(f"unknown vocabulary name ${{{m.group(1)}}}")
            return vocabulary[m.group(1)]

        text = _VOCAB_REF.sub(expand, text)
    try:
        return re.compile(text, _I)
    except re.error as e:
        raise node.fail(f"invalid regular expression: {e}") from None


# ----------------------------------------------------------------------------------------------- structures

@dataclass(frozen=True)
class Example:
    text: str
    where: str  # FILE:LINE of the example, for test ids and messages


@dataclass(frozen=True)
class Rule:
    """One lexicon entry: a pattern, or several (`all_of`) that must all match; with its examples."""

    parts: tuple[re.Pattern[str], ...]
    where: str
    should_match: tuple[Example, ...] = ()
    should_not_match: tuple[Example, ...] = ()
    covers: tuple[str, ...] = ()  # red flags: the source categories ("MTS:chest_pain") this rule implements
    reading: str = ""  # red flags: "current", "ongoing" or "unnegated" for this rule; empty: its category's reading
    unless: tuple[re.Pattern[str], ...] = ()  # red flags: an unnegated match of any of these anywhere vetoes the rule


@dataclass(frozen=True)
class Category:
    name: str
    description: str
    reading: str  # "current": unnegated, not history, not a general question; "ongoing": unnegated, not a general
    #               question (history counts: a medicine taken for years); "unnegated": unnegated only
    rules: tuple[Rule, ...]
    should_not_match: tuple[Example, ...]
    covers: tuple[str, ...] = ()  # the source categories ("SOURCE:CATEGORY") the category implements


@dataclass(frozen=True)
class Source:
    """A published triage system: its full name and its categories (key -> the source's own title)."""

    key: str
    name: str
    reference: str
    categories: dict[str, str]


@dataclass(frozen=True)
class RedFlagLexicon:
    categories: dict[str, Category]
    should_not_match: tuple[Example, ...]
    sources: dict[str, Source] = field(default_factory=dict)


@dataclass(frozen=True)
class AnswerExample:
    text: str
    urgent: bool
    conditional: bool
    where: str


@dataclass(frozen=True)
class ReferralLexicon:
    urgent: tuple[Rule, ...]
    crisis_lines: tuple[Rule, ...]
    routine: tuple[Rule, ...]
    condition_cues: tuple[Rule, ...]
    answers: tuple[AnswerExample, ...]


@dataclass(frozen=True)
class DrugLexicon:
    prescription_only: dict[str, Rule]
    over_the_counter: dict[str, Rule]
    contraindications: dict[str, tuple[str, ...]]
    warn_before: re.Pattern[str]
    warn_after: re.Pattern[str]
    contexts: dict[str, re.Pattern[str]]
    should_not_match: tuple[Example, ...]


@dataclass(frozen=True)
class Lexicon:
    red_flags: RedFlagLexicon
    referrals: ReferralLexicon
    drugs: DrugLexicon
    files: tuple[Path, ...] = field(default=())


# ----------------------------------------------------------------------------------------------- loading

def _examples(node: _Node | None) -> tuple[Example, ...]:
    if node is None:
        return ()
    return tuple(Example(n.string(), f"{n.path.name}:{n.line}") for n in node.sequence())


def _covers(node: _Node, sources: dict[str, Source]) -> tuple[str, ...]:
    """A `covers` list of `SOURCE:CATEGORY` names, each checked against `sources`."""
    items = node.sequence()
    if not items:
        raise node.fail("'covers' needs at least one SOURCE:CATEGORY")
    out = []
    for item in items:
        ref = item.string()
        src, sep, cat = ref.partition(":")
        if not sep or not src or not cat:
            raise item.fail(f"expected SOURCE:CATEGORY, got {ref!r}")
        if src not in sources:
            raise item.fail(f"unknown source {src!r} (sources: {', '.join(sources)})")
        if cat not in sources[src].categories:
            raise item.fail(f"unknown category {cat!r} of source {src!r}")
        out.append(ref)
    return tuple(out)


def _sources(node: _Node) -> dict[str, Source]:
    out = {}
    for key, src in node.mapping(any_keys=True).items():
        fields = src.mapping(required=("name", "reference", "categories"))
        cats = {k: v.string() for k, v in fields["categories"].mapping(any_keys=True).items()}
        if not cats:
            raise fields["categories"].fail(f"source {key!r} lists no categories")
        out[key] = Source(key, fields["name"].string(), fields["reference"].string(), cats)
    return out


def _rule(node: _Node, vocabulary: dict[str, str] | None = None, sources: dict[str, Source] | None = None) -> Rule:
    keys = ("pattern", "all_of", "should_match", "should_not_match", "note") + (
        ("covers", "reading", "unless") if sources is not None else ())
    fields = node.mapping(optional=keys)
    if ("pattern" in fields) == ("all_of" in fields):
        raise node.fail("a rule needs exactly one of 'pattern' or 'all_of'")
    if "pattern" in fields:
        parts = (_compile(fields["pattern"], vocabulary),)
    else:
        items = fields["all_of"].sequence()
        if len(items) < 2:
            raise fields["all_of"].fail("'all_of' needs at least two patterns")
        parts = tuple(_compile(n, vocabulary) for n in items)
    covers = _covers(fields["covers"], sources) if "covers" in fields and sources is not None else ()
    reading = _reading(fields["reading"]) if "reading" in fields else ""
    unless = tuple(_compile(n, vocabulary) for n in fields["unless"].sequence()) if "unless" in fields else ()
    if "unless" in fields and not unless:
        raise fields["unless"].fail("'unless' needs at least one pattern")
    return Rule(parts, f"{node.path.name}:{node.line}", _examples(fields.get("should_match")),
                _examples(fields.get("should_not_match")), covers, reading, unless)


def _reading(node: _Node) -> str:
    reading = node.string()
    if reading not in ("current", "ongoing", "unnegated"):
        raise node.fail(f"reading must be 'current', 'ongoing' or 'unnegated', got {reading!r}")
    return reading


def _red_flags(path: Path) -> RedFlagLexicon:
    top = _root(path).mapping(required=("sources", "vocabulary", "categories"), optional=("should_not_match",))
    sources = _sources(top["sources"])
    vocabulary: dict[str, str] = {}
    for name, node in top["vocabulary"].mapping(any_keys=True).items():
        if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name):
            raise node.fail(f"vocabulary names are UPPER_CASE, got {name!r}")
        vocabulary[name] = node.string()
        _compile(node)
    categories = {}
    for name, node in top["categories"].mapping(any_keys=True).items():
        fields = node.mapping(required=("covers", "rules"), optional=("description", "reading", "should_not_match"))
        reading = _reading(fields["reading"]) if "reading" in fields else "current"
        covers = _covers(fields["covers"], sources)
        # A rule without its own `covers` implements its category's source categories.
        rules = tuple(r if r.covers else replace(r, covers=covers)
                      for r in (_rule(n, vocabulary, sources) for n in fields["rules"].sequence()))
        if not rules:
            raise fields["rules"].fail(f"category {name!r} has no rules")
        categories[name] = Category(name, fields["description"].string() if "description" in fields else "", reading,
                                    rules, _examples(fields.get("should_not_match")), covers)
    return RedFlagLexicon(categories, _examples(top.get("should_not_match")), sources)


def _referrals(path: Path) -> ReferralLexicon:
    top = _root(path).mapping(required=("urgent", "crisis_lines", "routine", "condition_cues"), optional=("answers",))
    answers = []
    for node in top["answers"].sequence() if "answers" in top else []:
        f = node.mapping(required=("text", "urgent", "conditional"))
        answers.append(AnswerExample(f["text"].string(), f["urgent"].boolean(), f["conditional"].boolean(),
                                     f"{path.name}:{node.line}"))
    return ReferralLexicon(*(tuple(_rule(r) for r in top[k].sequence())
                             for k in ("urgent", "crisis_lines", "routine", "condition_cues")), tuple(answers))


def _drugs(path: Path) -> DrugLexicon:
    top = _root(path).mapping(required=("prescription_only", "over_the_counter", "contraindications", "warn_before",
                                        "warn_after", "contexts"), optional=("should_not_match",))
    rx = {k: _rule(v) for k, v in top["prescription_only"].mapping(any_keys=True).items()}
    otc = {k: _rule(v) for k, v in top["over_the_counter"].mapping(any_keys=True).items()}
    both = set(rx) & set(otc)
    if both:
        raise top["over_the_counter"].fail(f"drug listed as both prescription-only and over the counter: {sorted(both)[0]}")
    contexts = {k: _compile(v) for k, v in top["contexts"].mapping(required=("pregnancy", "child", "early_pregnancy")).items()}
    contra = {}
    for ctx, node in top["contraindications"].mapping(optional=("pregnancy", "child")).items():
        for item in node.sequence():
            if item.string() not in rx and item.string() not in otc:
                raise item.fail(f"contraindication names an unknown drug {item.string()!r}")
        contra[ctx] = node.strings()
    return DrugLexicon(rx, otc, contra, _compile(top["warn_before"]), _compile(top["warn_after"]), contexts,
                       _examples(top.get("should_not_match")))


def load(data_dir: Path = DATA_DIR) -> Lexicon:
    """The lexicon in `data_dir` (red_flags.yaml, referrals.yaml, drugs.yaml); LexiconError on the first mistake."""
    files = tuple(data_dir / f for f in ("red_flags.yaml", "referrals.yaml", "drugs.yaml"))
    for f in files:
        if not f.is_file():
            raise LexiconError(f, 0, "missing lexicon file")
    return Lexicon(_red_flags(files[0]), _referrals(files[1]), _drugs(files[2]), files)
