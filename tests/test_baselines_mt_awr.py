"""Offline multi-task AWR + fine-tuning: losses by hand, the slow value target, fine-tuning on copies."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from test_baselines_helpers import (  # noqa: F401 (one_torch_thread is an autouse fixture)
    SyntheticMetaDataModule,
    one_torch_thread,
    point_robot_buffers,
    sample_task_batch,
)
from torch import nn

from lit_offmeta.algorithms.mt_awr import MultiTaskAWR
from lit_offmeta.nn import NetConfig


def _constant_networks(model: MultiTaskAWR, value: float) -> None:
    """V(s) = value and policy mean = tanh(0) = 0 everywhere: zero every weight, set V's output bias."""
    with torch.no_grad():
        for p in [*model.value.parameters(), *model.policy.parameters()]:
            p.zero_()
        model.value.layers[-1].bias.fill_(value)


def test_losses_by_hand():
    """K = 1, B = 3, V = 1, policy mean 0 (std 0.2), gamma folded into the data:

    targets R = mc + disc * V(s_T) = (1, 2 + 0.5, 3); value loss = mean((1 - R)^2) = (0 + 2.25 + 4) / 3;
    advantages A = R - V = (0, 1.5, 2) -> normalised (population std), weights exp(min(A~, log 20));
    AWR = -mean(w * log N(a; 0, 0.04 I)).
    """
    model = MultiTaskAWR(obs_dim=2, action_dim=2, net=NetConfig(width=4, depth=1, layer="linear"))
    _constant_networks(model, 1.0)
    actions = torch.tensor([[0.1, 0.0], [0.0, -0.2], [0.3, 0.1]])
    data = {
        "obs": torch.zeros(1, 3, 2),
        "actions": actions.unsqueeze(0),
        "mc_returns": torch.tensor([[1.0, 2.0, 3.0]]),
        "bootstrap_obs": torch.zeros(1, 3, 2),
        "bootstrap_discounts": torch.tensor([[0.0, 0.5, 0.0]]),
    }
    loss_value, loss_policy, weights = model.losses(model.value, model.policy, data, model.value)
    assert loss_value.item() == pytest.approx(6.25 / 3, abs=1e-6)
    adv = np.array([0.0, 1.5, 2.0])
    normalised = (adv - adv.mean()) / adv.std()
    w = np.exp(np.minimum(normalised, math.log(20.0)))
    log_prob = (-(actions.numpy() ** 2) / (2 * 0.04) - math.log(0.2) - 0.5 * math.log(2 * math.pi)).sum(-1)
    assert np.allclose(weights.numpy()[0], w, atol=1e-5)
    assert loss_policy.item() == pytest.approx(float(-(w * log_prob).mean()), rel=1e-5)


def test_no_bootstrap_uses_pure_monte_carlo_returns():
    model = MultiTaskAWR(obs_dim=2, action_dim=2, net=NetConfig(width=4, depth=1, layer="linear"), bootstrap=False)
    _constant_networks(model, 1.0)
    data = {"obs": torch.zeros(1, 2, 2), "actions": torch.zeros(1, 2, 2), "mc_returns": torch.tensor([[1.0, 3.0]]),
            "bootstrap_obs": torch.zeros(1, 2, 2), "bootstrap_discounts": torch.tensor([[0.5, 0.5]])}
    loss_value, _, _ = model.losses(model.value, model.policy, data, model.value)
    assert loss_value.item() == pytest.approx((0.0 + 4.0) / 2)


def test_slow_value_target_follows_the_value_function():
    """After one training step: target = 0.9 * old target + 0.1 * new value parameters."""
    pl.seed_everything(0, verbose=False)
    dm = SyntheticMetaDataModule(batches_per_epoch=1, episodes=4)
    model = MultiTaskAWR(obs_dim=2, action_dim=2, net=NetConfig(width=8, depth=1, layer="linear"), lr_value=1e-2)
    old_target = [p.clone() for p in model.value_target.parameters()]
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    for target, old, new in zip(model.value_target.parameters(), old_target, model.value.parameters()):
        assert torch.allclose(target, 0.9 * old + 0.1 * new, atol=1e-7)
    assert any(not torch.allclose(o, n) for o, n in zip(old_target, model.value.parameters()))


def test_finetuning_works_on_copies_and_lowers_the_task_losses():
    """20 Adam steps on one task's batch: the module is untouched, the copies fit that batch better."""
    torch.manual_seed(0)
    model = MultiTaskAWR(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, layer="linear"),
                         finetune_lr_value=1e-2, finetune_lr_policy=1e-2)
    context = {k: v[:128] for k, v in point_robot_buffers([4], episodes=8)[4].items()}
    before = {n: p.clone() for n, p in model.state_dict().items()}
    policy, value = model.finetune(context, steps=20)
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())
    data = {k: v.unsqueeze(0) for k, v in context.items()}
    with torch.no_grad():
        v0, p0, _ = model.losses(model.value, model.policy, data, model.value)
        v1, p1, _ = model.losses(value, policy, data, value)
    assert v1 < 0.5 * v0 and p1 < p0, (v0, v1, p0, p1)
    adapted = model.adapt(context)  # default: the paper's 20 steps
    assert isinstance(adapted, nn.Sequential)
    obs = torch.randn(4, 2)
    assert torch.allclose(adapted(obs), policy(obs), atol=1e-6)  # same seedless, deterministic fine-tuning
    assert torch.allclose(model.adapt(context, steps=0)(obs), model.policy(obs), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [(dict(net={"layer": "rnn"}), "layer"), (dict(finetune_steps=-1), "finetune_steps"),
     (dict(finetune_lr_policy=0.0), "finetune_lr_policy"), (dict(target_update_rate=2.0), "target_update_rate")],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiTaskAWR(obs_dim=2, action_dim=2, **kwargs)


def test_adapt_names_the_missing_keys():
    model = MultiTaskAWR(obs_dim=2, action_dim=2, net=NetConfig(width=4, depth=1, layer="linear"))
    with pytest.raises(ValueError, match=r"lacks key\(s\) \['mc_returns'"):
        model.adapt({"obs": torch.zeros(4, 2), "actions": torch.zeros(4, 2)})


def test_multi_task_training_and_finetuning_improve_held_out_losses():
    """A short multi-task run lowers held-out value and AWR losses; fine-tuning lowers the value loss further."""
    pl.seed_everything(0, verbose=False)
    dm = SyntheticMetaDataModule(train_ids=tuple(range(10)), test_ids=(10, 11, 12), tasks_per_batch=5,
                                 support_size=64, query_size=64, batches_per_epoch=150, episodes=8)
    model = MultiTaskAWR(obs_dim=2, action_dim=2, net=NetConfig(width=32, depth=2, layer="linear"), lr_value=1e-3,
                         lr_policy=1e-3)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    before = trainer.validate(model, datamodule=dm, verbose=False)[0]
    trainer.fit(model, datamodule=dm)
    after = trainer.validate(model, datamodule=dm, verbose=False)[0]
    assert after["val/loss_value_pre"] < 0.5 * before["val/loss_value_pre"], (before, after)
    assert after["val/loss_policy_pre"] < before["val/loss_policy_pre"], (before, after)
    assert after["val/loss_value_post"] < after["val/loss_value_pre"], after
