import hashlib

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from medqa.models.tiny import QWEN3_1_7B, TINY, build_tiny_model, qwen3_chat_template

CONVERSATION = [
    {"role": "system", "content": "你是一名专业、谨慎的医生助手。"},
    {"role": "user", "content": "孩子发烧38.5度，可以吃布洛芬吗？"},
    {"role": "assistant", "content": "<think>\n儿童发热，布洛芬适用于6个月以上。\n</think>\n可以在医生或药师指导下按体重服用。"},
]


def _digest(path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes() + (path / "tokenizer.json").read_bytes()).hexdigest()


def test_builds_deterministically(tmp_path, tiny_model_dir):
    again = build_tiny_model(tmp_path / "again", seed=0)
    assert _digest(again) == _digest(tiny_model_dir)


def test_reloads_with_auto_classes_and_mirrors_qwen3_shape(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = model.config
    assert type(model).__name__ == "Qwen3ForCausalLM" and cfg.model_type == "qwen3"
    assert cfg.tie_word_embeddings and cfg.rope_parameters["rope_theta"] == QWEN3_1_7B["rope_theta"]
    # Qwen3-1.7B's ratios: MLP 3x hidden, heads x head_dim == hidden, KV heads == heads / 2.
    assert cfg.intermediate_size == 3 * cfg.hidden_size
    assert cfg.num_attention_heads * cfg.head_dim == cfg.hidden_size
    assert cfg.num_key_value_heads * 2 == cfg.num_attention_heads
    assert cfg.hidden_size == TINY["hidden_size"] and sum(p.numel() for p in model.parameters()) < 2_000_000


def test_tokenizer_has_qwen3_special_tokens(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"):
        ids = tok(t, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, t
    special = set(tok.all_special_tokens)
    assert "<|im_end|>" in special and "<think>" not in special and "</think>" not in special
    # <think> survives skip_special_tokens decoding, as with the real Qwen3 tokenizer.
    ids = tok("<think>\n推理\n</think>\n回答<|im_end|>", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "<think>\n推理\n</think>\n回答"


def test_chat_template_round_trips_a_think_conversation(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.chat_template == qwen3_chat_template()
    text = tok.apply_chat_template(CONVERSATION, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n<think>\n儿童发热，布洛芬适用于6个月以上。\n</think>\n\n可以在医生或药师指导下按体重服用。<|im_end|>\n")
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    prompt = tok.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    no_think = tok.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert no_think.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_trl_recognises_the_template_for_assistant_only_loss(tiny_model_dir):
    from trl.chat_template_utils import get_training_chat_template

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    training = get_training_chat_template(tok)
    assert training is not None and "{% generation %}" in training
    out = tok.apply_chat_template(CONVERSATION, chat_template=training, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    mask = out["assistant_masks"]
    ids = out["input_ids"]
    assistant_text = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert assistant_text.startswith("<think>") and assistant_text.rstrip("\n").endswith("<|im_end|>")
    assert "发烧" not in assistant_text  # the prompt is not in the loss


@pytest.mark.parametrize("seed", [0])
def test_generates(tiny_model_dir, seed):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = tok.apply_chat_template(CONVERSATION[:2], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    torch.manual_seed(seed)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]
