"""rougeL_char: character-level ROUGE-L F1 between the model's answer and the reference answer (both read
after </think>), plus the answer length in characters. Tokenised by character because rouge_score's default
tokenizer keeps only [a-z0-9] and scores every Chinese answer 0."""

import datasets
import evaluate

from medqa.eval.items import answer_length, rouge_l_char
from medqa.text.think import split_think

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: raw model generations.
    references: reference outputs (a think block, if any, is dropped).
Returns:
    rougeL_char: mean F1 (None when empty); answer_len_chars, reference_len_chars: mean lengths; n;
    per_item: [{rougeL_char, answer_len_chars, reference_len_chars}].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RougeLChar(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references):
        per_item = []
        for p, r in zip(predictions, references, strict=True):
            ans, ref = split_think(p).answer, split_think(r).answer
            per_item.append({"rougeL_char": rouge_l_char(ans, ref), "answer_len_chars": answer_length(ans),
                             "reference_len_chars": answer_length(ref)})
        n = len(per_item)

        def mean(key):
            return sum(f[key] for f in per_item) / n if n else None

        return {"rougeL_char": mean("rougeL_char"), "answer_len_chars": mean("answer_len_chars"),
                "reference_len_chars": mean("reference_len_chars"), "n": n, "per_item": per_item}
