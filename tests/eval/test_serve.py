"""The demo's pieces without a browser: think/answer splitting of a growing stream, the emergency banner,
and the chat handler streaming through the real model."""

from __future__ import annotations

import pytest

from conftest import THINK_PAIRS
from medqa.apps.serve import StreamView, emergency_banner, render_messages, stream_view
from medqa.models.generation import GenerationSettings


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
    from medqa.models.generation import load_model, stream_generate

    model, tok = load_model(str(tiny_think_model_dir), device="cpu")
    q, expected = THINK_PAIRS[0]
    states = list(stream_generate(model, tok, [{"role": "user", "content": q}], GenerationSettings(max_new_tokens=64)))
    assert len(states) >= 5  # token by token, not one final chunk
    assert all(b.startswith(a) for a, b in zip(states, states[1:], strict=False))
    assert states[-1].strip() == expected


def test_chat_handler_streams_banner_and_refuses_long_input(tiny_think_model_dir):
    from medqa.apps.serve import chat_handler
    from medqa.models.generation import load_model

    model, tok = load_model(str(tiny_think_model_dir), device="cpu")
    respond = chat_handler(model, tok, settings=GenerationSettings(max_new_tokens=64), max_input_chars=50)
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
    assert banner["visible"] is True  # the emergency is still in the conversation: the banner stays
    _, banner, _ = list(respond(THINK_PAIRS[1][0], [], True))[0]
    assert banner["visible"] is False  # a new conversation with an ordinary question has none


# ---------------------------------------------------------------- the conversation reaches the model

class _Recorder:
    """Wraps a tokenizer-bearing model call: records every prompt the handler sends to generation."""

    def __init__(self, monkeypatch):
        import medqa.models.generation as generation

        self.prompts: list[str] = []  # decoded
        self.ids: list[list[int]] = []
        real = generation.chat_input_ids

        def spy(tokenizer, messages, enable_thinking=True, **kwargs):
            ids = real(tokenizer, messages, enable_thinking, **kwargs)
            self.ids.append(ids)
            self.prompts.append(tokenizer.decode(ids))
            return ids

        monkeypatch.setattr(generation, "chat_input_ids", spy)


@pytest.fixture(scope="module")
def tiny_chat(tiny_think_model_dir):
    from medqa.models.generation import load_model

    return load_model(str(tiny_think_model_dir), device="cpu")


def test_gradio_message_parts_keep_earlier_turns_and_ignore_files(tiny_chat, monkeypatch):
    from medqa.apps.serve import chat_handler, message_text

    assert message_text([{"type": "text", "text": "我怀孕30周了"}, {"type": "file", "file": {"path": "/x.png"}}]) == "我怀孕30周了"
    assert message_text({"path": "/tmp/a.pdf", "mime_type": "application/pdf"}) is None
    model, tok = tiny_chat
    rec = _Recorder(monkeypatch)
    respond = chat_handler(model, tok, settings=GenerationSettings(max_new_tokens=8))
    history = [  # what Gradio 6 sends back: content as lists of parts, a file, a folded reasoning bubble
        {"role": "user", "content": [{"type": "text", "text": "我怀孕30周了"}]},
        {"role": "user", "content": [{"type": "file", "file": {"path": "/tmp/scan.png"}}]},
        {"role": "assistant", "content": [{"type": "text", "text": "分析"}], "metadata": {"title": "思考过程 / Reasoning"}},
        {"role": "assistant", "content": [{"type": "text", "text": "好的，请说说您的情况。"}]},
    ]
    list(respond([{"type": "text", "text": "头痛能吃布洛芬吗？"}], history, True))
    prompt = rec.prompts[-1]
    assert "我怀孕30周了" in prompt and "好的，请说说您的情况。" in prompt and "头痛能吃布洛芬吗？" in prompt
    assert "scan.png" not in prompt and prompt.index("我怀孕30周了") < prompt.index("头痛能吃布洛芬吗？")


def test_history_is_budgeted_oldest_first_and_the_system_prompt_kept(tiny_chat, monkeypatch):
    from medqa.apps.serve import chat_handler

    model, tok = tiny_chat
    rec = _Recorder(monkeypatch)
    respond = chat_handler(model, tok, settings=GenerationSettings(max_new_tokens=8), context_tokens=8 + 300, system="你是谨慎的医学助手。",
                           max_history_chars=500_000)
    # A huge old message (never tokenised whole), then 60 turns: more than the 300-token budget.
    history = [{"role": "user", "content": "x" * 400_000}, {"role": "assistant", "content": "收到。"}]
    for i in range(60):
        history += [{"role": "user", "content": f"第{i}轮问题：" + "症状描述" * 10},
                    {"role": "assistant", "content": f"第{i}轮回答。"}]
    list(respond("最后一个问题：头痛怎么办？", history, True))
    prompt = rec.prompts[-1]
    assert prompt.count("你是谨慎的医学助手。") == 1 and "最后一个问题" in prompt
    assert "第59轮问题" in prompt and "第59轮回答。" in prompt  # the latest turns are kept …
    assert "第0轮问题" not in prompt and "x" * 1000 not in prompt  # … the oldest dropped
    assert 200 < len(tok(prompt).input_ids) <= 300  # as much history as fits


