"""Meta behaviour cloning: the BC loss by hand, the inner step against plain autograd, the three adaptation
modes against each other, meta-gradients into the learned rates, and adaptation on held-out tasks."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from test_baselines_helpers import (  # noqa: F401 (one_torch_thread is an autouse fixture)
    SyntheticMetaDataModule,
    one_torch_thread,
    point_robot_buffers,
    sample_task_batch,
)
from torch import nn

from lit_offmeta.algorithms.losses import awr_loss, behaviour_cloning_loss
from lit_offmeta.algorithms.meta_bc import MetaBC
from lit_offmeta.meta import InnerLoopConfig
from lit_offmeta.nn import NetConfig, gaussian_log_prob


def test_bc_loss_by_hand():
    """mean 0, a = (0.2, -0.4), std 0.2: (0.04 + 0.16) / (2 * 0.04) + 2 log(0.2 sqrt(2 pi)) = 2.5 - 1.38099."""
    loss = behaviour_cloning_loss(torch.zeros(1, 2), torch.tensor([[0.2, -0.4]]), std=0.2)
    expected = 2.5 + 2 * (math.log(0.2) + 0.5 * math.log(2 * math.pi))
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert expected == pytest.approx(1.11901, abs=1e-5)


def test_bc_loss_is_awr_with_unit_weights():
    """With equal advantages every AWR weight is exp(0) = 1, so AWR reduces to the BC loss."""
    g = torch.Generator().manual_seed(0)
    mean, actions = torch.randn(16, 3, generator=g).tanh(), torch.rand(16, 3, generator=g) * 2 - 1
    bc = behaviour_cloning_loss(mean, actions)
    awr = awr_loss(gaussian_log_prob(mean, actions), torch.zeros(16))
    assert bc.item() == pytest.approx(awr.item(), rel=1e-6)


def test_inner_step_matches_plain_autograd():
    """One inner step with plain linear layers: theta' = theta - lr * grad L_BC(theta), per tensor."""
    torch.manual_seed(0)
    model = MetaBC(obs_dim=2, action_dim=2, net=NetConfig(width=8, depth=2, layer="linear"), inner_lr=0.05)
    batch = sample_task_batch(point_robot_buffers([0, 1], episodes=2), [0, 1], 16, 16, torch.Generator())
    adapted, _ = model.adapt_policy(batch.support, steps=1, first_order=False)
    for task in range(2):
        params = dict(model.policy.named_parameters())
        obs, actions = batch.support["obs"][task], batch.support["actions"][task]
        loss = behaviour_cloning_loss(model.policy(obs), actions)
        grads = torch.autograd.grad(loss, list(params.values()))
        stepped = {n: p - 0.05 * g for (n, p), g in zip(params.items(), grads)}
        expected = model.policy.effective_weights(stepped)
        for (w, b), (w_exp, b_exp) in zip(adapted, expected):
            assert torch.allclose(w[task], w_exp, atol=1e-6) and torch.allclose(b[task], b_exp, atol=1e-6)


@pytest.mark.parametrize("layer", ["weight_transform", "bias_transform"])
def test_adaptation_modes_agree_on_the_meta_gradient(layer):
    """closed_form (default), vmap and the per-task loop give the same outer loss and meta-gradient, 2 steps."""
    batch = sample_task_batch(point_robot_buffers([0, 1, 2], episodes=2), [0, 1, 2], 16, 16, torch.Generator())
    results = {}
    for mode in ("closed_form", "vmap", "loop"):
        torch.manual_seed(0)
        model = MetaBC(obs_dim=2, action_dim=2, net=NetConfig(width=8, depth=2, layer=layer, latent_size=4),
                       inner_lr=0.01, inner=InnerLoopConfig(mode=mode))
        adapted, _ = model.adapt_policy(batch.support, steps=2, first_order=False)
        loss = model.outer_loss(adapted, batch.query)
        params = [*model.policy.parameters(), *model.policy_lrs.parameters()]
        results[mode] = (loss.detach(), torch.autograd.grad(loss, params))
    for mode in ("vmap", "loop"):
        assert torch.allclose(results[mode][0], results["closed_form"][0], rtol=1e-5)
        for a, b in zip(results[mode][1], results["closed_form"][1]):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), mode


