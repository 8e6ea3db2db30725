"""Rollouts: which prompts a step uses, sampling responses, and the no-grad forwards that score them.

Every rank runs the same number of `generate` calls and forwards with the same chunking, so collectives inside
them (ZeRO-3 parameter gathers) line up even when ranks' responses end at different lengths.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from medqa.models.generation import chat_input_ids, left_pad
from medqa.train.ppo import core


class PromptOrder:
    """Prompt indices for step s and rank r, a pure function of (seed, s, r): a resumed run sees the same data.

    The stream is a new seeded permutation of the prompts per epoch; step s takes the next `global_batch` items,
    rank r the r-th slice of them."""

    def __init__(self, n_prompts: int, seed: int, batch_size: int, world_size: int):
        self.n, self.seed, self.batch_size, self.world_size = n_prompts, seed, batch_size, world_size
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            order = list(range(self.n))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            self._perms = {epoch: order}
        return self._perms[epoch]

    def indices(self, step: int, rank: int) -> list[int]:
        start = (step * self.world_size + rank) * self.batch_size
        return [self._perm(g // self.n)[g % self.n] for g in range(start, start + self.batch_size)]


@dataclass
class RolloutBatch:
    """One rank's rollouts: left-padded queries, right-padded responses, and the sequence they form."""

    query_ids: torch.Tensor  # (B, P) left-padded
    query_mask: torch.Tensor
    response_ids: torch.Tensor  # (B, T) padded after the first EOS
    response_mask: torch.Tensor  # 1 up to and including the first EOS
    has_eos: torch.Tensor  # (B,) bool
    texts: list[str]  # decoded responses (special tokens removed, <think> tags kept)

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.response_mask], dim=1)

    def __len__(self) -> int:
        return self.query_ids.shape[0]


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from each row's first real token (left padding does not shift them)."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def query_ids(tokenizer, prompts: list[list[dict]], enable_thinking: bool, max_prompt_length: int) -> list[list[int]]:
    """Each chat prompt as the model's input ids (the model's chat template, `medqa.models.chat`; `chat_input_ids` keeps
    special-token text in a question as text), cut to `max_prompt_length` on the tokenizer's truncation side (the
    prompts file is checked against it when it is read)."""
    rows = [chat_input_ids(tokenizer, messages, enable_thinking) for messages in prompts]
    if getattr(tokenizer, "truncation_side", "right") == "left":
        return [ids[-max_prompt_length:] for ids in rows]
    return [ids[:max_prompt_length] for ids in rows]


def _batch(tokenizer, query: dict, response: torch.Tensor, stop_ids: list[int]) -> RolloutBatch:
    """The batch of left-padded queries and their responses, masked after each response's first stop id."""
    if response.shape[1] == 0:  # every row stopped at once is impossible with max_new_tokens >= 1, but be safe
        response = torch.full((query["input_ids"].shape[0], 1), stop_ids[0], device=query["input_ids"].device)
    mask, has_eos = core.response_mask(response, stop_ids)
    response = torch.where(mask.bool(), response, torch.full_like(response, tokenizer.pad_token_id))
    decoded = [tokenizer.decode(ids[: int(m.sum())], skip_special_tokens=True).strip()
               for ids, m in zip(response.tolist(), mask, strict=True)]
    return RolloutBatch(query["input_ids"], query["attention_mask"], response, mask, has_eos, decoded)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[dict]], *, max_prompt_length: int, max_new_tokens: int,
             temperature: float, top_p: float, top_k: int, enable_thinking: bool, stop_ids: list[int],
             repetition_penalty: float = 1.0) -> RolloutBatch:
    """Sample one response per chat prompt with the trainer's model (`rollout_engine: hf`), in one left-padded batch,
    stopping at `stop_ids` (`medqa.models.chat.stop_ids`)."""
    device = next(model.parameters()).device
    query = left_pad(tokenizer, query_ids(tokenizer, prompts, enable_thinking, max_prompt_length), device)
    out = model.generate(input_ids=query["input_ids"], attention_mask=query["attention_mask"], do_sample=True,
                         temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty,
                         max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                         use_cache=True)
    return _batch(tokenizer, query, out[:, query["input_ids"].shape[1]:], stop_ids)


def generate_on_server(client, model_name: str, tokenizer, prompts: list[list[dict]], *, seeds: list[int],
                       max_prompt_length: int, max_new_tokens: int, temperature: float, top_p: float, top_k: int,
                       enable_thinking: bool, stop_ids: list[int], repetition_penalty: float = 1.0,
                       device: torch.device | str = "cpu") -> tuple[RolloutBatch, torch.Tensor]:
    """The same rollouts sampled by a vLLM server (`rollout_engine: vllm`, `medqa.engine`) from adapter `model_name`:
    the prompts go as token ids, one seed per row, and the server's token ids come back with each token's log-prob
    under the sampling distribution — returned beside the batch as the behaviour log-probs (B, T; 0 after the end)."""
    from medqa.engine import Sampling

    rows = query_ids(tokenizer, prompts, enable_thinking, max_prompt_length)
    sampling = Sampling(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                        repetition_penalty=repetition_penalty, stop_token_ids=tuple(stop_ids))
    completions = [c[0] for c in client.complete(model_name, rows, sampling, seeds=seeds)]
    width = max(1, *(len(c.token_ids) for c in completions))
    response = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    behaviour = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, c in enumerate(completions):
        response[i, : len(c.token_ids)] = torch.tensor(c.token_ids, dtype=torch.long)
        behaviour[i, : len(c.logprobs)] = torch.tensor(c.logprobs, dtype=torch.float32)
    batch = _batch(tokenizer, left_pad(tokenizer, rows, device), response.to(device), stop_ids)
    return batch, behaviour.to(device) * batch.response_mask


def sampling(batch: RolloutBatch, rows: slice | torch.Tensor, temperature: float, repetition_penalty: float = 1.0
             ) -> core.Sampling:
    """The distribution `generate` sampled the responses of `rows` from (temperature, repetition penalty over
    the prompt and the response so far)."""
    context = batch.query_ids[rows] if repetition_penalty != 1.0 else None
    return core.Sampling(temperature, repetition_penalty, context)


def forward(model, batch: RolloutBatch, rows: slice | torch.Tensor, temperature: float, with_entropy: bool = False,
            repetition_penalty: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(log-probs, values, entropy or None) of the response tokens of `rows`, each (n, T).

    The logits go through the sampling temperature and repetition penalty, so the log-probs are those of the
    distribution that sampled the tokens."""
    input_ids, attention_mask = batch.input_ids[rows], batch.attention_mask[rows]
    P = batch.query_ids.shape[1]
    logits, values = model(input_ids, attention_mask, position_ids(attention_mask), logits_from=P - 1)
    logits = logits[:, :-1]  # position P-1+t predicts response token t
    dist = sampling(batch, rows, temperature, repetition_penalty)
    if with_entropy:
        logprobs, entropy = core.logprobs_and_entropy(logits, batch.response_ids[rows], dist)
    else:
        logprobs, entropy = core.logprobs_from_logits(logits, batch.response_ids[rows], dist), None
    return logprobs, values[:, :-1].float(), entropy
