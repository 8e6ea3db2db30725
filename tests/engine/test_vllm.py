"""PPO, predict and eval with a vLLM server as the rollout engine, end to end on CPU (`rollout_engine: vllm`,
`--engine vllm`): the server is `make vllm-serve`'s (tests/engine/conftest.py, one per session), the model the tiny
Qwen3 at head_dim 64."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from medqa.engine import EngineUnavailable, Sampling, VLLMClient
from medqa.runs.io import read_jsonl, write_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
ROOT = Path(__file__).resolve().parents[2]
QUESTIONS = ["头痛三天怎么办？", "Crushing chest pain and sweating, what should I do?", "孩子发烧39度", "Is ibuprofen safe?"]


# ---------------------------------------------------------------- the server, once per session: the tiny Qwen3 at
# head_dim 64 (vLLM's CPU attention refuses 16 on AVX2), and an SFT-shaped adapter whose weights move its outputs


@pytest.fixture(scope="session")
def served_model_dir(tmp_path_factory) -> Path:
    from medqa.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny64") / "tiny-qwen3-hd64", seed=0, head_dim=64)


@pytest.fixture(scope="session")
def served_adapter(tmp_path_factory, served_model_dir) -> Path:
    """A LoRA adapter (r 8, all linear layers) with non-zero B, so it changes every log-prob + the tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("adapter64") / "sft-lora"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(served_model_dir),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(served_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def vllm_server(vllm_env, served_model_dir, tmp_path_factory):
    """The server (`medqa.engine.server.VLLMServer`, what `make vllm-serve` runs), fp32, for the whole session."""
    from medqa.engine.server import VLLMServer

    log = tmp_path_factory.mktemp("vllm-log") / "server.log"
    with VLLMServer(str(served_model_dir), venv=vllm_env, log=log, dtype="float32", max_model_len=1024,
                    startup_timeout=900) as server:
        yield server


def _prompts(tokenizer) -> list[list[int]]:
    from medqa.models.generation import chat_input_ids

    return [chat_input_ids(tokenizer, [{"role": "user", "content": q}], True) for q in QUESTIONS]


def _policy(model_dir: Path, adapter: Path | None):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return (PeftModel.from_pretrained(model, adapter) if adapter else model).eval()


def _trainer_logprobs(model, prompt: list[int], tokens: list[int], temperature: float, penalty: float):
    """Each sampled token's log-prob as the PPO trainer computes it (`core.Sampling`: the repetition penalty over the
    prompt and the tokens so far, then the temperature)."""
    from medqa.train.ppo import core

    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens])).logits[:, len(prompt) - 1:-1].float()
    dist = core.Sampling(temperature, penalty, torch.tensor([prompt]) if penalty != 1.0 else None)
    return core.logprobs_from_logits(logits, torch.tensor([tokens]), dist)[0]


def test_sampling_means_the_same_on_both_sides(vllm_server, served_model_dir, served_adapter):
    """Temperature and repetition penalty: the server's per-token log-probs are the trainer's (max |Δ| < 1e-3); top-k
    and top-p: every sampled token lies in the trainer's top-k / nucleus; greedy: the same tokens as `generate`."""
    from transformers import AutoTokenizer
    from transformers.generation.logits_process import TopPLogitsWarper

    client = VLLMClient(vllm_server.url)
    client.load_adapter("t-sampling", served_adapter)
    tokenizer = AutoTokenizer.from_pretrained(served_adapter)
    model = _policy(served_model_dir, served_adapter)
    prompts = _prompts(tokenizer)

    diffs = []
    for temperature, penalty in [(0.7, 1.0), (1.0, 1.3), (0.5, 1.1)]:
        got = client.complete("t-sampling", prompts, Sampling(16, temperature, repetition_penalty=penalty),
                              seeds=[1, 2, 3, 4])
        for prompt, (c,) in zip(prompts, got, strict=True):
            trainer = _trainer_logprobs(model, prompt, c.token_ids, temperature, penalty)
            diffs.append(float((trainer - torch.tensor(c.logprobs)).abs().max()))
    assert max(diffs) < 1e-3, diffs

    for prompt, (c,) in zip(prompts, client.complete("t-sampling", prompts, Sampling(12, 1.0, top_k=3), seeds=[5] * 4),
                            strict=True):
        with torch.no_grad():
            logits = model(torch.tensor([prompt + c.token_ids])).logits[0, len(prompt) - 1:-1]
        top3 = logits.topk(3, dim=-1).indices
        assert all(t in top3[i].tolist() for i, t in enumerate(c.token_ids))
    for prompt, (c,) in zip(prompts, client.complete("t-sampling", prompts, Sampling(12, 1.0, top_p=0.3), seeds=[6] * 4),
                            strict=True):
        with torch.no_grad():
            logits = model(torch.tensor([prompt + c.token_ids])).logits[0, len(prompt) - 1:-1]
        kept = TopPLogitsWarper(0.3)(None, logits.clone()) > -float("inf")
        assert all(bool(kept[i, t]) for i, t in enumerate(c.token_ids))

    greedy = client.complete("t-sampling", prompts, Sampling(10, 0.0))
    for prompt, (c,) in zip(prompts, greedy, strict=True):
        out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=10, eos_token_id=[],
                             pad_token_id=tokenizer.pad_token_id)
        assert c.token_ids == out[0, len(prompt):].tolist()


