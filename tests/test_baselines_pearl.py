"""Offline PEARL: the context posterior, the KL bottleneck and the SAC losses against hand computations,
gradient routing, the online belief update and a short learning check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_baselines_helpers import (  # noqa: F401 (one_torch_thread is an autouse fixture)
    SyntheticMetaDataModule,
    one_torch_thread,
    point_robot_buffers,
    sample_task_batch,
)

from lit_offmeta.algorithms.pearl import OfflinePEARL, PearlRolloutPolicy, pearl_kl_loss
from lit_offmeta.algorithms.sac import SquashedGaussianActor
from lit_offmeta.nn.context_encoder import ContextEncoder, kl_to_standard_normal, product_of_gaussians


def small_pearl(**kwargs) -> OfflinePEARL:
    defaults = dict(obs_dim=2, action_dim=2, latent_dim=3, hidden=[16, 16], encoder_hidden=[16])
    return OfflinePEARL(**{**defaults, **kwargs})


def test_product_of_gaussians_by_hand():
    """N(1, 1) x N(3, 3): precision 1 + 1/3 = 4/3 -> var 3/4, mean 3/4 (1/1 + 3/3) = 3/2."""
    mu_n = torch.tensor([[1.0], [3.0]])
    var_n = torch.tensor([[1.0], [3.0]])
    mu, var = product_of_gaussians(mu_n, var_n)
    assert torch.allclose(var, torch.tensor([0.75]))
    assert torch.allclose(mu, torch.tensor([1.5]))


def test_product_of_gaussians_is_order_free_and_batched():
    """The posterior does not depend on the order of the context (PEARL's permutation invariance)."""
    g = torch.Generator().manual_seed(0)
    mu_n, var_n = torch.randn(4, 10, 3, generator=g), torch.rand(4, 10, 3, generator=g) + 0.1
    perm = torch.randperm(10, generator=g)
    a, b = product_of_gaussians(mu_n, var_n), product_of_gaussians(mu_n[:, perm], var_n[:, perm])
    assert torch.allclose(a[0], b[0], atol=1e-6) and torch.allclose(a[1], b[1], atol=1e-6)
    assert a[0].shape == (4, 3)


def test_kl_to_standard_normal_by_hand():
    """mu = (1, 0), var = (2, 0.5): 0.5 [(2 + 1 - 1 - ln 2) + (0.5 - 1 - ln 0.5)] = 0.75."""
    kl = kl_to_standard_normal(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.5]))
    assert kl.item() == pytest.approx(0.75, abs=1e-6)
    # and agrees with torch.distributions
    p = torch.distributions.Normal(torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.5]).sqrt())
    q = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    assert kl.item() == pytest.approx(torch.distributions.kl_divergence(p, q).sum().item(), abs=1e-6)


def test_pearl_kl_loss_sums_over_tasks():
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    var = torch.tensor([[2.0, 0.5], [1.0, 1.0]])  # KLs 0.75 and 0
    assert pearl_kl_loss(mu, var, kl_weight=0.1).item() == pytest.approx(0.075, abs=1e-7)


