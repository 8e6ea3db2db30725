"""A client for a vLLM OpenAI-compatible server used as a generation engine (asyncio + aiohttp).

What the trainer and the evaluation need from the server, and nothing else:
* `health()`, `base_model()` — is it up, and which base model does it serve (`/v1/models`: the entry without a
  parent);
* `load_adapter(name, path)` / `unload_adapter(name)` — LoRA adapters loaded at run time (the server runs with
  `VLLM_ALLOW_RUNTIME_LORA_UPDATING=1`, `medqa.engine.server`);
* `complete(model, prompts, sampling)` — completions of prompts given as **token ids**, with the sampled token ids
  and each token's log-prob back. One request per row, all in flight at once (the server batches them), each with
  its own seed, so a row's sample does not depend on the rows beside it.

The log-probs are those of the distribution the server sampled from: the server runs with
`--logprobs-mode processed_logprobs`, i.e. after the repetition penalty and the temperature, the same
transformation the trainer applies to its logits (`medqa.train.ppo.core.Sampling`), so with `top_p` 1 and `top_k` 0
the two sides compute the same numbers up to floating point (tests/engine checks this).

A server that cannot be reached, answers with an error, or does not answer within the timeout is an
`EngineUnavailable`: one line naming the server and what failed, never a hang.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Where `medqa vllm-serve` writes the URL of the server it started, and where its users read it by default.
DEFAULT_URL_FILE = Path("outputs/vllm-server/url")


class EngineUnavailable(RuntimeError):
    """The rollout server cannot be reached, failed a request, or timed out. RL runs stop resumably on it (`medqa.errors.ExitCode.STOPPED`,
    like a teacher that stopped answering)."""


@dataclass(frozen=True)
class Sampling:
    """One request's decoding, meaning what the same names mean to transformers' `generate`: temperature 0 is greedy;
    top_k 0 and top_p 1 are off; the repetition penalty acts on the prompt and the response so far."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False  # generate max_tokens whatever comes (benchmarks)

    def body(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k if self.top_k > 0 else 0, "repetition_penalty": self.repetition_penalty,
                "stop_token_ids": list(self.stop_token_ids), "skip_special_tokens": False,
                "ignore_eos": self.ignore_eos}


@dataclass(frozen=True)
class Completion:
    """One sampled continuation: its token ids (the stop token included when it stopped on one), each token's
    log-prob under the sampling distribution, and why it ended (`stop` or `length`)."""

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str


def resolve_url(url: str | None, url_file: Path = DEFAULT_URL_FILE) -> str:
    """The server's base URL: `url` as given, else the one `medqa vllm-serve` wrote to `url_file`."""
    if url:
        return url.rstrip("/")
    try:
        text = url_file.read_text(encoding="utf-8").strip()
    except OSError:
        raise EngineUnavailable(f"no vLLM server URL: set vllm_server_base_url, or start one with `make vllm-serve "
                                f"MODEL=…` (it writes {url_file})") from None
    if not text.startswith(("http://", "https://")):
        # Not echoed: a file at this path may hold anything, a password included.
        raise EngineUnavailable(f"{url_file}: not a server URL (expected one line http://HOST:PORT, as `medqa "
                                "vllm-serve` writes it)")
    return text.rstrip("/")


