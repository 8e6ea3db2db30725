"""A vLLM server as the generation engine of PPO rollouts, evaluation and predict (docs/gpu.md).

`medqa.engine.server` starts one in its own environment (`make vllm-setup`, `make vllm-serve`);
`medqa.engine.client` talks to it: adapters loaded at run time, completions from token ids with per-token log-probs.
"""

from medqa.engine.client import (
    DEFAULT_URL_FILE,
    Completion,
    EngineUnavailable,
    Sampling,
    VLLMClient,
    resolve_url,
)

__all__ = ["DEFAULT_URL_FILE", "Completion", "EngineUnavailable", "Sampling", "VLLMClient", "resolve_url"]
