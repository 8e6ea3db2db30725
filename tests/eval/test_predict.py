"""Generation and `medqa predict`: batched == one-by-one greedy, output rows, resume, input errors, adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import THINK_PAIRS
from medqa.runs.io import InputError, read_jsonl

EXTRA_QUESTIONS = ["头疼怎么办？", "I feel dizzy when I stand up quickly, what could it be?"]


@pytest.fixture(scope="module")
def think_model(tiny_think_model_dir):
    from medqa.models.generation import load_model

    return load_model(str(tiny_think_model_dir), device="cpu")


def test_batched_equals_one_by_one_greedy(think_model):
    from medqa.models.generation import GenerationSettings, generate

    model, tok = think_model
    questions = [q for q, _ in THINK_PAIRS] + EXTRA_QUESTIONS  # different lengths -> real left padding
    settings = GenerationSettings(max_new_tokens=64)
    batched = generate(model, tok, questions, settings, batch_size=len(questions))
    single = [generate(model, tok, [q], settings, batch_size=1)[0] for q in questions]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.gen_tokens for g in batched] == [g.gen_tokens for g in single]
    # Not a vacuous comparison: the outputs differ between prompts and are the memorised think answers.
    assert len({g.text for g in batched}) >= 3
    assert batched[0].text == THINK_PAIRS[0][1]


def test_no_think_prompt_and_sampling_are_honoured(think_model):
    from medqa.models.generation import GenerationSettings, build_prompt, chat_messages, generate

    model, tok = think_model
    p = build_prompt(tok, chat_messages("hi"), enable_thinking=False)
    assert p.endswith("<think>\n\n</think>\n\n")
    assert build_prompt(tok, chat_messages("hi"), enable_thinking=True).endswith("<|im_start|>assistant\n")
    s = GenerationSettings(max_new_tokens=12, do_sample=True, seed=3, temperature=1.5, top_p=1.0, top_k=0)
    a = generate(model, tok, ["头疼怎么办？"], s)[0].text
    b = generate(model, tok, ["头疼怎么办？"], s)[0].text
    assert a == b  # seeded sampling is reproducible


def _write_input(path: Path) -> list[str]:
    rows = [
        {"id": "chat-1", "messages": [{"role": "user", "content": THINK_PAIRS[0][0]},
                                      {"role": "assistant", "content": THINK_PAIRS[0][1]}],
         "meta": {"risk_level": "critical"}},
        {"id": "inst-2", "instruction": THINK_PAIRS[1][0], "input": "", "output": THINK_PAIRS[1][1]},
        {"id": "exam-3", "question": "高血压首选检查是？", "options": {"A": "血常规", "B": "动态血压"}, "answer": "B"},
        {"id": "q-4", "question": THINK_PAIRS[2][0]},
        {"id": "q-5", "prompt": THINK_PAIRS[3][0], "reference": "少吃甜食"},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return [r["id"] for r in rows]


def test_predict_rows_and_resume(tmp_path, tiny_think_model_dir):
    from medqa.apps.predict import main

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    ids = _write_input(inp)
    base = ["--model", str(tiny_think_model_dir), "--input", str(inp), "--output", str(out),
            "--max-new-tokens", "64", "--device", "cpu", "--no-progress", "--batch-size", "2"]
    assert main(base + ["--limit", "2"]) == 0
    first = read_jsonl(out)
    assert [r["id"] for r in first] == ids[:2]
    # Resume: simulate a crash that tore the last appended line, then run on the whole file.
    with open(out, "ab") as fh:
        fh.write(b'{"id": "inst-9", "predic')
    assert main(base) == 0
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ids  # input order, every id once, torn line dropped
    assert rows[0] == first[0]  # untouched: not regenerated
    r0 = rows[0]
    assert set(r0) >= {"id", "question", "prediction", "reference", "meta", "think", "answer", "gen_tokens",
                       "latency_ms"}
    assert r0["prediction"] == THINK_PAIRS[0][1]
    assert r0["think"] == "胸痛伴出汗，警惕心梗。" and r0["answer"] == "请立即拨打120急救电话。"
    assert r0["meta"] == {"risk_level": "critical"} and r0["gen_tokens"] > 5 and r0["latency_ms"] > 0
    exam = rows[2]
    assert exam["reference"] == "B" and exam["options"] == {"A": "血常规", "B": "动态血压"}
    assert "A. 血常规" in exam["question"] and "B. 动态血压" in exam["question"]
    assert "reference" not in rows[3] and rows[4]["reference"] == "少吃甜食"
    # A third run has nothing left to do and leaves the file as it is.
    before = out.read_bytes()
    assert main(base) == 0
    assert out.read_bytes() == before


@pytest.mark.parametrize("row, where", [
    ({"id": "x"}, "no prompt"),
    ({"id": "x", "messages": [{"role": "assistant", "content": "hi"}]}, "messages: no user turn"),
    ({"id": "x", "question": "q", "options": {"A": "a"}, "answer": "Z"}, "answer: expected one of"),
    ({"id": "x", "instruction": 3}, "instruction: expected a string"),
])
def test_bad_input_is_located(tmp_path, row, where):
    from medqa.apps.predict import read_items

    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps({"id": "ok", "question": "fine"}) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"bad.jsonl:2: .*{where}"):
        read_items(p)


def test_chat_rows_keep_their_system_prompt(tmp_path):
    from medqa.apps.predict import read_items

    p = tmp_path / "chat.jsonl"
    p.write_text(json.dumps({"id": "c", "messages": [{"role": "system", "content": "你是医生。"},
                                                     {"role": "user", "content": "头疼"},
                                                     {"role": "assistant", "content": "参考"}]},
                            ensure_ascii=False) + "\n", encoding="utf-8")
    (item,) = read_items(p, system="ignored: the row has its own")
    assert item.messages == [{"role": "system", "content": "你是医生。"}, {"role": "user", "content": "头疼"}]
    assert item.reference == "参考" and item.question == "头疼"
    (item,) = read_items(tmp_path / "chat.jsonl")
    q = tmp_path / "q.jsonl"
    q.write_text('{"id": "q", "question": "头疼"}\n', encoding="utf-8")
    (item,) = read_items(q, system="你是医生。")
    assert item.messages[0] == {"role": "system", "content": "你是医生。"}


def test_duplicate_ids_rejected(tmp_path):
    from medqa.apps.predict import read_items

    p = tmp_path / "dup.jsonl"
    p.write_text('{"id": 1, "question": "a"}\n{"id": "1", "question": "b"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"dup.jsonl:2: id: duplicate id '1' \(first on line 1\)"):
        read_items(p)


def test_adapter_dir_is_detected_and_applied(tmp_path, tiny_model_dir):
    """A LoRA adapter is found by adapter_config.json, alone or with --model, and changes the outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from medqa.models.generation import GenerationSettings, generate, load_model
    from medqa.models.loading import resolve_model_paths

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 2.0)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    assert resolve_model_paths(str(adapter)) == (str(tiny_model_dir), str(adapter))
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter"):
        resolve_model_paths(str(tiny_model_dir), str(tiny_model_dir))
    s = GenerationSettings(max_new_tokens=8)
    m0, t0 = load_model(str(tiny_model_dir), device="cpu")
    m1, t1 = load_model(str(tiny_model_dir), str(adapter), device="cpu")
    m2, _ = load_model(str(adapter), device="cpu")
    q = ["感冒咳嗽一周了怎么办"]
    out1 = generate(m1, t1, q, s)[0]
    out2 = generate(m2, t1, q, s)[0]
    assert (out2.text, out2.gen_tokens) == (out1.text, out1.gen_tokens)  # adapter alone == base + adapter
    ids = torch.tensor([[1, 2, 3, 4]])
    assert not torch.allclose(m0(ids).logits, m1(ids).logits)  # the adapter really changed the model


