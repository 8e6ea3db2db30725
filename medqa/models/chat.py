"""Chat-model families: what differs between Qwen3 and other chat models, decided in one place.

Every chat the project renders for a model (predict, eval, serve, PPO rollouts, GRPO prompts, SFT's think-coverage
answers) goes through `render_prompt` (via `medqa.models.generation.chat_input_ids`), and every stop-token set through
`stop_ids`. The family is read from the chat template (`chat_family`):

* **qwen3** — Qwen3's template (and TRL's training copy of it): it reads `enable_thinking` itself, renders no
  system turn when the chat has none, and SFT leaves the template alone (TRL swaps in its generation-marked
  training copy for the assistant-only loss).
* **chatml** — any other `<|im_start|>role\\n…<|im_end|>` template (SmolLM2 and most small instruct models).
  A chat without a system turn gets the project's system prompt (`system_prompt`: the one definition in
  medqa/data/schema.py, by the question's language), never the template's own default ("You are a helpful AI
  assistant named SmolLM…"). A template that does not read `enable_thinking` switches thinking off by a prefilled
  empty think block after the generation prompt (what Qwen3's template does). SFT replaces a ChatML template that
  has no `{% generation %}` markers by medqa's (`chatml_template`), which then ships with the trained model.
* **other** — any other template: rendered as is, with the same system prompt and thinking rules as chatml; SFT's
  assistant-only loss then needs a template TRL knows or one with generation markers.

The `<think>…</think>` chain is plain text for every family (medqa/text/think.py parses it), so SFT targets carry it
and the model learns to write it whether or not the tokenizer has think tokens. docs/models.md lists the covered
families and how to add one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

THINK_OFF = "<think>\n\n</think>\n\n"  # the empty think block Qwen3's template adds for enable_thinking=False
END_OF_TURN = "<|im_end|>"  # ends a turn in Qwen3 and ChatML templates
_GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")


@dataclass(frozen=True)
class ChatFamily:
    name: str  # qwen3 | chatml | other
    thinking_switch: bool  # the template reads `enable_thinking`; else thinking off is the prefilled THINK_OFF
    project_system: bool  # a chat without a system turn gets the project's system prompt
    generation_marked: bool  # the template marks assistant turns with {% generation %} (assistant-only loss)


def chat_family(template: str) -> ChatFamily:
    """The family of a chat template (see the module docstring)."""
    if "reasoning_content" in template and "enable_thinking" in template and END_OF_TURN in template:
        name = "qwen3"
    elif "<|im_start|>" in template and END_OF_TURN in template:
        name = "chatml"
    else:
        name = "other"
    return ChatFamily(name=name, thinking_switch="enable_thinking" in template, project_system=name != "qwen3",
                      generation_marked=_GENERATION_MARKER.search(template) is not None)


def template_of(tokenizer, chat_template: str | None = None) -> str:
    """The chat template a chat is rendered with: `chat_template`, else the tokenizer's; ValueError without one."""
    template = chat_template if chat_template is not None else tokenizer.chat_template
    if isinstance(template, dict):  # named variants: the default one
        template = template.get("default")
    if not isinstance(template, str) or not template:
        raise ValueError("the tokenizer has no chat template; pass a chat model or an SFT output")
    return template


def chatml_template() -> str:
    """medqa's ChatML chat template (medqa/models/chat_templates/chatml.jinja): ChatML turns, no built-in system prompt,
    `{% generation %}` around each assistant turn and its `<|im_end|>`, and Qwen3's `enable_thinking` switch."""
    return (resources.files("medqa.models") / "chat_templates" / "chatml.jinja").read_text(encoding="utf-8")


# ---------------------------------------------------------------- the system prompt


def system_prompt(question: str) -> str:
    """The project's system prompt for a question: `DEFAULT_INSTRUCTION` (medqa/data/schema.py, the one
    definition, also what `make data` gives rows without an instruction) in the question's language."""
    from medqa.data.meta import infer_language
    from medqa.data.schema import DEFAULT_INSTRUCTION

    return DEFAULT_INSTRUCTION[infer_language(question)]


def with_system(messages: Sequence[Mapping[str, Any]], family: ChatFamily) -> list[dict[str, Any]]:
    """`messages`, with the project's system prompt first when the family takes one and the chat has none."""
    chat = [dict(m) for m in messages]
    if not family.project_system or any(m.get("role") == "system" for m in chat):
        return chat
    users = [m["content"] for m in chat if m.get("role") == "user" and isinstance(m.get("content"), str)]
    return [{"role": "system", "content": system_prompt(users[-1] if users else "")}, *chat]


# ---------------------------------------------------------------- rendering


def render_prompt(tokenizer, messages: Sequence[Mapping[str, Any]], enable_thinking: bool | None = True, *,
                  chat_template: str | None = None, **template_kwargs: Any) -> str:
    """The generation prompt of a chat (ending with the user turn), as text: the family's system prompt rule, then
    the template, with thinking switched by the template (`enable_thinking`) or, for a template that does not read
    it, off by the prefilled empty think block. `enable_thinking=None` leaves the template's default."""
    template = template_of(tokenizer, chat_template)
    family = chat_family(template)
    kwargs = dict(template_kwargs)
    if chat_template is not None:
        kwargs["chat_template"] = chat_template
    if enable_thinking is not None and family.thinking_switch:
        kwargs["enable_thinking"] = enable_thinking
    text = tokenizer.apply_chat_template(with_system(messages, family), tokenize=False, add_generation_prompt=True,
                                         **kwargs)
    if enable_thinking is False and not family.thinking_switch:
        text += THINK_OFF
    return text


def training_template(tokenizer) -> str | None:
    """The chat template SFT must set before training with the assistant-only loss, or None to keep the tokenizer's:
    medqa's generation-marked ChatML template for a ChatML template without generation markers; Qwen3's and
    generation-marked templates stay (TRL swaps in its own training copy of Qwen3's)."""
    family = chat_family(template_of(tokenizer))
    return chatml_template() if family.name == "chatml" and not family.generation_marked else None


# ---------------------------------------------------------------- stopping


def stop_ids(tokenizer, *configs: Any) -> list[int]:
    """Every token id that ends an answer: the `eos_token_id` (an id or a list) of each config given (the model's
    config and generation config), the tokenizer's EOS and the end-of-turn token `<|im_end|>` when the tokenizer
    has it. Masks come from the first of them, never from comparing with the pad id (Qwen3 pads with one)."""
    ids: set[int] = set()
    for config in configs:
        eos = getattr(config, "eos_token_id", None)
        if eos is not None:
            ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if end is not None and end != tokenizer.unk_token_id:
        ids.add(end)
    return sorted(ids)
