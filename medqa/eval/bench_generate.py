"""`medqa bench-medical --scoring generate`: the multiple-choice tasks asked generatively, the lm-eval way.

`generative_config` derives, from a task's own (log-likelihood) config, its `generate_until` variant: the same
dataset, prompt (`doc_to_text`), choices and target; the model writes its answer greedily, up to `max_gen_toks`
tokens, under the chat template; `ChoiceGenerationTask.score` (the task's `process_results`) reads the answer after
the `<think>…</think>` block (`medqa.text.think.split_think`) and extracts the choice from it (`answer_choice`).
Metrics: `acc` (mean; an answer with no choice is wrong) and `unparsable` (a count). The harness's default filter
(`none`: take the first answer) is kept, so the groups aggregate `acc,none` as they do for log-likelihood.
Imported only for this scoring: it imports the harness.
"""

from __future__ import annotations

import re
from typing import Any

from lm_eval.api.task import ConfigurableTask

from medqa.text.think import split_think

# A stated answer: "Answer: C", "The answer is (B)", "the correct answer is **yes**", "答案：B", "答案是 C".
_STATED = r"(?i:answer|答案)[^A-Za-z0-9\n]{0,3}(?:(?i:is)|是|为)?[^A-Za-z0-9\n]{0,4}"
# The answer opens with the choice: "C. Vitamin C", "(B)", "**Yes**, …"; a letter not followed by a lowercase word
# ("A deficiency of …" is prose, not option A).
_OPENING = r"^[^A-Za-z0-9\u4e00-\u9fff]*"
_NOT_PROSE = r"(?!\s+[a-z])"


def answer_choice(text: str, choices: list[str]) -> str | None:
    """The choice a generated answer gives, read after its think block (an unclosed block is a cut generation: no
    answer): the last stated answer, else a choice that opens the answer, else the only choice the answer names.
    Letters match in their case, words (yes/no/maybe) in any case. None when no choice is found or several are
    named (unparsable)."""
    answer = split_think(text).answer
    by_key = {c.casefold(): c for c in choices}
    letters = all(len(c) == 1 for c in choices)
    flags = 0 if letters else re.I
    alternatives = "|".join(re.escape(c) for c in sorted(choices, key=len, reverse=True))
    token = rf"(?<![A-Za-z0-9])({alternatives})(?![A-Za-z0-9])"
    for pattern in (_STATED + token, _OPENING + token + (_NOT_PROSE if letters else "")):
        found = re.findall(pattern, answer, flags)
        if found:
            return by_key[found[-1].casefold()]
    named = {by_key[m.casefold()] for m in re.findall(token, answer, flags)}
    return named.pop() if len(named) == 1 else None


class ChoiceGenerationTask(ConfigurableTask):
    """A multiple-choice task asked generatively (config from `generative_config`): `score` is its
    `process_results`."""

    def __init__(self, config: dict[str, Any]):
        cfg = {k: v for k, v in config.items() if k != "class"}
        super().__init__(config={**cfg, "process_results": self.score})

    def score(self, doc: dict, results: list[str]) -> dict[str, float]:
        """acc: the extracted choice is the target; unparsable: no choice could be extracted (scored wrong)."""
        choices = self.doc_to_choice(doc)
        target = self.doc_to_target(doc)
        gold = choices[target] if isinstance(target, int) else str(target)
        picked = answer_choice(results[0], choices)
        return {"acc": float(picked == gold), "unparsable": float(picked is None)}


def count(flags: list[float]) -> float:
    """Aggregation of `unparsable`: how many answers had no choice."""
    return float(sum(flags))


METRICS = [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
           {"metric": "unparsable", "aggregation": count, "higher_is_better": False}]


def generative_config(cfg: dict[str, Any], max_gen_toks: int) -> dict[str, Any]:
    """The generate_until variant of the multiple-choice task config `cfg` (output_type multiple_choice, with
    doc_to_choice: checked by the caller): greedy, up to `max_gen_toks` new tokens, stopped only by the end of the
    turn."""
    return {**cfg, "class": ChoiceGenerationTask, "output_type": "generate_until", "metric_list": METRICS,
            "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": max_gen_toks}}
