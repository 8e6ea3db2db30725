"""The demo's pieces without a browser: think/answer splitting of a growing stream, the emergency banner,
and the chat handler streaming through the real model."""

from __future__ import annotations

import pytest

from conftest import THINK_PAIRS
from medqa.serve import StreamView, emergency_banner, render_messages, stream_view


@pytest.mark.parametrize("text, view", [
    ("<think>\n正在分", StreamView("正在分", "", False)),
    ("<think>\n分析\n</think>\n请立", StreamView("分析", "请立", True)),
    ("  <think>a</think>b", StreamView("a", "b", True)),
    ("直接回答", StreamView(None, "直接回答", True)),
    ("</think>\n\n答案", StreamView(None, "答案", True)),  # thinking disabled: template's empty block
])
def test_stream_view(text, view):
    assert stream_view(text) == view


def test_render_messages_folds_reasoning():
    msgs = render_messages(StreamView("分析", "回答", True))
    assert msgs[0]["metadata"]["title"] and msgs[0]["metadata"]["status"] == "done"
    assert msgs[0]["content"] == "分析" and msgs[1] == {"role": "assistant", "content": "回答"}
    assert render_messages(StreamView("分析中", "", False))[0]["metadata"]["status"] == "pending"
    assert len(render_messages(StreamView("分析中", "", False))) == 1


@pytest.mark.parametrize("question, banner", [
    ("我爸爸突然口角歪斜，说话不清楚", True),
    ("I have crushing chest pain and I'm sweating", True),
    ("我不想活了，活着没意思", True),
    ("感冒流鼻涕三天了", False),
    ("What is a normal blood pressure?", False),
])
def test_emergency_banner(question, banner):
    text = emergency_banner(question)
    assert (text is not None) == banner
    if banner and "不想活" in question:
        assert "400-161-9995" in text


def test_stream_generate_grows(tiny_think_model_dir):
    from medqa.generation import GenerationSettings, load_model, stream_generate

    model, tok = load_model(str(tiny_think_model_dir), device="cpu")
    q, expected = THINK_PAIRS[0]
    states = list(stream_generate(model, tok, [{"role": "user", "content": q}], GenerationSettings(max_new_tokens=64)))
    assert len(states) >= 5  # token by token, not one final chunk
    assert all(b.startswith(a) for a, b in zip(states, states[1:], strict=False))
    assert states[-1].strip() == expected


def test_chat_handler_streams_banner_and_refuses_long_input(tiny_think_model_dir):
    from medqa.generation import load_model
    from medqa.serve import chat_handler

    model, tok = load_model(str(tiny_think_model_dir), device="cpu")
    respond = chat_handler(model, tok, max_new_tokens=64, max_input_chars=50)
    # Too long: nothing generated, history untouched, the text stays in the box for editing.
    (history, _, box), = list(respond("头" * 51, [], True))
    assert history == [] and box == "头" * 51
    q, expected = THINK_PAIRS[0]
    steps = list(respond(q, [], True))
    history, banner, box = steps[0]
    assert history == [{"role": "user", "content": q}] and box == ""
    assert banner["visible"] is True and "120" in banner["value"]  # red-flag question: banner before the answer
    assert len(steps) > 5  # streamed
    final = steps[-1][0]
    think, answer = expected.split("</think>")
    assert final[1]["metadata"]["status"] == "done" and final[1]["content"] == think.replace("<think>", "").strip()
    assert final[2] == {"role": "assistant", "content": answer.strip()}
    _, banner, _ = list(respond(THINK_PAIRS[1][0], final, True))[0]
    assert banner["visible"] is False  # an ordinary follow-up clears the banner
