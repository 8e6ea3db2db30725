"""medqa: fine-tune Qwen3 into a bilingual medical QA model that reasons in <think> chains.

Data flows one way: prepare (medqa.data) -> sft (medqa.train.sft) -> rollouts/rewards (medqa.rewards,
medqa.teacher) -> ppo -> eval (medqa.eval). Heavy modules are imported lazily by the CLI.
"""

__version__ = "0.1.0"

from medqa.runs.io import atomic_write, read_jsonl, write_jsonl  # noqa: E402
from medqa.text.pii import scrub  # noqa: E402

__all__ = ["__version__", "atomic_write", "read_jsonl", "write_jsonl", "scrub"]
