"""Chat families (medqa/models/chat.py): Qwen3 and ChatML chats render with the right system prompt, thinking switch and
stop ids, the assistant-only loss has a generation-marked template, and the `<think>` format survives each
tokenizer so the rule reward and the eval read it. Tokenizers only: the tiny Qwen3's (fast) and the real base's
(SmolLM2, marked real)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest

from medqa.data.schema import DEFAULT_INSTRUCTION
from medqa.models.chat import (
    THINK_OFF,
    chat_family,
    chatml_template,
    render_prompt,
    stop_ids,
    training_template,
)
from medqa.text.think import join_think, split_think

# SmolLM2-135M-Instruct's own template, as its GGUF ships it (real_base.json keeps it as source_chat_template).
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + "
    "message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
EN, ZH = "I have had a dry cough for three weeks. What could it be?", "我咳嗽三周了，这可能是什么？"
THINK_ANSWERS = [join_think("A cough for three weeks after a cold is often post-viral; asthma and reflux are other "
                            "causes.", "It may be a post-viral cough. Please see a doctor if it lasts longer."),
                 join_think("咳嗽三周，常见于感冒后咳嗽，也要考虑哮喘和反流。", "可能是感染后咳嗽。如果持续更久，请就医检查。")]


@pytest.fixture(scope="module")
def qwen3_tok():
    """The tiny Qwen3 tokenizer: Qwen3's special tokens and chat template (TRL's qwen3.jinja, Qwen3-1.7B's)."""
    from medqa.models.tiny import build_tokenizer, corpus_texts

    return build_tokenizer(corpus_texts())


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_the_family_is_read_from_the_template():
    from importlib import resources

    from medqa.models.tiny import qwen3_chat_template

    qwen3_training = (resources.files("trl") / "chat_templates" / "qwen3_training.jinja").read_text(encoding="utf-8")
    llama3 = "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>{{ m.content }}<|eot_id|>{% endfor %}"
    got = {name: chat_family(t) for name, t in [("qwen3", qwen3_chat_template()), ("qwen3_training", qwen3_training),
                                                ("medqa_chatml", chatml_template()), ("smollm2", SMOLLM2_TEMPLATE),
                                                ("llama3", llama3)]}
    assert {k: (f.name, f.thinking_switch, f.project_system, f.generation_marked) for k, f in got.items()} == {
        "qwen3": ("qwen3", True, False, False), "qwen3_training": ("qwen3", True, False, True),
        "medqa_chatml": ("chatml", True, True, True), "smollm2": ("chatml", False, True, False),
        "llama3": ("other", False, True, False)}


def test_qwen3_keeps_its_own_rules(qwen3_tok):
    """No system turn is added; thinking off is the template's own empty think block."""
    on, off = render_prompt(qwen3_tok, _user(EN), True), render_prompt(qwen3_tok, _user(EN), False)
    assert on == f"<|im_start|>user\n{EN}<|im_end|>\n<|im_start|>assistant\n"
    assert off == on + THINK_OFF == qwen3_tok.apply_chat_template(_user(EN), tokenize=False, add_generation_prompt=True,
                                                                   enable_thinking=False)
    system = [{"role": "system", "content": "S"}, *_user(EN)]
    assert render_prompt(qwen3_tok, system, True).startswith("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n")


@pytest.mark.parametrize("template", ["smollm2", "medqa_chatml"])
def test_chatml_gets_the_project_system_prompt_and_thinking_off_prefills_the_empty_think_block(qwen3_tok, template):
    """SmolLM2's own template (no enable_thinking, a built-in system prompt) and medqa's ChatML template render the
    same prompts: the project's system prompt in the question's language, and the empty think block for thinking
    off (the template's switch, or appended)."""
    chat_template = SMOLLM2_TEMPLATE if template == "smollm2" else chatml_template()
    for question, lang in ((EN, "en"), (ZH, "zh")):
        on = render_prompt(qwen3_tok, _user(question), True, chat_template=chat_template)
        assert on == (f"<|im_start|>system\n{DEFAULT_INSTRUCTION[lang]}<|im_end|>\n<|im_start|>user\n{question}"
                      "<|im_end|>\n<|im_start|>assistant\n")
        assert render_prompt(qwen3_tok, _user(question), False, chat_template=chat_template) == on + THINK_OFF
    own = [{"role": "system", "content": "S"}, *_user(EN)]
    assert render_prompt(qwen3_tok, own, True, chat_template=chat_template) == (
        f"<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n{EN}<|im_end|>\n<|im_start|>assistant\n")


