"""`medqa serve`: Gradio chat demo of a medqa model.

Streams tokens as they are generated, shows the `<think>` chain in a collapsible block apart from the answer,
keeps a medical disclaimer on screen at all times, and raises an emergency banner when the question shows
red-flag symptoms (`medqa.safety.red_flags`, the same check the reward and the metrics use). Listens on
127.0.0.1 unless `--host` says otherwise; `--share` (a public Gradio link) and `--auth user:pass` are opt-in.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from medqa.think import THINK_CLOSE, THINK_OPEN

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


@dataclass(frozen=True)
class StreamView:
    think: str | None  # reasoning so far (None: the output has no think block)
    answer: str  # answer so far
    think_done: bool  # the think block is closed


def stream_view(text: str) -> StreamView:
    """Split a possibly unfinished generation into reasoning and answer for display."""
    stripped = text.lstrip()
    if not stripped.startswith(THINK_OPEN):
        # Qwen3 with thinking disabled (or a model that skipped it): everything is answer. A stray
        # `</think>` (template-injected empty block) is dropped.
        return StreamView(None, stripped.replace(THINK_CLOSE, "").strip(), True)
    body = stripped[len(THINK_OPEN):]
    if THINK_CLOSE not in body:
        return StreamView(body.strip(), "", False)
    think, answer = body.split(THINK_CLOSE, 1)
    return StreamView(think.strip(), answer.strip(), True)


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


def chat_handler(model, tokenizer, *, max_new_tokens: int = 512, max_input_chars: int = DEFAULT_MAX_INPUT_CHARS):
    """The Gradio event handler: (question, history, enable_thinking) -> stream of (history, banner, textbox)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    from medqa.generation import GenerationSettings, stream_generate

    def respond(question: str, history: list, enable_thinking: bool) -> Iterator:
        question = (question or "").strip()
        history = list(history or [])
        if not question:
            yield history, gr.update(), ""
            return
        if len(question) > max_input_chars:
            gr.Warning(f"问题过长（{len(question)} 字符，上限 {max_input_chars}）/ question too long")
            yield history, gr.update(), question
            return
        banner = emergency_banner(question)
        banner_update = gr.update(value=f"<div class='medqa-emergency' role='alert'>{html.escape(banner)}</div>"
                                  if banner else "", visible=bool(banner))
        chat = [{"role": m["role"], "content": m["content"]} for m in history
                if m.get("role") in ("user", "assistant") and not (m.get("metadata") or {}).get("title")
                and isinstance(m.get("content"), str)]
        chat.append({"role": "user", "content": question})
        history.append({"role": "user", "content": question})
        yield history, banner_update, ""
        settings = GenerationSettings(max_new_tokens=max_new_tokens, enable_thinking=bool(enable_thinking))
        stop = threading.Event()
        text = ""
        try:
            for text in stream_generate(model, tokenizer, chat, settings, stop_event=stop):
                yield history + render_messages(stream_view(text)), gr.update(), ""
        finally:
            stop.set()  # the client went away or generation ended: stop the worker thread at the next token
        final = stream_view(text)
        yield history + render_messages(StreamView(final.think, final.answer or "（无回答 / no answer）", True)), \
            gr.update(), ""

    return respond


def build_app(model, tokenizer, *, max_new_tokens: int = 512, max_input_chars: int = DEFAULT_MAX_INPUT_CHARS,
              title: str = "medqa — medical QA demo"):
    import gradio as gr

    respond = chat_handler(model, tokenizer, max_new_tokens=max_new_tokens, max_input_chars=max_input_chars)

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
        think = gr.Checkbox(value=True, label="显示思考过程 / think before answering", elem_id="medqa-think")
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="medqa serve", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="base or merged model dir, or an adapter dir alone")
    p.add_argument("--adapter", help="PEFT adapter dir applied on top of --model")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s, local only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link (explicit opt-in)")
    p.add_argument("--auth", help="USER:PASS basic login")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--max-input-chars", type=int, default=DEFAULT_MAX_INPUT_CHARS)
    p.add_argument("--device", help="cpu, cuda … (default: cuda when available)")
    args = p.parse_args(argv)
    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            p.error("--auth must be USER:PASS")
        auth = (user, password)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not auth:
        print(f"warning: listening on {args.host} without --auth: anyone on the network can use the model",
              file=sys.stderr)
    from medqa.generation import load_model

    try:
        model, tokenizer = load_model(args.model, args.adapter, device=args.device)
    except (OSError, ValueError) as e:
        print(f"medqa serve: error: {e}", file=sys.stderr)
        return 2
    app = build_app(model, tokenizer, max_new_tokens=args.max_new_tokens, max_input_chars=args.max_input_chars)
    launch(app, host=args.host, port=args.port, share=args.share, auth=auth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