def test_learned_inner_rates_get_meta_gradients_and_first_order_drops_second_order():
    torch.manual_seed(0)
    batch = sample_task_batch(point_robot_buffers([0, 1], episodes=2), [0, 1], 16, 16, torch.Generator())
    model = MetaBC(obs_dim=2, action_dim=2, net=NetConfig(width=8, depth=2, latent_size=4))
    second = model.outer_loss(model.adapt_policy(batch.support, 1, first_order=False)[0], batch.query)
    grads_second = torch.autograd.grad(second, list(model.policy_lrs.parameters()) + list(model.policy.parameters()))
    n_lrs = len(list(model.policy_lrs.parameters()))
    assert all(g.abs().sum() > 0 for g in grads_second[:n_lrs])
    first = model.outer_loss(model.adapt_policy(batch.support, 1, first_order=True)[0], batch.query)
    grads_first = torch.autograd.grad(first, list(model.policy_lrs.parameters()) + list(model.policy.parameters()))
    assert first.item() == pytest.approx(second.item(), rel=1e-6)  # same forward pass
    differs = [not torch.allclose(a, b) for a, b in zip(grads_first[n_lrs:], grads_second[n_lrs:])]
    assert any(differs)  # the Hessian term is gone


def test_adapt_returns_a_plain_sequential_that_matches_the_functional_policy(tmp_path):
    torch.manual_seed(0)
    model = MetaBC(obs_dim=2, action_dim=2, net=NetConfig(width=8, depth=2, latent_size=4),
                   inner=InnerLoopConfig(test_steps=2))
    context = point_robot_buffers([3], episodes=2)[3]
    policy = model.adapt(context)
    assert isinstance(policy, nn.Sequential)
    adapted, _ = model.adapt_policy({k: v.unsqueeze(0) for k, v in context.items()}, 2, first_order=True)
    obs = torch.randn(5, 2)
    expected = model.policy.mean_from_weights([(w[0], b[0]) for w, b in adapted], obs, 2)
    assert torch.allclose(policy(obs), expected, atol=1e-6)
    # steps=0: the meta-learned initialisation
    assert torch.allclose(model.adapt(context, steps=0)(obs), model.policy(obs), atol=1e-6)
    # loads into a hand-built Sequential, no lit-offmeta code involved
    torch.save(policy.state_dict(), tmp_path / "policy.pt")
    plain = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2), nn.Tanh())
    plain.load_state_dict(torch.load(tmp_path / "policy.pt", weights_only=True))
    assert torch.allclose(plain(obs), policy(obs))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [(dict(net={"layer": "conv"}), "layer"), (dict(net={"width": 0}), "width"), (dict(inner_lr=0.0), "inner_lr"),
     (dict(inner={"mode": "fast"}), "mode"), (dict(inner={"test_steps": -1}), "test_steps")],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MetaBC(obs_dim=2, action_dim=2, **kwargs)


def test_adapt_rejects_bad_contexts():
    model = MetaBC(obs_dim=2, action_dim=2, net=NetConfig(width=8, depth=1, layer="linear"))
    with pytest.raises(ValueError, match="'obs' and 'actions'"):
        model.adapt({"obs": torch.zeros(4, 2)})
    with pytest.raises(ValueError, match=r"must be \[B, 2\] \(one task\)"):
        model.adapt({"obs": torch.zeros(2, 4, 2), "actions": torch.zeros(2, 4, 2)})


def test_meta_training_makes_one_step_adaptation_help_on_held_out_tasks():
    """After a short meta-training run, one inner BC step on a held-out task's support set lowers its query
    BC loss (validation's post- vs pre-adaptation loss), and both fall below the untrained model's."""
    pl.seed_everything(0, verbose=False)
    dm = SyntheticMetaDataModule(train_ids=tuple(range(10)), test_ids=(10, 11, 12), tasks_per_batch=5,
                                 support_size=64, query_size=64, batches_per_epoch=150, episodes=8)
    model = MetaBC(obs_dim=2, action_dim=2, net=NetConfig(width=32, depth=2, latent_size=16), lr_policy=1e-3,
                   inner_lr=1e-2)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    before = trainer.validate(model, datamodule=dm, verbose=False)[0]
    trainer.fit(model, datamodule=dm)
    after = trainer.validate(model, datamodule=dm, verbose=False)[0]
    assert after["val/loss_policy_post"] < after["val/loss_policy_pre"], after
    assert after["val/loss_policy_post"] < before["val/loss_policy_post"] - 0.5, (before, after)
