"""Policy + critic in one module: a scalar value head on the policy's last hidden state.

Sharing the backbone keeps one model in memory (fits 8 GB with QLoRA). The wrapper is what DeepSpeed/DDP wrap,
so it exposes what they and TRL's `unwrap_model_for_generation` read: `.config`, gradient-checkpointing switches.
"""

from __future__ import annotations

import torch
from torch import nn

VALUE_HEAD_FILE = "value_head.pt"


class PolicyWithValueHead(nn.Module):
    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy  # a PreTrainedModel or a PeftModel around one
        hidden = policy.config.hidden_size
        self.v_head = nn.Linear(hidden, 1)
        # Zero-initialised: the first advantages are the rewards themselves, not a random critic's noise (with
        # γ=1 a random head's V_{t+1} − V_t per token swamps a sequence-level score).
        nn.init.zeros_(self.v_head.weight)
        nn.init.zeros_(self.v_head.bias)
        self.v_head.to(next(policy.parameters()).device)

    # -- what DeepSpeed and TRL's helpers read
    @property
    def config(self):
        return self.policy.config

    @property
    def is_gradient_checkpointing(self) -> bool:
        return bool(getattr(self.policy, "is_gradient_checkpointing", False))

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs=None):
        self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def gradient_checkpointing_disable(self):
        self.policy.gradient_checkpointing_disable()

    def generate(self, *args, **kwargs):
        return self.policy.generate(*args, **kwargs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                logits_from: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, values) for positions `logits_from`… (the response part; the prompt's logits are not needed)."""
        out = self.policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          output_hidden_states=True, use_cache=False, logits_to_keep=input_ids.shape[1] - logits_from)
        hidden = out.hidden_states[-1][:, logits_from:]
        values = self.v_head(hidden.to(self.v_head.weight.dtype)).squeeze(-1)
        return out.logits, values
