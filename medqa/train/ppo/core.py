"""PPO math as small pure tensor functions (no model, no distributed state): easy to test by hand.

Shapes: `B` sequences × `T` response tokens. `mask` is 1 on the response tokens that count (the generated tokens
up to and including the first EOS) and 0 on the padding after them.

The names follow the PPO-for-language-models literature (Ziegler et al. 2019; Huang et al. 2024, "The N+
implementation details of RLHF with PPO"), and each trick is named where it is used:
  * KL-penalised per-token rewards, score on the last response token (the EOS when there is one),
  * optionally a leave-one-out baseline over each prompt's group of rollouts (RLOO), before the KL penalty,
  * GAE with γ/λ over the response only (value 0 after the last token),
  * advantage whitening over the masked tokens, optionally over the global batch of every rank,
  * clipped surrogate policy loss, clipped value loss, approximate KL for early stopping,
  * explained variance of the value head.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.utils.checkpoint

AllReduce = Callable[[torch.Tensor], torch.Tensor]  # sums a tensor over every rank (identity for one rank)


# ---------------------------------------------------------------- masked statistics


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return (x * mask).sum() if dim is None else (x * mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean over the tokens where mask is 1 (0 when there are none, instead of NaN)."""
    mask = mask.to(x.dtype)
    count = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1.0)


def masked_moments(x: torch.Tensor, mask: torch.Tensor, all_reduce: AllReduce | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, unbiased variance, count) of the masked entries, over every rank when `all_reduce` sums across them."""
    mask = mask.to(x.dtype)
    stats = torch.stack([masked_sum(x, mask), masked_sum(x * x, mask), mask.sum()])
    if all_reduce is not None:
        stats = all_reduce(stats.clone())
    total, total_sq, count = stats.unbind()
    mean = total / count.clamp(min=1.0)
    var = (total_sq - count * mean * mean) / (count - 1).clamp(min=1.0)  # Bessel's correction
    return mean, var.clamp(min=0.0), count


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, all_reduce: AllReduce | None = None,
                  eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries (of the global batch with `all_reduce`); masked-out entries -> 0.

    `shift_mean=False` only rescales (used for rewards, whose sign carries meaning)."""
    mean, var, _ = masked_moments(x, mask, all_reduce)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(x.dtype)


# ---------------------------------------------------------------- response masks and log-probs


def response_mask(response_ids: torch.Tensor, eos_ids: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask, has_eos): mask is 1 up to and including the first EOS of each row (every id in `eos_ids` counts;
    Qwen3 lists two), all 1 when a row has none (it ran to max_new_tokens). Padding after the EOS -> 0."""
    is_eos = torch.zeros_like(response_ids, dtype=torch.bool)
    for eos in eos_ids:
        is_eos |= response_ids == eos
    has_eos = is_eos.any(dim=1)
    T = response_ids.shape[1]
    first = torch.where(has_eos, is_eos.float().argmax(dim=1), torch.full_like(has_eos, T - 1, dtype=torch.long))
    positions = torch.arange(T, device=response_ids.device).unsqueeze(0)
    return (positions <= first.unsqueeze(1)).long(), has_eos


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last counted token of each row (the EOS, or the last generated token without one)."""
    T = mask.shape[1]
    positions = torch.arange(T, device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values.clamp(min=0)


# Positions per block in the log-prob and entropy passes: each block is upcast to fp32 alone, so the extra memory
# is one block × vocabulary, never B × T × vocabulary (607,744 bytes per position at Qwen3's 151,936 tokens).
CHUNK_POSITIONS = 256


def _by_blocks(fn: Callable[..., torch.Tensor], logits: torch.Tensor, *per_position: torch.Tensor,
               chunk: int = CHUNK_POSITIONS) -> torch.Tensor:
    """`fn(logits_block, *blocks)` over blocks of `chunk` positions of (…, V) logits, concatenated back to (…) (or
    (…, k) when fn returns k values per position).

    Under autograd each block is checkpointed: its fp32 intermediates are recomputed in the backward pass instead
    of kept, so training holds one block's worth of them at a time too. The blocks are a `split`, whose backward
    is one concatenation: the logits' gradient is allocated once, not once per block."""
    shape = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1])
    if flat.shape[0] == 0:
        return flat.new_zeros(shape, dtype=torch.float32)
    blocks = zip(flat.split(chunk), *(t.reshape(-1).split(chunk) for t in per_position), strict=True)
    grad = torch.is_grad_enabled() and flat.requires_grad
    out = [torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False) if grad else fn(*args)
           for args in blocks]
    result = torch.cat(out)
    return result.view(*shape, *result.shape[1:])


