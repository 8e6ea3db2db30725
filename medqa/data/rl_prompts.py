"""`medqa data rl-prompts`: the prompts PPO rolls out on, high-risk and high-quality first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medqa.data.splits import is_gold
from medqa.data.triage import TriageReport, record_triage
from medqa.runs.io import InputError, iter_jsonl, read_jsonl, write_jsonl
from medqa.text.think import split_think

DEFAULT_PROMPTS = "data/rl/training_prompts.jsonl"  # `make rl-prompts` writes it, PPO and GRPO read it


@dataclass
class PromptArguments:
    """The RL prompts (`make rl-prompts`: rows with prompt messages, question and meta)."""

    prompts_file: str = field(default=DEFAULT_PROMPTS, metadata={"help": "`make rl-prompts` output"})
    max_prompts: int | None = field(default=None, metadata={"help": "use only the first N prompts"})
    max_prompt_length: int = field(default=1024, metadata={
        "help": "longest prompt in tokens (chat template applied); a longer one in prompts_file is an error"})

    def check_prompts(self) -> None:
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ValueError(f"max_prompts must be a positive number of rows, got {self.max_prompts}")
        if self.max_prompt_length < 1:
            raise ValueError(f"max_prompt_length must be >= 1 tokens, got {self.max_prompt_length}")


_RISK_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def rl_prompt(record: dict) -> dict:
    """What the rollout and the rewards need: the chat prompt (no answer), the reference and the meta."""
    meta = record["meta"]
    return {
        "id": record["id"],
        "prompt": [m for m in record["messages"] if m["role"] != "assistant"],
        "question": record["input"],
        "reference": split_think(record["output"]).answer,
        "meta": {k: meta[k] for k in ("risk_level", "specialty", "lang_style", "complexity", "source", "triage")
                 if k in meta}
        | {"high_quality": is_gold(record)},
    }


def make_rl_prompts(data_dir: str | Path, splits: tuple[str, ...] = ("train",), teacher=None
                    ) -> tuple[list[dict], TriageReport | None]:
    """The RL prompt rows (high risk and high quality first) and the run's teacher triage report (None when no
    label had to be recorded). Each row's `meta.triage` is the combined emergency label (`medqa.data.triage`): with
    `teacher` (a `medqa.teacher.setup.Teacher`, or a function that builds one) recorded again with its triage, once
    per unique question and through the cache (a question `make data` triaged with the same teacher costs no call);
    without one the label `make data` recorded is kept (lexicon + dataset for data prepared before labels were recorded)."""
    rows = [r for s in splits for r in read_jsonl(Path(data_dir) / f"{s}.jsonl")]
    rows.sort(key=lambda r: (_RISK_ORDER.get(r["meta"].get("risk_level"), 4), not is_gold(r), r["id"]))
    prompts = [rl_prompt(r) for r in rows]
    todo = [(p["question"], p["meta"]) for p in prompts if teacher is not None or "triage" not in p["meta"]]
    return prompts, (record_triage(todo, teacher) if todo else None)


def build_rl_prompts(data_dir: str | Path, out: str | Path, splits: tuple[str, ...] = ("train",), teacher=None) -> int:
    """Write the RL prompts of `make_rl_prompts` to `out`; returns their number."""
    prompts, _ = make_rl_prompts(data_dir, splits, teacher)
    return write_jsonl(out, prompts)


def prompt_token_counter(tokenizer, enable_thinking: bool = True) -> Callable[[list[dict]], int]:
    """Tokens of a chat prompt as the policy is given it (the chat template's generation prompt)."""
    from medqa.models.generation import chat_input_ids

    def count(messages: list[dict]) -> int:
        return len(chat_input_ids(tokenizer, messages, enable_thinking))

    return count


def load_rl_prompts(path: str | Path, limit: int | None = None, *, max_prompt_length: int | None = None,
                    count_tokens: Callable[[list[dict]], int] | None = None) -> list[dict]:
    """Read `make rl-prompts` rows back, checked: `id`, `prompt` (chat messages up to the user's question),
    `question` and `meta` (a dict). The one reader of the RL prompts file, for PPO and GRPO.

    With `max_prompt_length` and `count_tokens` (`prompt_token_counter`), a prompt longer than that many tokens is
    an error naming its line: the policy and the teacher must both see the whole question, so nothing is cut."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `make rl-prompts` first, or set prompts_file")
    rows = []
    for line, row in iter_jsonl(path):
        prompt = row.get("prompt")
        if not isinstance(prompt, list) or not prompt or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in prompt):
            raise InputError(path, line, "prompt", "expected a list of {role, content} messages")
        if prompt[-1]["role"] != "user":
            raise InputError(path, line, "prompt", "the last message must be the user's question")
        question = row.get("question", prompt[-1]["content"])
        if not isinstance(question, str) or not question.strip():
            raise InputError(path, line, "question", "must be a non-empty string")
        if max_prompt_length is not None and count_tokens is not None:
            n = count_tokens(prompt)
            if n > max_prompt_length:
                raise InputError(path, line, "prompt", f"{n} tokens with the chat template, over max_prompt_length "
                                 f"{max_prompt_length}: shorten or drop it, or raise max_prompt_length (the policy "
                                 "must see the whole question the teacher judges)")
        meta = row.get("meta") or {}
        if not isinstance(meta, dict):
            raise InputError(path, line, "meta", "must be an object")
        rows.append({"id": row.get("id", f"line-{line}"),
                     "prompt": [{"role": m["role"], "content": m["content"]} for m in prompt],
                     "question": question, "meta": meta})
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise InputError(path, None, None, "no prompts")
    return rows
