"""Shared fixtures: a tiny Qwen3 built once per session, offline environment, repo paths."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
# What `make data` prepares (the Makefile's SAMPLE_INPUTS): the SFT set, the red team and the public formats.
SAMPLE_INPUTS = [str(SAMPLE / "sft.jsonl"), str(SAMPLE / "red_team.jsonl"), str(SAMPLE / "formats")]

# Tests never touch the hub, and subprocesses run this checkout's code.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny random-init Qwen3 + tokenizer, built from the shipped sample text (seconds)."""
    from medqa.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-qwen3", seed=0)


@pytest.fixture(scope="session")
def processed_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """`medqa data prepare` of data/sample/ (the same command as `make data`)."""
    from medqa.data import prepare

    out = tmp_path_factory.mktemp("data") / "processed"
    prepare(SAMPLE_INPUTS, out, seed=42, tokenizer_path=str(tiny_model_dir))
    return out


def run_cli(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m medqa …` as a user would; returns the completed process (text mode)."""
    proc = subprocess.run([sys.executable, "-m", "medqa", *args], capture_output=True, text=True, cwd=kwargs.pop("cwd", ROOT), **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"medqa {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


# Questions -> fixed think-format answers the "think" model memorises (distinct, so outputs vary by prompt).
THINK_PAIRS = [
    ("我胸口剧烈疼痛，出冷汗，怎么办？", "<think>\n胸痛伴出汗，警惕心梗。\n</think>\n请立即拨打120急救电话。"),
    ("感冒咳嗽一周了怎么办", "<think>\n普通感冒可能性大。\n</think>\n多休息多喝水，症状加重请就医。"),
    ("What should I do for a mild headache?", "<think>\nLikely a tension headache.\n</think>\nRest and drink water."),
    ("糖尿病人饮食注意什么", "<think>\n控制血糖是关键。\n</think>\n少吃甜食，规律饮食，遵医嘱用药。"),
]


@pytest.fixture(scope="session")
def tiny_think_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model overfitted (seconds) to answer THINK_PAIRS in the `<think>…</think>` format, so greedy
    generation yields real, prompt-dependent think chains and answers (the random-init model only repeats
    one token)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    rows = []
    for q, a in THINK_PAIRS:
        prompt = tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False).input_ids
        a_ids = tok(a + tok.eos_token, add_special_tokens=False).input_ids
        rows.append((p_ids + a_ids, [-100] * len(p_ids) + a_ids))
    width = max(len(ids) for ids, _ in rows)  # one right-padded batch: one forward pass per step
    ids = torch.tensor([r[0] + [tok.pad_token_id] * (width - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-100] * (width - len(r[1])) for r in rows])
    mask = torch.tensor([[1] * len(r[0]) + [0] * (width - len(r[0])) for r in rows])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(100):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    out = tmp_path_factory.mktemp("tiny_think") / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