def _ppo_config(out: Path, prompts: Path, url: str, **overrides):
    from medqa.train.ppo.config import PPOConfig

    opts = dict(output_dir=str(out), prompts_file=str(prompts), total_steps=3, batch_size=4, mini_batch_size=2,
                forward_batch_size=4, ppo_epochs=2, learning_rate=2e-2, max_new_tokens=8, max_prompt_length=64,
                temperature=1.0, save_steps=1, report_to="none", progress_bar=False, cpu_threads=1, reward="rules",
                rollout_engine="vllm", vllm_server_base_url=url, target_kl=None)
    return PPOConfig(**{**opts, **overrides})


def test_ppo_samples_on_the_server_with_the_adapter_of_every_step(vllm_server, served_model_dir, served_adapter,
                                                                  ppo_prompts, tmp_path):
    """3 PPO steps from an SFT adapter: every step's server log-probs agree with the trainer's forward of the
    adapter just updated (mean |Δ log p| < 1e-3: the sync happened), only the last version stays on disk, and the
    final policy, loaded into the server, gives the trainer's log-probs of a fixed continuation — not the SFT's."""
    from transformers import AutoTokenizer

    from medqa.train.ppo.config import PPOModelArguments
    from medqa.train.ppo.trainer import PPOTrainer

    out = tmp_path / "ppo"
    summary = PPOTrainer(PPOModelArguments(model_name_or_path=str(served_adapter)),
                         _ppo_config(out, ppo_prompts, vllm_server.url)).train(resume=False)
    assert summary["steps"] == 3
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["rollout/logp_diff_mean"] < 1e-3 and r["rollout/is_ratio_max"] < 1.01, r
        assert r["rollout/is_clipped_share"] == 0.0 and r["time/sync_s"] > 0
    assert sorted(p.name for p in (out / "rollout-adapter").iterdir()) == ["step-000002"]

    client = VLLMClient(vllm_server.url)
    tokenizer = AutoTokenizer.from_pretrained(out)
    prompt = _prompts(tokenizer)[1]
    continuation = tokenizer("Call emergency services now.", add_special_tokens=False).input_ids

    def trainer_side(adapter: Path) -> torch.Tensor:
        model = _policy(served_model_dir, adapter)
        with torch.no_grad():
            logits = model(torch.tensor([prompt + continuation])).logits[0, len(prompt) - 1:-1].log_softmax(-1)
        return logits[torch.arange(len(continuation)), torch.tensor(continuation)]

    client.load_adapter("t-final", out)
    served = torch.tensor(client.continuation_logprobs("t-final", prompt, continuation))
    final, sft = trainer_side(out), trainer_side(served_adapter)
    assert (served - final).abs().max() < 1e-3, (served, final)
    assert (final - sft).abs().max() > 1e-2  # the policy moved, so the agreement is the new adapter's


