"""PPO math against values computed by hand (medqa/train/ppo/core.py, medqa/train/ppo/kl.py)."""

from __future__ import annotations

import math

import pytest
import torch

from medqa.train.ppo import core
from medqa.train.ppo.kl import AdaptiveKLController, FixedKLController


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def test_masked_mean_and_whiten_by_hand():
    x = t([[1, 2, 3], [4, 5, 6]])
    mask = t([[1, 1, 0], [1, 0, 0]])
    assert core.masked_mean(x, mask).item() == pytest.approx(7 / 3)
    assert core.masked_mean(x, mask, dim=1).tolist() == pytest.approx([1.5, 4.0])
    assert core.masked_mean(x, torch.zeros_like(x)).item() == 0.0  # no NaN for an empty mask
    mean, var, count = core.masked_moments(x, mask)
    assert (mean.item(), var.item(), count.item()) == pytest.approx((7 / 3, 7 / 3, 3))  # unbiased: 42/18
    w = core.masked_whiten(x, mask)
    std = math.sqrt(7 / 3)
    assert w.flatten().tolist() == pytest.approx([(1 - 7 / 3) / std, (2 - 7 / 3) / std, 0, (4 - 7 / 3) / std, 0, 0], abs=1e-5)
    scaled = core.masked_whiten(x, mask, shift_mean=False)  # only rescaled: the mean is kept
    assert scaled[0, 0].item() == pytest.approx((1 - 7 / 3) / std + 7 / 3, abs=1e-5)


def test_global_whitening_over_ranks_equals_whitening_the_whole_batch():
    torch.manual_seed(0)
    x = torch.randn(4, 5)
    mask = t([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]])
    halves = [(x[:2], mask[:2]), (x[2:], mask[2:])]

    def all_reduce(stats):  # what torch.distributed.all_reduce(SUM) returns on 2 ranks
        return sum(torch.stack([core.masked_sum(a, m), core.masked_sum(a * a, m), m.sum()]) for a, m in halves)

    whole = core.masked_whiten(x, mask)
    rank0 = core.masked_whiten(*halves[0], all_reduce=all_reduce)
    rank1 = core.masked_whiten(*halves[1], all_reduce=all_reduce)
    assert torch.allclose(torch.cat([rank0, rank1]), whole, atol=1e-5)
    assert not torch.allclose(core.masked_whiten(*halves[0]), whole[:2], atol=1e-3)  # local stats differ


def test_response_mask_every_eos_counts_and_no_eos_keeps_all():
    ids = torch.tensor([[5, 1, 0, 0], [5, 6, 7, 8], [2, 9, 1, 0]])
    mask, has_eos = core.response_mask(ids, eos_ids=[1, 2])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert has_eos.tolist() == [True, False, True]
    assert core.last_token_index(mask).tolist() == [1, 3, 0]


def test_kl_estimators_by_hand():
    lp, ref = t([-1.0, -2.0]), t([-1.5, -1.0])
    assert core.kl_estimate(lp, ref, "k1").tolist() == pytest.approx([0.5, -1.0])
    assert core.kl_estimate(lp, ref, "k3").tolist() == pytest.approx([math.exp(-0.5) - 0.5, math.e - 2.0], abs=1e-6)
    assert (core.kl_estimate(t([-3.0, 0.0]), t([0.0, -3.0]), "k3") >= 0).all()
    with pytest.raises(ValueError, match="k2"):
        core.kl_estimate(lp, ref, "k2")


def test_kl_penalised_rewards_score_on_eos_or_last_token():
    kl = t([[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]])
    mask = t([[1, 1, 0], [1, 1, 1]])  # row 0 ended with EOS at index 1; row 1 has no EOS
    r = core.kl_penalised_rewards(t([2.0, 3.0]), kl, 0.1, mask)
    assert r.flatten().tolist() == pytest.approx([-0.01, -0.02 + 2.0, 0.0, -0.05, -0.05, -0.05 + 3.0])


