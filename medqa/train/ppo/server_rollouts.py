"""PPO rollouts from a vLLM server (`rollout_engine: vllm`): the policy's adapter goes to the server every step.

Each step, before its rollouts, the main process saves the trainable adapter to `OUT/rollout-adapter/step-N`
(written to a temp folder and renamed, so the server never reads half a file) and loads it under a new name,
`<run>-<process token>-step-N`; the previous version is unloaded and its folder removed. A new name per version (rather than
replacing one adapter in place) means nothing the server cached for an older version — its prefix cache is keyed by
the adapter — can answer for the new one. The ranks then sample their own prompts from that adapter.

Only the adapter travels: the server holds the base model, which must be the policy's base (checked once, at the
start). Full-parameter PPO is refused: it would need every weight reloaded into the server each step (a saved
checkpoint reload or an NCCL weight broadcast), which the project does not do.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from medqa.engine import EngineUnavailable, VLLMClient, resolve_url
from medqa.engine.served import check_serves, served_base

ADAPTER_DIR = "rollout-adapter"


class ServerPolicy:
    """The policy's adapter on a vLLM server: `publish` a new version each step, `name` the one to sample from."""

    def __init__(self, base_url: str | None, timeout: float, out: Path):
        self.client = VLLMClient(resolve_url(base_url), timeout=timeout)
        self.folder = out / ADAPTER_DIR
        self.out = out
        self.prefix: str | None = None  # set by `connect` (on the main process) and handed to every rank
        self.name: str | None = None

    def connect(self, policy: str) -> str:
        """Check the server holds the policy's base model (its samples would otherwise come from another model) and
        return this process's adapter-name prefix: the run folder's hash and a fresh token, so a resumed run never
        collides with the versions an earlier process of the same run left loaded."""
        check_serves(self.client, served_base(policy))
        return f"medqa-ppo-{hashlib.sha1(str(self.out.resolve()).encode()).hexdigest()[:10]}-{secrets.token_hex(3)}"

    def publish(self, step: int, save_adapter: Callable[[Path], None]) -> str:
        """Save the adapter as version `step` and load it into the server (main process only); its name."""
        final = self.folder / f"step-{step:06d}"
        tmp = self.folder / f".step-{step:06d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_adapter(tmp)
        shutil.rmtree(final, ignore_errors=True)  # a version left by a run stopped after saving it
        os.replace(tmp, final)
        name = f"{self.prefix}-step-{step}"
        self.client.load_adapter(name, final)
        previous, self.name = self.name, name
        if previous is not None and previous != name:
            try:
                self.client.unload_adapter(previous)
            except EngineUnavailable:
                pass  # the new version is loaded; an old one left behind only takes a slot until the server restarts
        for old in self.folder.glob("step-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return name

    def version_name(self, step: int) -> str:
        """The name `publish(step)` loads the adapter under (what every rank samples from)."""
        return f"{self.prefix}-step-{step}"
