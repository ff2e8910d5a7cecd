"""MACAW's pure losses against hand computations on tiny tensors."""

from __future__ import annotations

import math

import torch

from lit_offmeta.algorithms.losses import (
    advantage_regression_loss,
    awr_loss,
    awr_weights,
    inner_policy_loss,
    mc_value_loss,
    mc_value_target,
)


def test_mc_value_target_bootstraps_only_where_cut():
    """target = mc + gamma^(T-t) V(s_T); a terminated trajectory has discount 0."""
    targets = mc_value_target(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.0]), torch.tensor([4.0, 100.0]))
    torch.testing.assert_close(targets, torch.tensor([3.0, 2.0]))


def test_mc_value_target_is_a_constant():
    bootstrap = torch.tensor([4.0], requires_grad=True)
    assert not mc_value_target(torch.tensor([1.0]), torch.tensor([0.5]), bootstrap).requires_grad


def test_mc_value_loss_by_hand():
    """Eq. 2: mean((V - R)^2) = ((1-0)^2 + (2-4)^2) / 2 = 2.5; gradient 2 (V - R) / B w.r.t. V only."""
    values = torch.tensor([1.0, 2.0], requires_grad=True)
    targets = torch.tensor([0.0, 4.0], requires_grad=True)
    loss = mc_value_loss(values, targets)
    torch.testing.assert_close(loss, torch.tensor(2.5))
    loss.backward()
    torch.testing.assert_close(values.grad, torch.tensor([1.0, -2.0]))
    assert targets.grad is None


def test_awr_weights_normalise_temperature_and_clip():
    """A = [0, 1, 2, 3]: mean 1.5, population std sqrt(1.25); w = exp(min(A_norm / T, log 20))."""
    adv = torch.tensor([0.0, 1.0, 2.0, 3.0])
    norm = (adv - 1.5) / math.sqrt(1.25)
    torch.testing.assert_close(awr_weights(adv, temperature=1.0), torch.exp(norm), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(awr_weights(adv, temperature=0.5), torch.exp(norm / 0.5), rtol=1e-5, atol=1e-6)
    # With T = 0.1 the two largest exceed log 20 and are clipped to exactly 20; the low side is not clipped.
    clipped = awr_weights(adv, temperature=0.1, max_weight=20.0)
    torch.testing.assert_close(clipped[2:], torch.tensor([20.0, 20.0]))
    torch.testing.assert_close(clipped[:2], torch.exp(norm[:2] / 0.1), rtol=1e-5, atol=1e-12)


def test_awr_weights_are_shift_and_scale_invariant_and_constant():
    adv = torch.tensor([0.3, -1.0, 2.0], requires_grad=True)
    w = awr_weights(adv)
    assert not w.requires_grad
    torch.testing.assert_close(awr_weights(adv.detach() * 7 + 3), w, rtol=1e-5, atol=1e-6)


def test_awr_loss_by_hand():
    """Eq. 1: mean(-w log pi) with A = [-1, 1] -> A_norm = [-1, 1], w = [e^-1, e]."""
    log_probs = torch.tensor([-2.0, -0.5], requires_grad=True)
    loss = awr_loss(log_probs, torch.tensor([-1.0, 1.0]))
    expected = -(math.exp(-1) * -2.0 + math.exp(1) * -0.5) / 2
    torch.testing.assert_close(loss, torch.tensor(expected), rtol=1e-6, atol=1e-6)
    loss.backward()
    torch.testing.assert_close(log_probs.grad, torch.tensor([-math.exp(-1) / 2, -math.exp(1) / 2]))


def test_advantage_regression_loss_by_hand():
    """Eq. 4 on the RAW advantage: ((0.5 - 2)^2 + (0 - (-1))^2) / 2 = 1.625; no gradient into the label."""
    predicted = torch.tensor([0.5, 0.0], requires_grad=True)
    advantages = torch.tensor([2.0, -1.0], requires_grad=True)
    loss = advantage_regression_loss(predicted, advantages)
    torch.testing.assert_close(loss, torch.tensor(1.625))
    loss.backward()
    torch.testing.assert_close(predicted.grad, torch.tensor([-1.5, 1.0]))
    assert advantages.grad is None


def test_inner_policy_loss_by_hand_and_lambda_gradient():
    """Eq. 3: L_AWR + lambda L_ADV = 1.2 + 0.5 * 3 = 2.7; d/d lambda = L_ADV = 3."""
    lam = torch.tensor(0.5, requires_grad=True)
    loss = inner_policy_loss(torch.tensor(1.2), torch.tensor(3.0), lam)
    torch.testing.assert_close(loss, torch.tensor(2.7))
    loss.backward()
    torch.testing.assert_close(lam.grad, torch.tensor(3.0))