def test_gae_by_hand_full_masked_and_discounted():
    adv, ret = core.gae(t([[0, 0, 1]]), t([[0.5, 0.5, 0.5]]), t([[1, 1, 1]]), gamma=1.0, lam=0.5)
    assert adv[0].tolist() == pytest.approx([0.125, 0.25, 0.5])
    assert ret[0].tolist() == pytest.approx([0.625, 0.75, 1.0])
    # Padding after the last token: its reward/value are ignored and the episode ends at the last counted token.
    adv, ret = core.gae(t([[0, 1, 99]]), t([[0.5, 0.5, 7]]), t([[1, 1, 0]]), gamma=1.0, lam=0.5)
    assert adv[0].tolist() == pytest.approx([0.25, 0.5, 0.0])
    assert ret[0].tolist() == pytest.approx([0.75, 1.0, 0.0])
    adv, _ = core.gae(t([[0, 0, 1]]), t([[0, 0, 0]]), t([[1, 1, 1]]), gamma=0.9, lam=1.0)
    assert adv[0].tolist() == pytest.approx([0.81, 0.9, 1.0])


def test_group_baseline_leave_one_out_by_hand():
    # Two prompts × 3 rollouts: 1, 2, 6 -> each minus the mean of the other two; a prompt scored the same on
    # every rollout (−1.5 ×3) gives 0 however low its level.
    out = core.group_baseline(t([1.0, 2.0, 6.0, -1.5, -1.5, -1.5]), 3)
    assert out.tolist() == pytest.approx([1 - 4.0, 2 - 3.5, 6 - 1.5, 0.0, 0.0, 0.0])
    assert core.group_baseline(t([3.0, 1.0]), 2).tolist() == pytest.approx([2.0, -2.0])
    with pytest.raises(ValueError, match="divisible"):
        core.group_baseline(t([1.0, 2.0, 3.0]), 2)
    with pytest.raises(ValueError, match=">= 2"):
        core.group_baseline(t([1.0, 2.0]), 1)


def test_clipped_policy_loss_by_hand():
    old = t([[0.0, 0.0]])
    new = torch.log(t([[1.5, 0.5]]))
    loss, stats = core.policy_loss(new, old, t([[1.0, 1.0]]), t([[1, 1]]), cliprange=0.2)
    assert loss.item() == pytest.approx((-1.2 - 0.5) / 2)  # max(-A·ρ, -A·clip(ρ)) per token
    assert stats["clipfrac"].item() == pytest.approx(0.5)
    assert stats["approx_kl"].item() == pytest.approx(0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2) / 2)
    loss, _ = core.policy_loss(new, old, t([[-1.0, -1.0]]), t([[0, 1]]), cliprange=0.2)  # masked token ignored
    assert loss.item() == pytest.approx(0.8)  # A<0, ρ=0.5: the pessimistic clipped term 0.8


def test_clipped_value_loss_and_explained_variance_by_hand():
    loss, stats = core.value_loss(t([[1.0, 0.0]]), t([[0.5, 0.5]]), t([[2.0, 0.0]]), t([[1, 1]]), 0.2)
    assert loss.item() == pytest.approx(0.5 * (1.69 + 0.09) / 2)
    assert stats["vf_clipfrac"].item() == pytest.approx(1.0)
    returns, mask = t([[1, 2, 3, 4]]), t([[1, 1, 1, 1]])
    assert core.explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert core.explained_variance(torch.full_like(returns, 2.5), returns, mask) == pytest.approx(0.0)