class VLLMClient:
    """Requests to one vLLM server; every call is synchronous for its caller (it runs its own event loop)."""

    def __init__(self, base_url: str, timeout: float = 600.0, connect_timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.timeout, self.connect_timeout = float(timeout), float(connect_timeout)

    def __repr__(self) -> str:
        return f"VLLMClient({self.base_url!r})"

    # -- transport
    async def _request(self, session, method: str, path: str, body: dict | None = None) -> Any:
        import aiohttp

        url = self.base_url + path
        try:
            async with session.request(method, url, json=body) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise EngineUnavailable(f"vLLM server {self.base_url}: {method} {path} answered {resp.status}: "
                                            f"{' '.join(text.split())[:300]}")
                if resp.content_type == "application/json":
                    return await resp.json()
                return text
        except asyncio.TimeoutError:
            raise EngineUnavailable(f"vLLM server {self.base_url}: no answer to {method} {path} within "
                                    f"{self.timeout:g} s (vllm_server_timeout)") from None
        except aiohttp.ClientError as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            raise EngineUnavailable(f"vLLM server {self.base_url} unreachable ({reason}); is it running? "
                                    f"(make vllm-serve MODEL=…)") from None

    async def _run(self, calls) -> list[Any]:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout, sock_connect=self.connect_timeout)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            return await asyncio.gather(*(self._request(session, *call) for call in calls))

    def _call(self, calls: list[tuple]) -> list[Any]:
        return asyncio.run(self._run(calls))

    # -- the server
    def health(self) -> None:
        """Raise EngineUnavailable unless the server answers /health."""
        self._call([("GET", "/health")])

    def models(self) -> list[dict]:
        return self._call([("GET", "/v1/models")])[0]["data"]

    def base_model(self) -> str:
        """The path or hub id of the base model the server serves."""
        bases = [m for m in self.models() if not m.get("parent")]
        if not bases:
            raise EngineUnavailable(f"vLLM server {self.base_url} lists no base model")
        return bases[0].get("root") or bases[0]["id"]

    def served_name(self) -> str:
        """The name requests use for the base model itself (no adapter)."""
        return next(m["id"] for m in self.models() if not m.get("parent"))

    def load_adapter(self, name: str, path: str | os.PathLike, exist_ok: bool = False) -> None:
        """Load the adapter in `path` under `name`; with `exist_ok`, a name already loaded is kept (for names that
        are derived from the adapter's content)."""
        try:
            self._call([("POST", "/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(Path(path).resolve())})])
        except EngineUnavailable as e:
            if not (exist_ok and "has already been loaded" in str(e)):
                raise

    def unload_adapter(self, name: str) -> None:
        self._call([("POST", "/v1/unload_lora_adapter", {"lora_name": name})])

    # -- generation
    def complete(self, model: str, prompts: list[list[int]], sampling: Sampling, seeds: list[int] | None = None,
                 n: int = 1) -> list[list[Completion]]:
        """`n` completions of each prompt (token ids), each request seeded by its row's seed (None: unseeded)."""
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        calls = []
        for i, ids in enumerate(prompts):
            body = {"model": model, "prompt": list(ids), "n": n, "logprobs": 0, "return_token_ids": True,
                    **sampling.body()}
            if seeds is not None:
                body["seed"] = int(seeds[i]) % (2**63)
            calls.append(("POST", "/v1/completions", body))
        replies = self._call(calls)
        out = []
        for reply in replies:
            choices = sorted(reply["choices"], key=lambda c: c["index"])
            out.append([Completion(list(c["token_ids"]), [float(x) for x in c["logprobs"]["token_logprobs"]],
                                   c.get("finish_reason") or "") for c in choices])
        return out

    def continuation_logprobs(self, model: str, prompt: list[int], continuation: list[int]) -> list[float]:
        """Log-probs (temperature 1, no penalty) the server gives each token of `continuation` after `prompt`: what a
        test compares with the trainer's forward to see an adapter really arrived."""
        body = {"model": model, "prompt": list(prompt) + list(continuation), "max_tokens": 1, "temperature": 1.0,
                "prompt_logprobs": 0, "return_token_ids": True}
        rows = self._call([("POST", "/v1/completions", body)])[0]["choices"][0]["prompt_logprobs"]
        values = []
        for pos, token in enumerate(continuation, start=len(prompt)):
            entry = rows[pos] or {}
            if str(token) not in entry:
                raise EngineUnavailable(f"vLLM server {self.base_url}: no prompt log-prob for token {token}")
            values.append(float(entry[str(token)]["logprob"]))
        return values
