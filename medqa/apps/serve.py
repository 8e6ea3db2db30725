"""`medqa serve`: Gradio chat demo of a medqa model.

Streams tokens as they are generated, shows the `<think>` chain in a collapsible block apart from the answer,
keeps a medical disclaimer on screen at all times, and raises an emergency banner when any of the user's turns
shows red-flag symptoms (`medqa.safety.red_flags`, the same check the reward and the metrics use).

The model sees the whole conversation: every message shape Gradio sends (a string, a list of parts
`[{"type": "text", "text": …}]`, files — which are ignored) is read, the oldest turns are dropped first when the
prompt would exceed the token budget, and the history is capped in messages and characters before it is tokenised;
a conversation over `--max-history-chars` in all is refused before it is read. Generation stops when the client
disconnects or after `--max-seconds`. The operator's `--system` prompt is the only system turn and always comes
first: a system message in the client's history is dropped (`conversation_messages`). Everything the user typed is
tokenised as text (`medqa.models.generation.chat_input_ids`), so typed special tokens cannot forge a turn.
Listens on 127.0.0.1 unless `--host` says otherwise; `--share` (a public Gradio link) is opt-in, and a login is read
from `MEDQA_SERVE_AUTH` or `--auth-file` (never from the command line, where `ps` would show it).
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from medqa.errors import ExitCode
from medqa.eval.decoding import add_decoding_args, decoding_settings
from medqa.models.generation import GenerationSettings
from medqa.runs.argtypes import at_least
from medqa.text.think import THINK_CLOSE, THINK_OPEN

DISCLAIMER = (
    "**医疗免责声明 / Medical disclaimer**：本演示由AI模型生成，仅供参考，不能替代执业医生的诊断和治疗；"
    "如有紧急情况请立即拨打120或前往最近的急诊。 This demo is AI-generated and for information only — it is "
    "not a diagnosis or a substitute for a licensed physician. In an emergency call 120 / 911 or go to the "
    "nearest emergency department."
)
EMERGENCY_TEXT = (
    "⚠️ 您描述的症状可能危及生命：请立即拨打 120 或前往最近的急诊，不要等待在线回答。 "
    "Your symptoms may be an emergency: call 120 / 911 or go to the nearest emergency department now."
)
CRISIS_TEXT = (
    " 如有自伤或轻生的想法，请立即拨打心理援助热线 400-161-9995 或 12356。 "
    "If you are thinking about harming yourself, call or text 988 (US) or your local crisis line now."
)
THINK_TITLE = "思考过程 / Reasoning"
DEFAULT_MAX_INPUT_CHARS = 2000
DEFAULT_CONTEXT_TOKENS = 4096  # prompt + new tokens; older turns are dropped to fit
MAX_HISTORY_MESSAGES = 200  # read at most this many of the latest messages
DEFAULT_MAX_HISTORY_CHARS = 60_000  # a longer conversation is refused before it is read (clear it to go on)
DEFAULT_MAX_SECONDS = 300.0
AUTH_ENV = "MEDQA_SERVE_AUTH"


@dataclass(frozen=True)
class StreamView:
    think: str | None  # reasoning so far (None: the output has no think block)
    answer: str  # answer so far
    think_done: bool  # the think block is closed


def stream_view(text: str) -> StreamView:
    """Split a possibly unfinished generation into reasoning and answer for display."""
    stripped = text.lstrip()
    if not stripped.startswith(THINK_OPEN):
        # Thinking off (the prompt ends with an empty think block) or a model that skipped it: everything is
        # answer. A stray `</think>` is dropped.
        return StreamView(None, stripped.replace(THINK_CLOSE, "").strip(), True)
    body = stripped[len(THINK_OPEN):]
    if THINK_CLOSE not in body:
        return StreamView(body.strip(), "", False)
    think, answer = body.split(THINK_CLOSE, 1)
    return StreamView(think.strip(), answer.strip(), True)


def message_text(content) -> str | None:
    """The text of a chat message in any shape Gradio sends; None when it carries no text (a file)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        if content.get("type", "text") == "text" and isinstance(content.get("text"), str):
            return content["text"]
        return None  # a file, image or component: ignored
    if isinstance(content, (list, tuple)):
        parts = [message_text(part) for part in content]
        texts = [t for t in parts if t]
        return "\n".join(texts) if texts else None
    return None


