"""think_coverage: share of generations with a well-formed `<think>…</think>` followed by a non-empty answer."""

import datasets
import evaluate

from medqa.eval.items import think_flags

_DESCRIPTION = __doc__
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of raw model generations (think block included).
Returns:
    think_coverage: share of well-formed generations (None when there are none); k, n: the counts;
    per_item: [{has_think, think_ok}].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ThinkCoverage(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation="", inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions):
        per_item = [think_flags(p) for p in predictions]
        k = sum(f["think_ok"] for f in per_item)
        n = len(per_item)
        return {"think_coverage": k / n if n else None, "k": k, "n": n, "per_item": per_item}
