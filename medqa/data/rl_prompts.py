"""`medqa data rl-prompts`: the prompts PPO rolls out on, high-risk and high-quality first."""

from __future__ import annotations

from pathlib import Path

from medqa.data.splits import is_gold
from medqa.io import read_jsonl, write_jsonl
from medqa.think import split_think

_RISK_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def rl_prompt(record: dict) -> dict:
    """What the rollout and the rewards need: the chat prompt (no answer), the reference and the meta."""
    meta = record["meta"]
    return {
        "id": record["id"],
        "prompt": [m for m in record["messages"] if m["role"] != "assistant"],
        "question": record["input"],
        "reference": split_think(record["output"]).answer,
        "meta": {k: meta[k] for k in ("risk_level", "specialty", "lang_style", "complexity", "source") if k in meta}
        | {"high_quality": is_gold(record)},
    }


def build_rl_prompts(data_dir: str | Path, out: str | Path, splits: tuple[str, ...] = ("train",)) -> int:
    rows = [r for s in splits for r in read_jsonl(Path(data_dir) / f"{s}.jsonl")]
    rows.sort(key=lambda r: (_RISK_ORDER.get(r["meta"].get("risk_level"), 4), not is_gold(r), r["id"]))
    return write_jsonl(out, (rl_prompt(r) for r in rows))