def history_chars(history: Sequence) -> int:
    """Characters of text in a conversation, every message and part counted, without building any text."""
    return sum(_content_chars(m.get("content")) for m in history if isinstance(m, dict))


def _content_chars(content) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, dict):
        text = content.get("text")
        return len(text) if isinstance(text, str) else 0
    if isinstance(content, (list, tuple)):
        return sum(_content_chars(part) for part in content)
    return 0


def history_chat(history: Sequence, max_messages: int = MAX_HISTORY_MESSAGES, max_chars: int | None = None
                 ) -> list[dict[str, str]]:
    """Earlier user and assistant turns as plain {role, content} messages: text only, reasoning bubbles and any
    other role (a client's system message) left out, the latest `max_messages` messages and at most `max_chars`
    characters (the oldest go first)."""
    chat: list[dict[str, str]] = []
    for m in list(history)[-max_messages:]:
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant") or (m.get("metadata") or {}).get("title"):
            continue
        text = message_text(m.get("content"))
        if text:
            chat.append({"role": m["role"], "content": text})
    if max_chars is not None:
        total, keep = 0, len(chat)
        while keep > 0 and total + len(chat[keep - 1]["content"]) <= max_chars:
            keep -= 1
            total += len(chat[keep]["content"])
        chat = chat[keep:]
    return chat


def conversation_messages(tokenizer, history: Sequence, question: str, *, system: str | None, budget: int,
                          enable_thinking: bool = True) -> list[dict[str, str]]:
    """The chat the model is given: the operator's system prompt (if any) first, then the latest user and assistant
    turns of `history` that fit `budget` tokens, then `question`.

    A system message sent by the client is dropped, never used in place of the operator's: the chat window never
    sends one (only a hand-made API call does), and what the model is told to be is the operator's decision. A
    user who wants to add context can say it in a user turn, where it is seen as the user's words."""
    # A cheap character cap first (a token spans a few characters at most: 8 per token is generous), so a huge
    # history is never tokenised whole; the token budget then decides exactly.
    chat = history_chat(history, max_chars=budget * 8)
    head = [{"role": "system", "content": system}] if system else []
    return fit_to_budget(tokenizer, [*head, *chat, {"role": "user", "content": question}], budget, enable_thinking)


def fit_to_budget(tokenizer, chat: list[dict[str, str]], budget: int, enable_thinking: bool = True
                  ) -> list[dict[str, str]]:
    """Drop the oldest turns (never the system prompt or the last user turn) until the prompt fits `budget`."""
    from medqa.models.generation import chat_input_ids

    system = [m for m in chat[:1] if m["role"] == "system"]
    turns = chat[len(system):]
    while len(turns) > 1:
        if len(chat_input_ids(tokenizer, system + turns, enable_thinking)) <= budget:
            break
        turns = turns[1:]
        while len(turns) > 1 and turns[0]["role"] != "user":  # a turn starts with the user
            turns = turns[1:]
    return system + turns


def emergency_banner(question: str) -> str | None:
    """Banner text for a red-flag question, None otherwise."""
    from medqa import safety

    flags = safety.red_flags(question)
    if not flags and not safety.suicide_risk(question):
        return None
    text = EMERGENCY_TEXT
    if "suicidal" in flags or safety.suicide_risk(question):
        text += CRISIS_TEXT
    return text


def render_messages(view: StreamView) -> list[dict]:
    """Assistant messages for the chatbot: a collapsible reasoning message, then the answer."""
    msgs: list[dict] = []
    if view.think is not None:
        msgs.append({"role": "assistant", "content": view.think or "…",
                     "metadata": {"title": THINK_TITLE, "status": "done" if view.think_done else "pending"}})
    if view.answer or view.think is None:
        msgs.append({"role": "assistant", "content": view.answer or "…"})
    return msgs


def conversation_banner(user_turns: Sequence[str]) -> str | None:
    """The banner for a conversation: red flags in any of the user's turns (the latest first)."""
    for text in reversed(user_turns):
        banner = emergency_banner(text)
        if banner:
            return banner
    return None


