"""P9: rollout tokens/s of a vLLM server vs transformers' `generate`, same model, prompts and sampling, in one run.

Both sample N_PROMPTS chat prompts × MAX_NEW_TOKENS tokens at temperature 1 with the end-of-sequence token ignored,
so both generate exactly the same number of tokens: `generate` in one left-padded batch (the PPO trainer's
`rollout_engine: hf`), the server with every request in flight at once (`rollout_engine: vllm`; it batches them).
The ratio is server tokens/s ÷ `generate` tokens/s. The target (≥ 5×) is a GPU's, where `make bench-gpu` measures it;
on a CPU the run checks the path end to end (vLLM's CPU backend is built for AVX-512/AMX; docs/gpu.md).

The model is MEDQA_P9_MODEL (default: the tiny Qwen3 at head_dim 64, built into the output folder); the server is
MEDQA_P9_URL (serving that model), else one started here from .venv-vllm. Without .venv-vllm (`make vllm-setup`) the
benchmark is skipped, never given a number.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from medqa.bench import BenchmarkSkipped
from medqa.bench.p4_generation import PROMPTS

N_PROMPTS, MAX_NEW_TOKENS, GOAL = 16, 64, 5.0


def _model(out_dir: Path) -> str:
    if os.environ.get("MEDQA_P9_MODEL"):
        return os.environ["MEDQA_P9_MODEL"]
    from medqa.models.tiny import build_tiny_model

    folder = out_dir / "p9-model"
    if not (folder / "config.json").is_file():
        build_tiny_model(folder, seed=0, head_dim=64, overwrite=True)
    return str(folder)


def measure(model: str, url: str, n_prompts: int = N_PROMPTS, max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """Tokens/s of both engines on `model` (the server at `url` must serve it)."""
    import torch

    from medqa.engine import Sampling, VLLMClient
    from medqa.models.generation import chat_input_ids, chat_messages, left_pad, load_model

    lm, tokenizer = load_model(model, device="cuda" if torch.cuda.is_available() else "cpu")
    questions = [PROMPTS[i % len(PROMPTS)] + ("" if i < len(PROMPTS) else f"（{i}）") for i in range(n_prompts)]
    prompts = [chat_input_ids(tokenizer, chat_messages(q), True) for q in questions]
    client = VLLMClient(url)
    name = client.served_name()
    sampling = Sampling(max_new_tokens, temperature=1.0, ignore_eos=True)
    client.complete(name, prompts[:2], Sampling(4, 1.0, ignore_eos=True))  # warm-up, not timed

    start = time.perf_counter()
    served = client.complete(name, prompts, sampling, seeds=list(range(n_prompts)))
    server_s = time.perf_counter() - start
    server_tokens = sum(len(c[0].token_ids) for c in served)

    enc = left_pad(tokenizer, prompts, lm.device)
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.inference_mode():
        out = lm.generate(**enc, do_sample=True, temperature=1.0, top_k=None, top_p=None,
                          max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                          pad_token_id=tokenizer.pad_token_id)
    hf_s = time.perf_counter() - start
    hf_tokens = int(out[:, enc["input_ids"].shape[1]:].numel())
    server_rate, hf_rate = server_tokens / server_s, hf_tokens / hf_s
    return {"model": model, "prompts": n_prompts, "max_new_tokens": max_new_tokens,
            "server_tokens": server_tokens, "server_s": round(server_s, 3),
            "server_tokens_per_s": round(server_rate, 1), "hf_tokens": hf_tokens, "hf_s": round(hf_s, 3),
            "hf_tokens_per_s": round(hf_rate, 1), "ratio": round(server_rate / hf_rate, 3),
            "device": "cuda" if torch.cuda.is_available() else "cpu", "goal": GOAL}


def run(out_dir) -> dict:
    from medqa.engine.server import VLLMServer, vllm_python

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = _model(out_dir)
    if os.environ.get("MEDQA_P9_URL"):
        return measure(model, os.environ["MEDQA_P9_URL"])
    try:
        vllm_python()
    except FileNotFoundError as e:
        raise BenchmarkSkipped(f"{e} (~3.5 GB)") from None
    import torch

    dtype = "auto" if torch.cuda.is_available() else "float32"  # fp32 on CPU, as `generate` runs there
    with VLLMServer(model, log=out_dir / "p9-server.log", dtype=dtype, max_model_len=1024) as server:
        return measure(model, server.url)