def test_model_inputs_render_through_the_family(qwen3_tok):
    """chat_input_ids (predict, eval, serve, PPO, GRPO) gives the ids of render_prompt's text."""
    from medqa.models.generation import build_prompt, chat_input_ids

    smol = copy.deepcopy(qwen3_tok)
    smol.chat_template = SMOLLM2_TEMPLATE
    for think in (True, False):
        text = build_prompt(smol, _user(ZH), think)
        assert "SmolLM" not in text and text == render_prompt(smol, _user(ZH), think)
        assert smol.decode(chat_input_ids(smol, _user(ZH), think)) == text


def test_sft_trains_chatml_on_a_generation_marked_template_that_ends_on_im_end(qwen3_tok):
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    tok = copy.deepcopy(qwen3_tok)
    assert training_template(tok) is None  # Qwen3: TRL swaps in its own training copy
    tok.chat_template = SMOLLM2_TEMPLATE
    assert training_template(tok) == chatml_template()
    tok.chat_template = chatml_template()
    assert training_template(tok) is None and is_chat_template_stop_token_trained(tok)
    chat = [{"role": "system", "content": "S"}, *_user(EN), {"role": "assistant", "content": THINK_ANSWERS[0]}]
    out = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(masked) == THINK_ANSWERS[0] + "<|im_end|>"


def test_stop_ids_are_the_configs_eos_the_tokenizers_and_im_end(qwen3_tok):
    end, text_end = (qwen3_tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>"))
    qwen3_generation = SimpleNamespace(eos_token_id=[end, text_end])  # Qwen3-1.7B's generation config: both
    assert stop_ids(qwen3_tok, SimpleNamespace(eos_token_id=end), qwen3_generation) == sorted({end, text_end})
    assert end in stop_ids(qwen3_tok, SimpleNamespace(eos_token_id=None))


@pytest.mark.parametrize("answer", THINK_ANSWERS, ids=["en", "zh"])
def test_the_think_format_survives_the_qwen3_tokenizer_and_the_rules_read_it(qwen3_tok, answer):
    _check_think_round_trip(qwen3_tok, answer)


def _check_think_round_trip(tok, answer: str) -> None:
    from medqa.rewards.rules import answer_present, think_present

    ids = tok(answer + "<|im_end|>", add_special_tokens=False).input_ids
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert decoded == answer
    split = split_think(decoded)
    assert split.well_formed and split.answer == answer.split("</think>\n", 1)[1]
    assert think_present("q", decoded).score == 0.2 and answer_present("q", decoded).score == 0.1


# ---------------------------------------------------------------- the real base's tokenizer


@pytest.fixture(scope="module")
def smollm2_tok(real_base_dir):
    from medqa.models.loading import load_tokenizer

    return load_tokenizer(str(real_base_dir))


@pytest.mark.real
@pytest.mark.slow
def test_smollm2_is_chatml_with_the_project_system_prompt_thinking_switch_and_stop_ids(smollm2_tok, real_base_dir):
    import json

    source = json.loads((real_base_dir / "real_base.json").read_text(encoding="utf-8"))["source_chat_template"]
    assert source == SMOLLM2_TEMPLATE
    assert chat_family(smollm2_tok.chat_template).name == "chatml" and training_template(smollm2_tok) is None
    assert (smollm2_tok.eos_token, smollm2_tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert stop_ids(smollm2_tok) == [smollm2_tok.convert_tokens_to_ids("<|im_end|>")]
    for question, lang in ((EN, "en"), (ZH, "zh")):
        expected = (f"<|im_start|>system\n{DEFAULT_INSTRUCTION[lang]}<|im_end|>\n<|im_start|>user\n{question}"
                    "<|im_end|>\n<|im_start|>assistant\n")
        for template in (None, source):  # the converted template and the GGUF's own agree
            assert render_prompt(smollm2_tok, _user(question), True, chat_template=template) == expected
            assert render_prompt(smollm2_tok, _user(question), False, chat_template=template) == expected + THINK_OFF


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("answer", THINK_ANSWERS, ids=["en", "zh"])
def test_the_think_format_survives_smollm2s_byte_level_tokens_and_the_rules_read_it(smollm2_tok, answer):
    assert "<think>" not in smollm2_tok.get_vocab()  # plain text pieces, no think tokens
    _check_think_round_trip(smollm2_tok, answer)
