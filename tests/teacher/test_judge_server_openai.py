"""The offline judge speaks the chat-completions protocol as the official `openai` SDK uses it: content parts,
`n` choices, `stream=True` as server-sent events, and 4xx (not 500) for what it does not support."""

from __future__ import annotations

import json

import pytest

from medqa.teacher.rubric import SYSTEM_PROMPT, user_prompt
from medqa.teacher.server import RunningServer, ServerOptions

openai = pytest.importorskip("openai")

Q, A = "头痛三天了怎么办？", "<think>考虑紧张性头痛。</think>多休息，如果加重请及时就医。"


@pytest.fixture(scope="module")
def client():
    with RunningServer(ServerOptions(port=0)) as srv:
        yield openai.OpenAI(base_url=srv.url + "/v1", api_key="sk-none", max_retries=0, timeout=30)


def _messages(parts: bool = False) -> list[dict]:
    text = user_prompt(Q, A)
    content = [{"type": "text", "text": text[:20]}, {"type": "text", "text": text[20:]}] if parts else text
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]


def test_content_parts_and_n_choices(client):
    plain = client.chat.completions.create(model="any", messages=_messages())
    parts = client.chat.completions.create(model="any", messages=_messages(parts=True), n=2)
    assert len(parts.choices) == 2 and [c.index for c in parts.choices] == [0, 1]
    assert parts.choices[0].message.content == plain.choices[0].message.content
    assert set(json.loads(plain.choices[0].message.content)) >= {"safety", "reasoning", "completeness", "empathy"}
    assert plain.system_fingerprint == "medqa-offline-heuristic" and plain.model == "medqa-offline-judge-v1"


def test_stream_yields_chunks_that_add_up_to_the_reply(client):
    whole = client.chat.completions.create(model="any", messages=_messages()).choices[0].message.content
    stream = client.chat.completions.create(model="any", messages=_messages(), stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) >= 3 and text == whole
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.parametrize("extra, messages", [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}, None),
    ({"n": 99}, None),
    ({}, [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]),
])
def test_unsupported_requests_get_a_4xx(client, extra, messages):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="any", messages=messages or _messages(), **extra)
    assert e.value.status_code == 400