def chat_handler(model, tokenizer, *, settings: GenerationSettings | None = None,
                 max_input_chars: int = DEFAULT_MAX_INPUT_CHARS, context_tokens: int = DEFAULT_CONTEXT_TOKENS,
                 max_seconds: float = DEFAULT_MAX_SECONDS, system: str | None = None,
                 max_history_chars: int = DEFAULT_MAX_HISTORY_CHARS):
    """The Gradio event handler: (question, history, enable_thinking) -> stream of (history, banner, textbox).

    `settings` is the decoding (default `GenerationSettings()`: greedy, 512 new tokens); the user's think checkbox
    sets its `enable_thinking` for each answer.
    A conversation over `max_history_chars` characters is refused before any of it is read (scanned for red
    flags, templated or tokenised): the user clears it to go on."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from medqa.models.generation import stream_generate

    settings = GenerationSettings() if settings is None else settings
    budget = max(256, context_tokens - settings.max_new_tokens)

    def respond(question, history: list, enable_thinking: bool) -> Iterator:
        history = list(history or [])
        size = history_chars(history)
        if size > max_history_chars:
            gr.Warning(f"对话过长（{size} 字符，上限 {max_history_chars}），请点击“清空”后继续 / conversation too "
                       f"long ({size} characters, limit {max_history_chars}): clear it to continue")
            yield history, gr.update(), question if isinstance(question, str) else ""
            return
        question = (message_text(question) or "").strip()
        if not question:
            yield history, gr.update(), ""
            return
        if len(question) > max_input_chars:
            gr.Warning(f"问题过长（{len(question)} 字符，上限 {max_input_chars}）/ question too long")
            yield history, gr.update(), question
            return
        chat = conversation_messages(tokenizer, history, question, system=system, budget=budget,
                                     enable_thinking=bool(enable_thinking))
        earlier = [message_text(m.get("content")) or "" for m in history[-MAX_HISTORY_MESSAGES:]
                   if isinstance(m, dict) and m.get("role") == "user"]
        banner = conversation_banner([*earlier, question])
        banner_update = gr.update(value=f"<div class='medqa-emergency' role='alert'>{html.escape(banner)}</div>"
                                  if banner else "", visible=bool(banner))
        history.append({"role": "user", "content": question})
        yield history, banner_update, ""
        answer_settings = dataclasses.replace(settings, enable_thinking=bool(enable_thinking))
        stop = threading.Event()
        text, note = "", ""
        started = time.monotonic()
        try:
            for text in stream_generate(model, tokenizer, chat, answer_settings, stop_event=stop):
                if time.monotonic() - started > max_seconds:
                    note = f"（已超时停止 / stopped after {max_seconds:g} s）"
                    break
                yield history + render_messages(stream_view(text)), gr.update(), ""
        finally:
            stop.set()  # the client went away, timed out or generation ended: the worker stops at the next token
        final = stream_view(text)
        answer = (final.answer + note) if final.answer else (note or "（无回答 / no answer）")
        yield history + render_messages(StreamView(final.think, answer, True)), gr.update(), ""

    return respond


def build_app(model, tokenizer, *, settings: GenerationSettings | None = None,
              max_input_chars: int = DEFAULT_MAX_INPUT_CHARS, title: str = "medqa — medical QA demo",
              context_tokens: int = DEFAULT_CONTEXT_TOKENS, max_seconds: float = DEFAULT_MAX_SECONDS,
              system: str | None = None, max_history_chars: int = DEFAULT_MAX_HISTORY_CHARS):
    import gradio as gr

    settings = GenerationSettings() if settings is None else settings
    respond = chat_handler(model, tokenizer, settings=settings, max_input_chars=max_input_chars,
                           context_tokens=context_tokens, max_seconds=max_seconds, system=system,
                           max_history_chars=max_history_chars)

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        gr.Markdown(f"## {html.escape(title)}")
        gr.Markdown(DISCLAIMER, elem_id="medqa-disclaimer")
        banner = gr.HTML("", visible=False, elem_id="medqa-emergency")
        chatbot = gr.Chatbot(elem_id="medqa-chat", height=460, label="对话 / Chat", feedback_options=None,
                             allow_tags=False)
        with gr.Row():
            box = gr.Textbox(placeholder=f"请输入您的问题（最多 {max_input_chars} 字） / Ask a medical question",
                             max_length=max_input_chars, lines=2, scale=5, show_label=False, elem_id="medqa-question")
            send = gr.Button("发送 / Send", variant="primary", scale=1, elem_id="medqa-send")
        think = gr.Checkbox(value=settings.enable_thinking, label="显示思考过程 / think before answering", elem_id="medqa-think")
        clear = gr.Button("清空 / Clear", size="sm")
        for trigger in (send.click, box.submit):
            trigger(respond, [box, chatbot, think], [chatbot, banner, box], concurrency_limit=1)
        clear.click(lambda: ([], gr.update(value="", visible=False)), None, [chatbot, banner])
    return app


CSS = ".medqa-emergency{background:#c0392b;color:#fff;padding:12px 16px;border-radius:6px;font-weight:600}"


def launch(app, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           auth: tuple[str, str] | None = None, block: bool = True):
    return app.queue().launch(server_name=host, server_port=port, share=share, auth=auth, css=CSS,
                              prevent_thread_lock=not block, show_error=True, quiet=not block)


def read_auth(auth_file: str | None, env: dict | None = None) -> tuple[str, str] | None:
    """(user, password) from `auth_file` or the MEDQA_SERVE_AUTH variable (USER:PASS), or None; ValueError if bad."""
    env = os.environ if env is None else env
    if auth_file:
        try:
            raw, where = Path(auth_file).read_text(encoding="utf-8").strip(), auth_file
        except OSError as e:
            raise ValueError(f"--auth-file {auth_file}: {e.strerror or e}") from None
    elif env.get(AUTH_ENV):
        raw, where = env[AUTH_ENV].strip(), AUTH_ENV
    else:
        return None
    user, sep, password = raw.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"{where}: expected USER:PASS")
    return user, password


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="medqa serve", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="base or merged model dir, or an adapter dir alone")
    p.add_argument("--adapter", help="PEFT adapter dir applied on top of --model")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s, local only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (explicit opt-in)")
    p.add_argument("--auth-file", help=f"file holding USER:PASS for a basic login (or set {AUTH_ENV}=USER:PASS)")
    p.add_argument("--auth", help=argparse.SUPPRESS)  # refused: a password on the command line shows in `ps`
    p.add_argument("--max-input-chars", type=at_least(int, 1), default=DEFAULT_MAX_INPUT_CHARS)
    p.add_argument("--max-history-chars", type=at_least(int, 1), default=DEFAULT_MAX_HISTORY_CHARS,
                   help="a longer conversation is refused (the user clears it to go on) (default: %(default)s)")
    p.add_argument("--context-tokens", type=at_least(int, 1), default=DEFAULT_CONTEXT_TOKENS,
                   help="prompt + answer token budget; the oldest turns are dropped to fit (default: %(default)s)")
    p.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                   help="stop an answer after this many seconds (default: %(default)s)")
    p.add_argument("--system", help="system prompt kept at the top of every conversation")
    p.add_argument("--device", help="cpu, cuda … (default: cuda when available)")
    add_decoding_args(p, samples=False)  # the page's think checkbox starts as --no-think / the run's decoding says
    args = p.parse_args(argv)
    if args.auth is not None:
        p.error(f"--auth on the command line is visible to every user in `ps`: put USER:PASS in a file for "
                f"--auth-file, or in the environment variable {AUTH_ENV}")
    try:
        auth = read_auth(args.auth_file)
        settings = decoding_settings(args)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    if args.host not in ("127.0.0.1", "localhost", "::1") and not auth:
        print(f"warning: listening on {args.host} without --auth: anyone on the network can use the model",
              file=sys.stderr)
    from medqa.models.generation import load_model

    try:
        model, tokenizer = load_model(args.model, args.adapter, device=args.device)
    except (OSError, ValueError) as e:
        print(f"medqa serve: error: {e}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    app = build_app(model, tokenizer, settings=settings, max_input_chars=args.max_input_chars,
                    context_tokens=args.context_tokens, max_seconds=args.max_seconds, system=args.system,
                    max_history_chars=args.max_history_chars)
    launch(app, host=args.host, port=args.port, share=args.share, auth=auth)
    return ExitCode.OK


if __name__ == "__main__":
    raise SystemExit(main())