def test_banner_for_red_flags_in_any_user_turn(tiny_chat):
    from medqa.apps.serve import chat_handler

    model, tok = tiny_chat
    respond = chat_handler(model, tok, settings=GenerationSettings(max_new_tokens=4))
    history = [{"role": "user", "content": [{"type": "text", "text": "我胸口剧烈疼痛，出冷汗，左臂发麻"}]},
               {"role": "assistant", "content": "请立即拨打120。"}]
    _, banner, _ = next(iter(respond("那我现在该吃什么药？", history, True)))
    assert banner["visible"] is True and "120" in banner["value"]


def test_generation_stops_on_disconnect_and_on_the_time_limit(tiny_chat):
    import threading
    import time

    from medqa.apps.serve import chat_handler

    model, tok = tiny_chat
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1) or time.sleep(0.05))
    try:
        before = threading.active_count()
        respond = chat_handler(model, tok, settings=GenerationSettings(max_new_tokens=200))
        gen = respond("头痛怎么办？", [], True)
        next(gen), next(gen)  # the user turn, then the first streamed token
        gen.close()  # what Gradio does when the browser goes away
        time.sleep(0.5)
        n = len(calls)
        time.sleep(0.5)
        assert len(calls) == n, "generation kept running after the client left"
        assert threading.active_count() <= before
        steps = list(chat_handler(model, tok, settings=GenerationSettings(max_new_tokens=200), max_seconds=0.3)("头痛怎么办？", [], True))
        assert "stopped after 0.3 s" in steps[-1][0][-1]["content"]
        time.sleep(0.5)
        n = len(calls)
        time.sleep(0.5)
        assert len(calls) == n, "generation kept running after the time limit"
    finally:
        hook.remove()


def test_auth_is_read_from_a_file_or_the_environment_never_argv(tmp_path, capsys):
    from medqa.apps.serve import main, read_auth

    f = tmp_path / "auth"
    f.write_text("alice:s3cret\n", encoding="utf-8")
    assert read_auth(str(f), env={}) == ("alice", "s3cret")
    assert read_auth(None, env={"MEDQA_SERVE_AUTH": "bob:pw"}) == ("bob", "pw")
    assert read_auth(None, env={}) is None
    with pytest.raises(ValueError, match="USER:PASS"):
        read_auth(None, env={"MEDQA_SERVE_AUTH": "nocolon"})
    with pytest.raises(SystemExit) as e:
        main(["--model", "m", "--auth", "alice:s3cret"])
    assert e.value.code == 2 and "ps" in capsys.readouterr().err


def test_serve_takes_the_decoding_flags_of_predict_and_a_runs_rollout_decoding(tmp_path, monkeypatch, capsys):
    """`medqa serve` answers with the decoding it is given — the same flags as predict and eval, or a PPO/GRPO run's
    own rollout decoding (`--decoding-from`); the page's think checkbox starts where that decoding says."""
    import medqa.apps.serve as serve
    import medqa.models.generation
    from medqa.models.generation import write_rollout_decoding

    seen = {}
    monkeypatch.setattr(medqa.models.generation, "load_model", lambda *a, **k: ("model", "tokenizer"))
    monkeypatch.setattr(serve, "build_app", lambda model, tok, **kw: seen.setdefault("settings", kw["settings"]))
    monkeypatch.setattr(serve, "launch", lambda *a, **k: None)

    assert serve.main(["--model", "m", "--repetition-penalty", "1.1", "--max-new-tokens", "300"]) == 0
    assert seen.pop("settings") == GenerationSettings(max_new_tokens=300, repetition_penalty=1.1, seed=42)

    run = tmp_path / "ppo"
    write_rollout_decoding(run, "ppo", {"temperature": 0.5, "top_p": 1.0, "top_k": 0, "max_new_tokens": 128,
                                        "enable_thinking": False, "repetition_penalty": 1.1})
    assert serve.main(["--model", "m", "--decoding-from", str(run)]) == 0
    settings = seen.pop("settings")
    assert (settings.do_sample, settings.temperature, settings.top_k, settings.max_new_tokens,
            settings.enable_thinking, settings.repetition_penalty) == (True, 0.5, 0, 128, False, 1.1)

    for argv, message in ((["--decoding-from", str(run), "--max-new-tokens", "64"], "drop --max-new-tokens"),
                          (["--temperature", "0.7"], "need --do-sample"),
                          (["--decoding-from", str(tmp_path)], "not a PPO/GRPO output folder")):
        with pytest.raises(SystemExit) as e:
            serve.main(["--model", "m", *argv])
        assert e.value.code == 2 and message in capsys.readouterr().err