def test_a_server_with_another_base_is_refused(vllm_server, tiny_model_dir, ppo_prompts, tmp_path):
    from medqa.train.ppo.config import PPOModelArguments
    from medqa.train.ppo.trainer import PPOTrainer

    with pytest.raises(ValueError, match="serves .*but the model's base is .*make vllm-serve MODEL="):
        PPOTrainer(PPOModelArguments(model_name_or_path=str(tiny_model_dir)),
                   _ppo_config(tmp_path / "ppo", ppo_prompts, vllm_server.url))


@pytest.mark.learning
def test_ppo_learns_a_verifiable_reward_on_the_vllm_engine(vllm_server, served_model_dir, tmp_path, learning_seed,
                                                          measure):
    """tests/rl/test_ppo.py's verifiable reward (share of CJK characters in a 2-token answer at temperature 0.5), with
    the rollouts sampled by the server: PPO raises the mean of the last four of 24 steps well above the first step's
    while KL stays bounded, and the server's log-probs stay the trainer's. Measured, seeds 1-8 (AMD EPYC, 2 cores):
    first step 0.20-0.48, last four 0.78-1.00 (median 0.99; the HF engine 0.95-1.00), mean |Δ log p| <= 2e-6."""
    from conftest import verifiable_ppo

    verifiable_ppo(served_model_dir, tmp_path, learning_seed, measure, "ppo_vllm", rollout_engine="vllm",
                   vllm_server_base_url=vllm_server.url)
    diffs = [r["rollout/logp_diff_mean"] for r in read_jsonl(tmp_path / "out" / "metrics.jsonl")]
    measure("ppo_vllm/max_logp_diff_mean", max(diffs), at_most=1e-3)


class Proxy:
    """A TCP proxy in front of the server: `stop()` is the server dying, as its clients see it."""

    def __init__(self, target: str):
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self.alive = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.alive:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.alive:
                client.close()
                return
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        self.alive = False
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; then no new connection
        except OSError:
            pass
        self.listener.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass


