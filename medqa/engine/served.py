"""A model on a vLLM server, used where a transformers model would be: `medqa.models.generation.generate_batch` generates
from a `ServedModel` with the same settings, stop tokens and text decoding, so predict and eval run take
`--engine vllm` with nothing else changed.

The server holds the base model (`make vllm-serve MODEL=base`); an adapter is loaded into it at run time under a
name derived from the adapter's content, so a retrained adapter in the same folder is a new name, never an old
cached one.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medqa.engine.client import Sampling, VLLMClient, resolve_url


def served_base(model: str) -> str:
    """The base model to serve for `model`: a local folder as its absolute path, an adapter folder's base (the one its
    adapter_config.json names, read by `medqa.models.loading.resolve_model_paths`), or a hub id as it is."""
    from medqa.models.loading import resolve_model_paths

    model, _ = resolve_model_paths(model)
    return str(Path(model).resolve()) if Path(model).is_dir() else model


def same_model(a: str, b: str) -> bool:
    """Two model references name the same model: the same folder, or the same hub id."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    if pa.exists() and pb.exists():
        return os.path.samefile(pa, pb)
    return a.rstrip("/") == b.rstrip("/")


def check_serves(client: VLLMClient, base: str) -> None:
    """ValueError unless the server's base model is `base` (samples of another model would be silently wrong)."""
    served = client.base_model()
    if not same_model(served, base):
        raise ValueError(f"the vLLM server {client.base_url} serves {served}, but the model's base is {base}: "
                         f"start it with `make vllm-serve MODEL={base}`")


@dataclass
class ServedModel:
    """What generation needs of a model, answered by the server: its config (stop ids), and completions."""

    client: VLLMClient
    name: str  # the adapter's name on the server, or the base model's served name
    config: Any
    generation_config: Any
    device: str = "cpu"
    served = True

    def complete_ids(self, prompts: list[list[int]], settings, stop: list[int],
                     row_seeds: list[int] | None = None) -> list[list[int]]:
        """One continuation per prompt under `settings` (a `medqa.models.generation.GenerationSettings`): greedy unless it
        samples; sampled rows seeded by `row_seeds`, else by the settings' seed plus the row's index."""
        if settings.do_sample:
            sampling = Sampling(settings.max_new_tokens, settings.temperature, settings.top_p, settings.top_k,
                                settings.repetition_penalty, tuple(stop))
            if row_seeds is None and settings.seed is not None:
                row_seeds = [settings.seed + i for i in range(len(prompts))]
        else:
            sampling = Sampling(settings.max_new_tokens, 0.0, 1.0, 0, settings.repetition_penalty, tuple(stop))
            row_seeds = None
        return [c[0].token_ids for c in self.client.complete(self.name, prompts, sampling, seeds=row_seeds)]


def load_served(model: str, adapter: str | None = None, *, url: str | None = None, timeout: float = 600.0):
    """(ServedModel, tokenizer) for `model` (+ `adapter`), as `medqa.models.loading.load_for_inference` resolves them; the
    adapter is loaded into the server, whose base must be the model's."""
    from transformers import AutoConfig, GenerationConfig

    from medqa.models.loading import load_tokenizer, resolve_model_paths
    from medqa.runs.io import content_fingerprint

    base, adapter = resolve_model_paths(model, adapter)
    tokenizer = load_tokenizer(base, adapter)
    client = VLLMClient(resolve_url(url), timeout=timeout)
    check_serves(client, served_base(base))
    name = client.served_name()
    if adapter:
        digest = content_fingerprint(adapter) or str(Path(adapter).resolve())
        name = "medqa-" + hashlib.sha1(digest.encode()).hexdigest()[:12]
        client.load_adapter(name, adapter, exist_ok=True)  # the name is the content: loaded once per server
    config = AutoConfig.from_pretrained(base)
    try:
        generation_config = GenerationConfig.from_pretrained(base)
    except OSError:
        generation_config = GenerationConfig.from_model_config(config)
    return ServedModel(client, name, config, generation_config), tokenizer
