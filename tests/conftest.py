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