def test_critic_loss_uses_the_scaled_reward_and_the_task_latent():
    """The critic term equals the SAC regression written out by hand with ``concat(s, z)`` inputs: rewards
    scaled by ``reward_scale``, bootstrapping through the target critics at the policy's next action."""
    torch.manual_seed(0)
    model = small_pearl(reward_scale=3.0, gamma=0.8)
    batch = sample_task_batch(point_robot_buffers([0, 1], episodes=3), [0, 1], 8, 8, torch.Generator())
    torch.manual_seed(5)
    out = model.compute_losses(batch, sample_z=False)
    # by hand, same random stream: the next-action sample is the first draw after the posterior
    torch.manual_seed(5)
    mu, _ = model.encoder(batch.support)
    z = mu[:, None, :].expand(2, 8, 3)
    q = batch.query
    next_in = torch.cat([q["next_obs"], z], -1)
    with torch.no_grad():
        next_a, next_logp = model.policy.sample(next_in)
        nq1, nq2 = model.critic_target(next_in, next_a)
        y = 3.0 * q["rewards"] + 0.8 * (1 - q["terminals"]) * (torch.minimum(nq1, nq2) - 0.2 * next_logp)
        q1, q2 = model.critic(torch.cat([q["obs"], z], -1), q["actions"])
    expected = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
    assert out["loss_critic"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradients_reach_the_right_parameters():
    """The full loss trains encoder, critics and actor; the target critics never get gradients."""
    torch.manual_seed(0)
    model = small_pearl()
    batch = sample_task_batch(point_robot_buffers([0, 1], episodes=4), [0, 1], 16, 16, torch.Generator())
    model.compute_losses(batch)["loss"].backward()
    for name in ("encoder", "critic", "policy"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, name
    assert all(p.grad is None for p in model.critic_target.parameters())


def test_encoder_receives_no_actor_gradient():
    """The actor loss alone sends no gradient to the encoder (z is detached) nor to the critics."""
    torch.manual_seed(0)
    model = small_pearl(kl_weight=0.0)
    batch = sample_task_batch(point_robot_buffers([0, 1], episodes=4), [0, 1], 16, 16, torch.Generator())
    out = model.compute_losses(batch)
    model.zero_grad()
    out["loss_actor"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.critic.parameters())
    assert all(p.grad is not None for p in model.policy.parameters())


def test_online_update_equals_posterior_of_the_union():
    """Offline context A, then observing B online == the posterior of A and B together."""
    torch.manual_seed(0)
    model = small_pearl()
    buf = point_robot_buffers([3], episodes=2)[3]
    a = {k: v[:10] for k, v in buf.items()}
    b = {k: v[10:14] for k, v in buf.items()}
    policy = model.adapt(a, online_belief_update=True)
    policy.reset(1)
    for t in range(4):
        policy.observe(
            b["obs"][t : t + 1].numpy(), b["actions"][t : t + 1].numpy(), b["rewards"][t : t + 1].numpy(),
            b["next_obs"][t : t + 1].numpy(), np.zeros(1, dtype=bool),
        )
    mu_online, var_online = policy.posterior()
    mu_all, var_all = model.infer_posterior({k: v[:14] for k, v in buf.items()})
    assert torch.allclose(mu_online[0], mu_all, atol=1e-5) and torch.allclose(var_online[0], var_all, atol=1e-6)
    # reset drops the online part only
    policy.reset(2)
    mu_a, _ = model.infer_posterior(a)
    assert torch.allclose(policy.posterior()[0], mu_a.expand(2, -1), atol=1e-5)


def test_adapt_with_zero_steps_uses_the_prior_and_acts_deterministically():
    torch.manual_seed(0)
    model = small_pearl(online_belief_update=False)
    ctx = point_robot_buffers([0], episodes=2)[0]
    prior_policy = model.adapt(ctx, steps=0)
    prior_policy.reset(3)
    mu, var = prior_policy.posterior()
    assert torch.equal(mu, torch.zeros(3, 3)) and torch.equal(var, torch.ones(3, 3))
    obs = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
    expected = model.policy.deterministic(torch.cat([torch.as_tensor(obs), torch.zeros(3, 3)], -1)).detach().numpy()
    np.testing.assert_allclose(prior_policy.act(obs), expected, atol=1e-6)
    np.testing.assert_array_equal(prior_policy.act(obs), prior_policy.act(obs))
    # online updates switched off: observe changes nothing
    prior_policy.observe(obs, obs, np.ones(3, np.float32), obs, np.zeros(3, bool))
    assert torch.equal(prior_policy.posterior()[0], torch.zeros(3, 3))


def test_rollout_policy_state_dict_round_trip(tmp_path):
    torch.manual_seed(0)
    model = small_pearl()
    policy = model.adapt(point_robot_buffers([0], episodes=2)[0])
    torch.save(policy.state_dict(), tmp_path / "p.pt")
    fresh = PearlRolloutPolicy(
        SquashedGaussianActor(2 + 3, 2, [16, 16], -torch.ones(2), torch.ones(2)), ContextEncoder(2, 2, 3, [16]),
        torch.zeros(3), torch.zeros(3),
    )
    fresh.load_state_dict(torch.load(tmp_path / "p.pt", weights_only=True))
    policy.reset(2)
    fresh.reset(2)
    obs = np.ones((2, 2), np.float32) * 0.3
    np.testing.assert_array_equal(policy.act(obs), fresh.act(obs))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(obs_dim=0), "obs_dim"),
        (dict(gamma=1.5), "gamma"),
        (dict(tau=0.0), "tau"),
        (dict(alpha=0.0), "alpha"),
        (dict(lr_critic=-1.0), "lr_critic"),
        (dict(kl_weight=-0.1), "kl_weight"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_pearl(**kwargs)


def test_adapt_rejects_a_multi_task_context():
    model = small_pearl()
    with pytest.raises(ValueError, match="one task"):
        model.adapt({"obs": torch.zeros(2, 4, 2), "actions": torch.zeros(2, 4, 2), "rewards": torch.zeros(2, 4)})
    with pytest.raises(ValueError, match="keys"):
        model.adapt({"obs": torch.zeros(4, 2)})


def _held_out_q_return_correlation(model: OfflinePEARL, buffers, task_ids) -> float:
    batch = sample_task_batch(buffers, task_ids, 32, 64, torch.Generator().manual_seed(1))
    with torch.no_grad():
        mu, _ = model.encoder(batch.support)
        z = mu[:, None].expand(len(task_ids), 64, -1)
        q1, _ = model.critic(torch.cat([batch.query["obs"], z], -1), batch.query["actions"])
    return float(np.corrcoef(q1.flatten().numpy(), batch.query["mc_returns"].flatten().numpy())[0, 1])


def test_offline_training_learns_held_out_values():
    """A short offline run (200 updates, ~5 s) makes the critic, with z inferred from each HELD-OUT task's
    support set, rank that task's transitions by their Monte-Carlo return (correlation > 0.5; ~0 at init)."""
    import lightning.pytorch as pl

    pl.seed_everything(0, verbose=False)
    dm = SyntheticMetaDataModule(
        train_ids=tuple(range(8)), test_ids=(10, 11, 12), tasks_per_batch=4, support_size=32,
        query_size=64, batches_per_epoch=200, episodes=8,
    )
    model = small_pearl(latent_dim=4, hidden=[32, 32], encoder_hidden=[32], gamma=0.9, lr_encoder=1e-3,
                        lr_critic=1e-3, lr_policy=1e-3, tau=0.05)
    before = _held_out_q_return_correlation(model, dm.buffers, dm.test_task_ids)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    after = _held_out_q_return_correlation(model, dm.buffers, dm.test_task_ids)
    assert abs(before) < 0.3 and after > 0.5, (before, after)