def test_a_dead_server_stops_the_run_in_one_line_and_the_run_resumes(vllm_server, served_adapter, ppo_prompts,
                                                                     tmp_path):
    """The server dies mid-run (its proxy closes): `medqa ppo` exits with status 3 and one line naming the server,
    leaving a checkpoint at the step it could not sample; run again with a live server, it resumes there and
    finishes."""
    from conftest import ppo_argv

    out = tmp_path / "ppo"

    def argv(url: str) -> list[str]:
        return [sys.executable, "-m", "medqa", "ppo",
                *ppo_argv(served_adapter, ppo_prompts, out, total_steps=6, save_steps=2, max_new_tokens=4,
                          reward="rules", cpu_threads=1, report_to="none", rollout_engine="vllm",
                          vllm_server_base_url=url, vllm_server_timeout=60)]

    proxy = Proxy(vllm_server.url)
    proc = subprocess.Popen(argv(proxy.url), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = out / "metrics.jsonl"
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    proxy.stop()
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 3, stdout[-2000:] + stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert re.match(r"ppo: stopped: vLLM server http://127\.0\.0\.1:\d+ unreachable", last), stderr[-3000:]
    stopped = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert stopped >= 3

    again = Proxy(vllm_server.url)
    try:
        done = subprocess.run(argv(again.url), cwd=ROOT, capture_output=True, text=True, timeout=600)
    finally:
        again.stop()
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"resuming from {out / f'checkpoint-{stopped}'}" in done.stdout
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_predict_and_eval_run_generate_on_the_server(vllm_server, served_adapter, tmp_path):
    """`--engine vllm`: greedy answers equal transformers' on the same adapter, rows record the engine, K sampled
    answers per item resume like the HF engine's, and `eval run` scores them."""
    items = tmp_path / "items.jsonl"
    write_jsonl(items, [{"id": f"q{i}", "question": q, "reference": "call emergency services"}
                        for i, q in enumerate(QUESTIONS)])

    def medqa(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "medqa", *args, "--no-progress"], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    server = ["--engine", "vllm", "--vllm-url", vllm_server.url]
    medqa("predict", "--model", str(served_adapter), "--input", str(items), "--output", str(tmp_path / "hf.jsonl"),
          "--max-new-tokens", "12")
    medqa("predict", "--model", str(served_adapter), "--input", str(items), "--output", str(tmp_path / "v.jsonl"),
          "--max-new-tokens", "12", *server)
    hf, served = read_jsonl(tmp_path / "hf.jsonl"), read_jsonl(tmp_path / "v.jsonl")
    assert [r["prediction"] for r in served] == [r["prediction"] for r in hf]
    assert all(r["decoding"]["engine"] == "vllm" for r in served) and "engine" not in hf[0]["decoding"]

    sampled = ["--do-sample", "--seed", "3", "--num-samples", "2", "--max-new-tokens", "8", *server]
    medqa("predict", "--model", str(served_adapter), "--input", str(items), "--output", str(tmp_path / "k.jsonl"),
          *sampled)
    rows = read_jsonl(tmp_path / "k.jsonl")
    assert [(r["id"], r["sample"]) for r in rows] == [(f"q{i}", j) for i in range(4) for j in range(2)]
    again = medqa("predict", "--model", str(served_adapter), "--input", str(items), "--output",
                  str(tmp_path / "k.jsonl"), *sampled)
    assert "0 generated, 8 already done" in again.stdout

    medqa("eval", "run", "--model", str(served_adapter), "--set", f"gold={items}", "--out", str(tmp_path / "eval"),
          "--max-new-tokens", "8", *server)
    metrics = json.loads((tmp_path / "eval" / "gold" / "metrics.json").read_text())
    assert metrics["n_items"] == 4


def test_the_client_reports_a_dead_server_without_hanging(vllm_server):
    proxy = Proxy(vllm_server.url)
    client = VLLMClient(proxy.url, timeout=60)
    client.health()
    proxy.stop()
    with pytest.raises(EngineUnavailable, match="unreachable"):
        client.complete("base", [[1, 2, 3]], Sampling(4))


def test_p9_measures_both_engines_on_the_same_prompts(vllm_server, served_model_dir):
    """`make bench`'s P9 on the session's server: both engines generate exactly prompts × tokens, and the ratio is
    their tokens/s (a number on this CPU, not a claim: the target is a GPU's)."""
    from medqa.bench.p9_rollout_engine import measure

    result = measure(str(served_model_dir), vllm_server.url, n_prompts=4, max_new_tokens=8)
    assert result["server_tokens"] == result["hf_tokens"] == 32
    assert result["ratio"] > 0 and result["server_tokens_per_s"] > 0 and result["hf_tokens_per_s"] > 0


@pytest.mark.distributed
@pytest.mark.parametrize("accel", ["cpu", "cpu_zero3"])
def test_two_processes_sample_their_own_prompts_from_one_synced_adapter(vllm_server, served_adapter, ppo_prompts,
                                                                        tmp_path, accel):
    """2 processes under DDP and ZeRO-3 (whose adapter shards are gathered on every rank): the main process publishes
    the adapter and each rank samples its own prompts from it; the server's log-probs agree with the trainer's on both
    ranks (the logged mismatch is the mean over the ranks)."""
    import os

    from conftest import ppo_argv

    out = tmp_path / "ppo"
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(ROOT / f"accelerate_configs/{accel}.yaml"), str(ROOT / "scripts/ppo.py"),
            *ppo_argv(served_adapter, ppo_prompts, out, total_steps=2, max_new_tokens=6, reward="rules",
                      cpu_threads=1, report_to="none", rollout_engine="vllm", vllm_server_base_url=vllm_server.url)]
    proc = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    # The trainer computes what the server computes (fp32 both sides: ~1e-6), under ZeRO-3 too: there the trainer's
    # vocabulary once shrank to the tokenizer's (4,098 of 4,160 rows: `attach_adapter` read the sharded embedding's
    # size as 0) and the mismatch was 0.012-0.015.
    assert all(r["rollout/logp_diff_mean"] < 1e-3 and r["rollout/is_clipped_share"] == 0.0 for r in rows), rows
    assert sorted(p.name for p in (out / "rollout-adapter").iterdir()) == ["step-000001"]
    from safetensors import safe_open

    with safe_open(out / "adapter_model.safetensors", "pt") as final:  # the adapter alone, under ZeRO-3 too
        assert final.keys() and all("lora_" in k for k in final.keys()), list(final.keys())[:4]