def test_eval_run_predicts_and_scores_each_set(tmp_path, tiny_think_model_dir, capsys):
    from medqa.eval.cli import main

    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"id": f"g{i}", "question": q, "reference": a, "meta": {"risk_level": r}},
                                       ensure_ascii=False) + "\n"
                            for i, ((q, a), r) in enumerate(zip(THINK_PAIRS, ["critical", "low", "low", "medium"],
                                                                strict=True))), encoding="utf-8")
    out = tmp_path / "run"
    assert main(["run", "--model", str(tiny_think_model_dir), "--set", f"gold={gold}",
                 "--set", f"missing={tmp_path / 'nope.jsonl'}", "--out", str(out), "--max-new-tokens", "64",
                 "--device", "cpu", "--no-progress"]) == 0
    assert "missing: " in capsys.readouterr().out and not (out / "missing").exists()
    m = json.loads((out / "gold" / "metrics.json").read_text(encoding="utf-8"))
    # The memorised answers: all well formed, the chest-pain one refers to 120, each equals its reference.
    assert m["think_coverage"] == 1.0 and m["counts"]["think_coverage"] == {"k": 4, "n": 4}
    assert m["counts"]["emergency_coverage"] == {"k": 1, "n": 1}
    assert m["rougeL_char"] == pytest.approx(1.0)


def test_repetition_penalty_breaks_greedy_loops_and_keys_the_resume(tmp_path, tiny_model_dir, capsys):
    """The random-init tiny model loops under greedy decoding; `--repetition-penalty` makes it use more distinct
    tokens, is part of what keys a resumed row, and refuses values <= 0."""
    from medqa.apps.predict import main
    from medqa.models.generation import GenerationSettings, generate, load_model

    model, tok = load_model(str(tiny_model_dir), device="cpu")
    questions = [q for q, _ in THINK_PAIRS]
    greedy = generate(model, tok, questions, GenerationSettings(max_new_tokens=40))
    penalised = generate(model, tok, questions, GenerationSettings(max_new_tokens=40, repetition_penalty=2.0))

    def distinct(gens):
        return sum(len(set(tok(g.text, add_special_tokens=False).input_ids)) for g in gens)

    assert distinct(penalised) > distinct(greedy)
    with pytest.raises(ValueError, match="repetition_penalty"):
        GenerationSettings(repetition_penalty=0.0)

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    _write_input(inp)
    base = ["--model", str(tiny_model_dir), "--input", str(inp), "--output", str(out), "--max-new-tokens", "16",
            "--device", "cpu", "--no-progress", "--limit", "2"]
    assert main(base) == 0 and main(base) == 0
    assert "0 generated, 2 already done" in capsys.readouterr().out
    assert main(base + ["--repetition-penalty", "1.3"]) == 0  # other decoding: not the rows of the greedy run
    assert "2 generated, 0 already done" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(base + ["--repetition-penalty", "0"])
