"""Chat templates the project ships: the ChatML template with TRL's generation markers.

`chatml_template()` is medqa/chat_templates/chatml.jinja: ChatML turns (`<|im_start|>role\\n…<|im_end|>`), no
built-in system prompt, `{% generation %}` around each assistant turn (TRL's assistant-only loss) and Qwen3's
`enable_thinking` switch (false prefills an empty think block).
"""

from __future__ import annotations

from importlib import resources


def chatml_template() -> str:
    """medqa's ChatML chat template (medqa/chat_templates/chatml.jinja)."""
    return (resources.files("medqa") / "chat_templates" / "chatml.jinja").read_text(encoding="utf-8")