def test_logprobs_and_entropy():
    logits = torch.log(t([[[0.5, 0.25, 0.25]]]))
    assert core.logprobs_from_logits(logits, torch.tensor([[1]])).item() == pytest.approx(math.log(0.25))
    assert core.entropy_from_logits(logits).item() == pytest.approx(-(0.5 * math.log(0.5) + 0.5 * math.log(0.25)))
    # With a temperature: softmax([ln .5, ln .25, ln .25] / 0.5) = (.25, .0625, .0625) / .375
    p = torch.tensor([0.25, 0.0625, 0.0625]) / 0.375
    assert core.logprobs_from_logits(logits, torch.tensor([[0]]), 0.5).item() == pytest.approx(math.log(p[0]))
    assert core.entropy_from_logits(logits, 0.5).item() == pytest.approx(-(p * p.log()).sum().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_block_wise_logprobs_and_entropy_equal_the_plain_formula_and_its_gradient(dtype):
    """Blocks of 7 positions over 3 × 20 positions (not a multiple) against log_softmax on the whole fp32 tensor:
    values and gradients equal to 1e-5; bf16 logits are upcast per block."""
    g = torch.Generator().manual_seed(0)
    base = (torch.randn(3, 20, 50, generator=g) * 3).to(dtype)
    labels = torch.randint(0, 50, (3, 20), generator=g)
    plain_in = base.clone().float().requires_grad_(True)
    logp = torch.log_softmax(plain_in / 0.7, dim=-1)
    plain = logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    plain_ent = -(logp.exp() * logp).sum(-1)
    (plain.sum() + 0.3 * plain_ent.sum()).backward()

    blocks_in = base.clone().requires_grad_(True)
    fn = core._by_blocks
    got = fn(lambda x, y: core._selected_logprobs(x.float() / 0.7, y), blocks_in, labels, chunk=7)
    got_ent = fn(lambda x: core._entropy(x.float() / 0.7), blocks_in, chunk=7)
    assert got.dtype == torch.float32 and got.shape == (3, 20)
    torch.testing.assert_close(got, plain.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_ent, plain_ent.detach(), atol=1e-5, rtol=1e-5)
    (got.sum() + 0.3 * got_ent.sum()).backward()
    grad_tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)  # bf16 grads
    torch.testing.assert_close(blocks_in.grad.float(), plain_in.grad.to(dtype).float(), **grad_tol)
    # Both in one pass: the same values and gradient.
    both_in = base.clone().requires_grad_(True)
    lp, ent = fn(lambda x, y: core._selected_logprobs_and_entropy(x.float() / 0.7, y), both_in, labels, chunk=7).unbind(-1)
    torch.testing.assert_close(lp, plain.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, plain_ent.detach(), atol=1e-5, rtol=1e-5)
    (lp.sum() + 0.3 * ent.sum()).backward()
    torch.testing.assert_close(both_in.grad.float(), blocks_in.grad.float(), **grad_tol)
    # The public functions give the same values (default block size, no grad).
    with torch.no_grad():
        lp, ent = core.logprobs_and_entropy(base, labels, 0.7)
        torch.testing.assert_close(lp, plain.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ent, plain_ent.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(core.logprobs_from_logits(base, labels, 0.7), plain.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(core.entropy_from_logits(base, 0.7), plain_ent.detach(), atol=1e-5, rtol=1e-5)


def test_kl_controllers():
    c = AdaptiveKLController(0.2, target=6.0, horizon=10000)
    c.update(12.0, 100)  # KL twice the target: error clipped to +0.2
    assert c.value == pytest.approx(0.2 * 1.002)
    c.update(3.0, 100)  # half the target: error clipped to -0.2
    assert c.value == pytest.approx(0.2 * 1.002 * 0.998)
    c.update(6.0, 100)
    assert c.value == pytest.approx(0.2 * 1.002 * 0.998)
    f = FixedKLController(0.05)
    f.update(100.0, 100)
    assert f.value == 0.05
    g = AdaptiveKLController(1.0, 1.0, 1.0)
    g.load_state_dict(c.state_dict())
    assert g.value == c.value


def test_prompt_order_is_a_function_of_the_step_and_splits_ranks():
    from medqa.train.ppo.rollout import PromptOrder

    a, b = PromptOrder(10, seed=1, batch_size=2, world_size=2), PromptOrder(10, seed=1, batch_size=2, world_size=2)
    epoch = [i for s in range(0, 3) for r in range(2) for i in a.indices(s, r)][:10]
    assert sorted(epoch) == list(range(10))  # one epoch: every prompt once, ranks disjoint
    assert b.indices(7, 1) == a.indices(7, 1)  # a resumed run (fresh object) sees the same prompts


def test_config_rejects_bad_values_with_the_field_name():
    from medqa.train.ppo.config import PPOConfig, PPOModelArguments, parse_args

    with pytest.raises(ValueError, match="mini_batch_size"):
        PPOConfig(batch_size=3, mini_batch_size=2)
    with pytest.raises(ValueError, match="kl_estimator"):
        PPOConfig(kl_estimator="k2")
    with pytest.raises(ValueError, match="samples_per_prompt"):
        PPOConfig(batch_size=8, mini_batch_size=2, samples_per_prompt=3)
    with pytest.raises(ValueError, match="samples_per_prompt >= 2"):
        PPOConfig(score_baseline="group")
    with pytest.raises(ValueError, match="score_baseline"):
        PPOConfig(score_baseline="mean")
    with pytest.raises(ValueError, match="model_name_or_path"):
        PPOModelArguments()
    with pytest.raises(ValueError, match="unknown"):
        parse_args(["--config", "recipes/ppo/cpu/lora.yaml", "--no_such_option", "1"])
    model, cfg, teacher = parse_args(["--config", "recipes/ppo/lora.yaml"])
    assert (cfg.learning_rate, cfg.batch_size, cfg.mini_batch_size, cfg.target_kl, cfg.ppo_epochs) == (
        1.41e-5, 4, 1, 0.1, 4)
    assert model.mode == "lora" and cfg.w_rules == 0.6 and cfg.w_teacher == 0.4 and teacher.teacher_offline is False


def test_repetition_penalty_by_hand():
    # context [2], response [0, 2, 1]: position 0 has seen {2}, position 1 {0, 2}, position 2 {0, 2}.
    seen_from = core.first_seen(torch.tensor([[2]]), torch.tensor([[0, 2, 1]]), vocab_size=4)
    assert seen_from.tolist() == [[1, 3, 0, 4]]  # token 3 never: T + 1
    logits = torch.tensor([[[1.0, -1.0, 2.0, 0.5]] * 3])
    dist = core.Sampling(temperature=0.5, repetition_penalty=2.0, context_ids=torch.tensor([[2]]))
    got = core.logprobs_from_logits(logits, torch.tensor([[0, 2, 1]]), dist)
    # position 0: token 2 seen -> 2 / 2 = 1; position 1: also token 0 -> 0.5; then / T = 0.5.
    rows = [[1.0, -1.0, 1.0, 0.5], [0.5, -1.0, 1.0, 0.5], [0.5, -1.0, 1.0, 0.5]]
    want = [torch.log_softmax(torch.tensor(r) / 0.5, -1)[label].item() for r, label in zip(rows, [0, 2, 1], strict=True)]
    torch.testing.assert_close(got[0], torch.tensor(want))
    lp, ent = core.logprobs_and_entropy(logits, torch.tensor([[0, 2, 1]]), dist)
    torch.testing.assert_close(lp, got)
    p = torch.softmax(torch.tensor(rows) / 0.5, -1)
    torch.testing.assert_close(ent[0], -(p * p.log()).sum(-1))
    torch.testing.assert_close(core.entropy_from_logits(logits, dist, torch.tensor([[0, 2, 1]])), ent)
    # A penalty of 1 is the plain temperature-scaled distribution; a penalty without the prompts is refused.
    plain = core.logprobs_from_logits(logits, torch.tensor([[0, 2, 1]]), 0.5)
    off = core.Sampling(temperature=0.5, repetition_penalty=1.0)
    torch.testing.assert_close(core.logprobs_from_logits(logits, torch.tensor([[0, 2, 1]]), off), plain)
    with pytest.raises(ValueError, match="context ids"):
        core.Sampling(temperature=0.5, repetition_penalty=2.0)


def test_truncated_importance_weights_by_hand():
    """Rollouts sampled by a vLLM server: w = min(exp(old − behaviour), cap) per token; padding ignored."""
    old = t([[-1.0, -2.0, -3.0]])
    behaviour = t([[-1.5, -0.5, 0.0]])
    mask = t([[1, 1, 0]])
    weights, stats = core.truncated_is_weights(old, behaviour, mask, cap=1.5)
    assert weights[0, 0].item() == pytest.approx(1.5)  # e^0.5 = 1.6487 > cap
    assert weights[0, 1].item() == pytest.approx(math.exp(-1.5), rel=1e-5)
    assert stats["logp_diff_mean"].item() == pytest.approx((0.5 + 1.5) / 2)
    assert stats["is_ratio_max"].item() == pytest.approx(math.exp(0.5), rel=1e-5)
    assert stats["is_clipped_share"].item() == pytest.approx(0.5)
    # The policy loss weighs each token's clipped-surrogate term: at ratio 1, −A·w averaged over the tokens.
    logprobs = t([[-1.0, -2.0, -3.0]])
    adv = t([[2.0, 4.0, 8.0]])
    loss, _ = core.policy_loss(logprobs, old, adv, mask, 0.2, weights)
    assert loss.item() == pytest.approx(-(2.0 * 1.5 + 4.0 * math.exp(-1.5)) / 2, rel=1e-5)
    unweighted, _ = core.policy_loss(logprobs, old, adv, mask, 0.2)
    assert unweighted.item() == pytest.approx(-(2.0 + 4.0) / 2)
