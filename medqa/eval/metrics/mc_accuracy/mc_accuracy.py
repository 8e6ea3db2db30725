"""mc_accuracy: multiple-choice accuracy on exam-style items (CMB / MedQA-MCMLE: question, options A–E, answer
letter). The chosen letter is extracted from the generation's answer ("答案是C", "故选C", "(C)", "**C**",
"The answer is C", the only option quoted …); an answer with no recognisable choice counts as wrong."""

import json

import datasets
import evaluate

from medqa.eval.items import extract_choice

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: raw model generations.
    references: the correct option letters.
    options: each item's options as a JSON object string {"A": text, ...}.
Returns:
    mc_accuracy: share correct (None when empty); k, n; unparsed: items with no recognisable choice;
    per_item: [{mc_choice, mc_correct}].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class McAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string"),
                                        "options": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, options):
        per_item = []
        for p, ref, opts in zip(predictions, references, options, strict=True):
            choice = extract_choice(p, json.loads(opts))
            per_item.append({"mc_choice": choice, "mc_correct": choice is not None and choice == ref.strip().upper()})
        k = sum(f["mc_correct"] for f in per_item)
        n = len(per_item)
        unparsed = sum(f["mc_choice"] is None for f in per_item)
        return {"mc_accuracy": k / n if n else None, "k": k, "n": n, "unparsed": unparsed, "per_item": per_item}
