"""The Gradio demo on loopback, driven in headless Chromium (Debian's package; Playwright's download is blocked).

Skips only when chromium is missing outside CI; in CI (CI=true) a missing browser fails the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import time

import pytest

from conftest import THINK_PAIRS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tiny_think_model_dir):
    from medqa.apps.serve import build_app, launch
    from medqa.models.generation import GenerationSettings, load_model

    model, tok = load_model(str(tiny_think_model_dir), device="cpu")
    # The tiny model writes a whole answer in a few ms, faster than the page repaints, so a loaded machine can
    # show it in one update. 40 ms per decoding step (a real model's pace) makes the streaming observable.
    model.register_forward_hook(lambda *_: time.sleep(0.04))
    # Every prompt the model is given (the prefill step), decoded: what the conversation looked like to the model.
    prompts: list[str] = []

    def record(_module, _args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:
            prompts.append(tok.decode(ids[0]))

    model.register_forward_pre_hook(record, with_kwargs=True)
    app = build_app(model, tok, settings=GenerationSettings(max_new_tokens=64), max_input_chars=200)
    port = _free_port()
    launch(app, host="127.0.0.1", port=port, block=False)
    app_prompts.clear()
    app_prompts.extend([prompts])
    yield f"http://127.0.0.1:{port}/"
    app.close()


app_prompts: list[list[str]] = []  # [the fixture's list of prompts]


def test_chat_streams_think_and_answer_with_disclaimer_and_banner(app_url):
    chromium = _chromium()
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the browser test: install Debian's chromium (scripts/ensure_chromium.sh)")
        pytest.skip("chromium not installed (run scripts/ensure_chromium.sh)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(app_url, wait_until="domcontentloaded")
            disclaimer = page.locator("#medqa-disclaimer")
            expect(disclaimer).to_contain_text("Medical disclaimer", timeout=60_000)
            expect(disclaimer).to_be_visible()
            banner = page.locator("#medqa-emergency")
            chat = page.locator("#medqa-chat")
            box = page.locator("#medqa-question textarea")
            chat.wait_for(state="attached", timeout=60_000)  # the page renders in parts: observe it once it is there

            # Record every distinct text the chat shows while the answer streams in.
            page.evaluate("""() => {
                window.__states = [];
                const el = document.querySelector('#medqa-chat');
                new MutationObserver(() => {
                    const t = el.innerText;
                    if (window.__states[window.__states.length - 1] !== t) window.__states.push(t);
                }).observe(el, {subtree: true, childList: true, characterData: true});
            }""")

            # 1. An ordinary question: streamed answer, reasoning folded apart, no emergency banner.
            q, expected = THINK_PAIRS[1]
            think, answer = expected.split("</think>")
            box.fill(q)
            page.locator("#medqa-send").click()
            expect(chat).to_contain_text(answer.strip(), timeout=60_000)
            expect(banner).to_be_hidden()
            states = page.evaluate("window.__states")
            partial = [s for s in states if "多休息" in s and answer.strip() not in s]
            assert partial, f"the answer did not stream (states seen: {len(states)})"
            title = chat.get_by_text("思考过程 / Reasoning").first
            expect(title).to_be_visible()
            think_text = think.replace("<think>", "").strip()
            # The answer bubble does not contain the reasoning, and the reasoning is folded until opened.
            answer_bubble = chat.locator(".message", has_text=answer.strip()).last
            assert think_text not in answer_bubble.inner_text()
            expect(chat.get_by_text(think_text)).to_be_hidden()
            title.click()
            expect(chat.get_by_text(think_text)).to_be_visible()
            expect(disclaimer).to_be_visible()

            # 2. A red-flag question raises the emergency banner.
            q1, a1 = THINK_PAIRS[1][0], answer.strip()
            q, expected = THINK_PAIRS[0]
            box.fill(q)
            page.locator("#medqa-send").click()
            expect(banner).to_be_visible(timeout=60_000)
            expect(banner).to_contain_text("120")
            expect(chat).to_contain_text(expected.split("</think>")[1].strip(), timeout=60_000)
            expect(disclaimer).to_be_visible()
            # The second answer was generated with the first turn in the prompt (Gradio sent it back as a list of
            # message parts): question and answer of turn 1 come before the question of turn 2.
            prompt = app_prompts[0][-1]
            assert q in prompt and q1 in prompt and a1 in prompt, prompt
            assert prompt.index(q1) < prompt.index(a1) < prompt.index(q)
        finally:
            browser.close()