def first_seen(context_ids: torch.Tensor, response_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(B, V): for each token, the first response position whose prediction already has it in the sequence — 0
    for every token of the context (left padding included: transformers' repetition penalty sees the whole
    `input_ids`), s + 1 for a token first sampled at response position s, T + 1 for a token never seen."""
    B, T = response_ids.shape
    out = torch.full((B, vocab_size), T + 1, dtype=torch.long, device=response_ids.device)
    positions = torch.arange(1, T + 1, device=response_ids.device).expand(B, T)
    out.scatter_reduce_(1, response_ids, positions, reduce="amin")
    return out.scatter_(1, context_ids.to(out.device), 0)


def penalise_repetitions(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """transformers' `RepetitionPenaltyLogitsProcessor`: the logit of a token already in the sequence is divided by
    the penalty when positive and multiplied by it when negative (CTRL, Keskar et al. 2019)."""
    return torch.where(seen, torch.where(logits < 0, logits * penalty, logits / penalty), logits)


@dataclass(frozen=True)
class Sampling:
    """The distribution rollouts are sampled from, as transformers' `generate` builds it from the logits: the
    repetition penalty first (on fp32 logits), then the temperature. PPO's log-probs and entropies are those of
    this distribution, so a penalised rollout is still on-policy. `context_ids` (B, P): the left-padded prompts,
    needed only when the penalty is on."""

    temperature: float = 1.0
    repetition_penalty: float = 1.0
    context_ids: torch.Tensor | None = None

    def __post_init__(self):
        if self.repetition_penalty != 1.0 and self.context_ids is None:
            raise ValueError("a repetition penalty needs the context ids (the prompts)")

    def scaled(self, logits: torch.Tensor, seen: torch.Tensor | None) -> torch.Tensor:
        x = logits.float()
        if seen is not None:
            x = penalise_repetitions(x, seen, self.repetition_penalty)
        return x / self.temperature

    def blocks(self, fn: Callable[..., torch.Tensor], logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """`fn(scaled_block, labels_block)` over `_by_blocks`, each block's logits through `scaled`."""
        if self.repetition_penalty == 1.0:
            return _by_blocks(lambda x, y: fn(self.scaled(x, None), y), logits, labels)
        B, T = labels.shape
        seen_from = first_seen(self.context_ids, labels, logits.shape[-1])
        rows = torch.arange(B, device=labels.device).unsqueeze(1).expand(B, T)
        positions = torch.arange(T, device=labels.device).unsqueeze(0).expand(B, T)

        def penalised(x, y, r, t):
            # One bool (positions, V) mask per block, built row by row (a block spans one or two rows), so no
            # (positions, V) integer gather is ever made.
            seen = torch.empty(x.shape, dtype=torch.bool, device=x.device)
            for b in r.unique().tolist():
                at = r == b
                seen[at] = seen_from[b].unsqueeze(0) <= t[at].unsqueeze(1)
            return fn(self.scaled(x, seen), y)

        return _by_blocks(penalised, logits, labels, rows, positions)


def _sampling(temperature: float | Sampling) -> Sampling:
    return temperature if isinstance(temperature, Sampling) else Sampling(temperature=temperature)


def _selected_logprobs(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return x.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(x, dim=-1)


def _entropy(x: torch.Tensor) -> torch.Tensor:
    logz = torch.logsumexp(x, dim=-1, keepdim=True)
    p = torch.exp(x - logz)
    return logz.squeeze(-1) - (p * x).sum(-1)


def _selected_logprobs_and_entropy(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logz = torch.logsumexp(x, dim=-1, keepdim=True)
    logprobs = x.gather(-1, labels.unsqueeze(-1)) - logz
    entropy = logz - (torch.exp(x - logz) * x).sum(-1, keepdim=True)
    return torch.cat([logprobs, entropy], dim=-1)


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor, temperature: float | Sampling = 1.0
                         ) -> torch.Tensor:
    """log π(label | context) per position in fp32, of softmax(logits / temperature) (or of a `Sampling`'s
    distribution); logits (B, T, V), labels (B, T). Selective log-softmax: the label's logit minus the
    log-sum-exp of its row, block by block, so no full (B, T, V) log-softmax or fp32 copy is ever made."""
    return _sampling(temperature).blocks(_selected_logprobs, logits, labels)


def entropy_from_logits(logits: torch.Tensor, temperature: float | Sampling = 1.0,
                        labels: torch.Tensor | None = None) -> torch.Tensor:
    """Entropy (nats, fp32) of softmax(logits / temperature) per position, block by block:
    H = log Z − Σ p·x with x the scaled logits and Z = Σ exp x. With a repetition penalty the labels (the
    sampled tokens) say what each position has already seen."""
    sampling = _sampling(temperature)
    if labels is None:
        if sampling.repetition_penalty != 1.0:
            raise ValueError("the entropy under a repetition penalty needs the labels (the sampled tokens)")
        labels = torch.zeros(logits.shape[:-1], dtype=torch.long, device=logits.device)
    return sampling.blocks(lambda x, _y: _entropy(x), logits, labels)


def logprobs_and_entropy(logits: torch.Tensor, labels: torch.Tensor, temperature: float | Sampling = 1.0
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """`logprobs_from_logits` and `entropy_from_logits` in one pass over the blocks (one upcast and one
    log-sum-exp per block, one gradient for the logits)."""
    both = _sampling(temperature).blocks(_selected_logprobs_and_entropy, logits, labels)
    return both[..., 0], both[..., 1]


# ---------------------------------------------------------------- KL and rewards


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from tokens sampled from π (Schulman, "Approximating KL divergence").

    k1 = log π − log π_ref (unbiased, can be negative per token); k3 = (r − 1) − log r with r = π_ref/π
    (unbiased, always ≥ 0, lower variance)."""
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}: use k1 or k3")


def kl_penalised_rewards(scores: torch.Tensor, kl: torch.Tensor, kl_coef: float, mask: torch.Tensor) -> torch.Tensor:
    """Per-token rewards: −kl_coef·KL on every response token, plus the sequence's score on its last counted token
    (the EOS, or the last generated token when there is no EOS). Padding gets 0."""
    mask = mask.to(kl.dtype)
    rewards = -kl_coef * kl * mask
    last = last_token_index(mask)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards


# ---------------------------------------------------------------- advantages


def group_baseline(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """Leave-one-out baseline (RLOO, Ahmadian et al. 2024): `scores` holds consecutive groups of `group_size`
    rollouts of one prompt; each score minus the mean of its group's *other* scores. A prompt every rollout
    scores the same on gives 0, whatever its level."""
    if group_size < 2 or scores.shape[0] % group_size:
        raise ValueError(f"need groups of >= 2 and {scores.shape[0]} scores divisible by {group_size}")
    groups = scores.view(-1, group_size)
    others = (groups.sum(1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others).reshape(scores.shape)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the response tokens; returns (advantages, returns).

    δ_t = r_t + γ·V_{t+1} − V_t, A_t = δ_t + γλ·A_{t+1}; the value after the last counted token is 0 (the episode
    ends there), and padding contributes nothing. returns = A + V (the value targets)."""
    mask = mask.to(values.dtype)
    values = values * mask
    rewards = rewards * mask
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = (delta + gamma * lam * last_gae) * mask[:, t]
        advantages[:, t] = last_gae
    return advantages, (advantages + values) * mask


# ---------------------------------------------------------------- losses


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                cliprange: float = 0.2, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate objective (negated, to minimise): mean over tokens of max(−A·ρ, −A·clip(ρ, 1±ε)), each token's
    term times its `weights` when given (the truncated importance weights of `truncated_is_weights`).

    Also returns the clip fraction and the approximate KL between the old and the new policy,
    ½·mean((log ρ)²), used to stop the epoch loop early."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    per_token = torch.maximum(unclipped, clipped)
    loss = masked_mean(per_token if weights is None else per_token * weights, mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((clipped > unclipped).float(), mask),
                 "approx_kl": masked_mean(0.5 * log_ratio.pow(2), mask),
                 "ratio": masked_mean(ratio, mask)}
    return loss, stats


def truncated_is_weights(old_logprobs: torch.Tensor, behaviour_logprobs: torch.Tensor, mask: torch.Tensor,
                         cap: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Truncated importance sampling for rollouts sampled by another engine (a vLLM server): per token
    w = min(π_old / π_behaviour, cap) = min(exp(old − behaviour), cap), where π_old is the trainer's own forward of
    the policy that sampled and π_behaviour the engine's log-prob of the same token. The two differ only by numerics
    (kernels, precision) or by a nucleus the trainer does not apply; the weight corrects the policy gradient for it and
    the cap bounds its variance (TRL's `vllm_importance_sampling_cap`, verl's `rollout_is_threshold`).

    Stats (masked tokens only): mean |Δ log p|, the largest ratio, and the share of tokens whose ratio was capped."""
    log_ratio = (old_logprobs - behaviour_logprobs) * mask
    ratio = torch.exp(log_ratio)
    weights = torch.clamp(ratio, max=cap).detach()
    stats = {"logp_diff_mean": masked_mean(log_ratio.abs(), mask),
             "is_ratio_max": torch.where(mask.bool(), ratio, torch.zeros_like(ratio)).max(),
             "is_clipped_share": masked_mean((ratio > cap).float(), mask)}
    return weights, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               cliprange_value: float = 0.2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: ½·mean(max((V − R)², (V_clip − R)²)) with V_clip = V_old + clip(V − V_old, ±ε)."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    loss_unclipped = (values - returns).pow(2)
    loss_clipped = (clipped_values - returns).pow(2)
    loss = 0.5 * masked_mean(torch.maximum(loss_unclipped, loss_clipped), mask)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((loss_clipped > loss_unclipped).float(), mask)}
    return loss, stats


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       all_reduce: AllReduce | None = None) -> float:
    """1 − Var(R − V)/Var(R) over the masked tokens: 1 = perfect value head, 0 = no better than a constant."""
    _, var_returns, _ = masked_moments(returns, mask, all_reduce)
    _, var_residual, _ = masked_moments(returns - values, mask, all_reduce)
    if float(var_returns) == 0.0:
        return float("nan")
    return float(1.0 - var_residual / var_returns)
