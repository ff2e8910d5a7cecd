"""Online fine-tuning (paper App. C.2): the fine-tuner continues exactly the adaptation MACAW's adapt performs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_offmeta.algorithms.macaw import MACAW
from lit_offmeta.algorithms.pearl import OfflinePEARL
from lit_offmeta.callbacks.finetune import GradientFineTuner, episodes_to_transitions, online_finetune
from lit_offmeta.nn import NetConfig
from lit_offmeta.rollout import rollout
from lit_offmeta.tasks import get_family


def tiny_macaw(inner_lr: float = 0.05) -> MACAW:
    torch.manual_seed(0)
    return MACAW(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8), inner_lr_value=inner_lr,
                 inner_lr_policy=inner_lr)


def context(n: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "obs": torch.randn(n, 2, generator=g), "actions": torch.rand(n, 2, generator=g) * 2 - 1,
        "rewards": torch.randn(n, generator=g), "next_obs": torch.randn(n, 2, generator=g),
        "terminals": torch.zeros(n), "mc_returns": torch.randn(n, generator=g),
        "bootstrap_obs": torch.randn(n, 2, generator=g), "bootstrap_discounts": torch.full((n,), 0.5),
    }


def test_fine_tuner_steps_equal_adapt_and_leave_the_module_alone():
    """k fine-tuning steps on the same batch == adapt(batch, steps=k): the same update, continued."""
    model, ctx, x = tiny_macaw(), context(), torch.randn(7, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuner = GradientFineTuner(model)
    torch.testing.assert_close(tuner.policy()(x), model.adapt(ctx, steps=0)(x))
    tuner.step(ctx)
    torch.testing.assert_close(tuner.policy()(x), model.adapt(ctx, steps=1)(x), atol=1e-5, rtol=1e-5)
    tuner.step(ctx)
    torch.testing.assert_close(tuner.policy()(x), model.adapt(ctx, steps=2)(x), atol=1e-5, rtol=1e-5)
    assert (model.adapt(ctx, 2)(x) - model.adapt(ctx, 0)(x)).abs().max() > 1e-3  # the steps did move it
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert tuner.num_steps == 2


def test_episodes_to_transitions_monte_carlo_targets_by_hand():
    """Rewards 1, 2, 3 with discount 0.5: reward-to-go 2.75, 3.5, 3; bootstrap gamma^(T-t) only where cut."""
    obs = np.arange(8, dtype=np.float32).reshape(4, 2)
    cut = {"observations": obs, "actions": np.zeros((3, 2), np.float32), "rewards": np.array([1, 2, 3], np.float32),
           "terminations": np.array([False, False, False]), "truncations": np.array([False, False, True])}
    ended = {**cut, "terminations": np.array([False, False, True]), "truncations": np.array([False] * 3)}
    out = episodes_to_transitions([cut, ended], {"goal": [0.0, 1.0]}, "point_robot", discount=0.5)
    np.testing.assert_allclose(out["mc_returns"].numpy(), [2.75, 3.5, 3.0] * 2)
    np.testing.assert_allclose(out["bootstrap_discounts"].numpy(), [0.125, 0.25, 0.5, 0, 0, 0])
    np.testing.assert_allclose(out["bootstrap_obs"].numpy(), np.tile(obs[3], (6, 1)))
    np.testing.assert_allclose(out["terminals"].numpy(), [0, 0, 0, 0, 0, 1])
    np.testing.assert_allclose(out["next_obs"][:3].numpy(), obs[1:])


def test_online_finetune_schedule_and_offline_point():
    """20-step episodes, 2 gradient steps per rollout, reports at 20 and 60 env steps.

    The 0-step point is the offline adaptation alone (== a rollout of adapt(batch, 1)); one rollout reaches 20
    steps after 1 + 2 gradient steps; three rollouts reach 60 after 1 + 6.
    """
    family, model, ctx = get_family("point_robot"), tiny_macaw(inner_lr=1e-3), context()
    task = {"goal": [0.0, 1.0]}
    result = online_finetune(model, family, task, ctx, [20, 60], gradient_steps_per_rollout=2, batch_size=16,
                             seed=3)
    assert result.env_steps == [0, 20, 60]
    assert result.gradient_steps == [1, 3, 7]
    offline_only = rollout(model.adapt(ctx, steps=1), family, [task], seed=3 + 10_000).task_returns()[0]
    assert result.returns[0] == pytest.approx(offline_only, abs=1e-4)
    assert all(np.isfinite(result.returns))


def test_bad_arguments():
    family, model, ctx = get_family("point_robot"), tiny_macaw(), context()
    with pytest.raises(ValueError, match="report_env_steps"):
        online_finetune(model, family, {"goal": [0.0, 1.0]}, ctx, [0])
    with pytest.raises(ValueError, match="adapt_value"):
        GradientFineTuner(torch.nn.Linear(2, 2))


@pytest.mark.slow
def test_online_finetuning_callback_at_test(tmp_path):
    """trainer.test with OnlineFineTuning: logs finetune/return_steps_{0,20,40} and writes finetune.json whose
    offline point equals a rollout of module.adapt on the same offline batch."""
    import json

    from lightning.pytorch import Trainer

    from lit_offmeta.callbacks.finetune import OnlineFineTuning
    from lit_offmeta.collect.presets import get_preset
    from lit_offmeta.collect.runner import collect
    from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule

    data = tmp_path / "data"
    collect(get_preset("point_robot", "tiny"), data, seed=0, progress=False, log=None)
    dm = OfflineMetaDataModule("point_robot", str(data), train_ids=[0, 1], test_ids=[2], tasks_per_batch=2,
                               support_size=32, query_size=32, batches_per_epoch=2)
    model = tiny_macaw(inner_lr=1e-3)
    callback = OnlineFineTuning(report_env_steps=[20, 40], gradient_steps_per_rollout=2, adaptation_batch_size=32,
                                batch_size=16, seed=1)
    trainer = Trainer(default_root_dir=tmp_path, callbacks=[callback], logger=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu")
    trainer.test(model, datamodule=dm, verbose=False)
    result = json.loads((tmp_path / "finetune.json").read_text())
    assert result["report_env_steps"] == [0, 20, 40]
    assert result["tasks"]["2"]["gradient_steps"] == [1, 3, 5]
    assert result["settings"]["discount"] == dm.gamma
    batch = dm.adaptation_batch(2, size=32, seed=1 + 2)
    offline = rollout(model.adapt(batch, steps=1), get_family("point_robot"), [dm.task(2)],
                      seed=1 + 2 + 10_000).task_returns()[0]
    assert result["tasks"]["2"]["returns"][0] == pytest.approx(offline, abs=1e-4)
    for n in (0, 20, 40):
        assert float(trainer.callback_metrics[f"finetune/return_steps_{n}"]) == pytest.approx(
            result["mean_return"][str(n)])


def test_fine_tuner_stays_finite_on_large_returns():
    """Cheetah-Vel-sized returns (-300..-600): repeating the learned one-step update diverges; the default
    (Adam at ``extra_step_lr`` after the meta-trained step, as MACAW.adapt and the authors' fine-tuning) does not."""
    g = torch.Generator().manual_seed(1)
    ctx = {**context(64), "mc_returns": -300.0 * (1 + torch.rand(64, generator=g))}
    x = torch.randn(5, 2)
    outputs = {}
    for extra_step_lr in (1e-5, None):
        torch.manual_seed(0)
        model = MACAW(obs_dim=2, action_dim=2, net=NetConfig(width=32, depth=2, latent_size=8),
                      extra_step_lr=extra_step_lr)
        tuner = GradientFineTuner(model)
        for _ in range(20):
            tuner.step(ctx)
        outputs[extra_step_lr] = tuner.policy()(x)
    assert torch.isfinite(outputs[1e-5]).all()
    assert not torch.isfinite(outputs[None]).all()


def tiny_pearl() -> OfflinePEARL:
    torch.manual_seed(0)
    return OfflinePEARL(obs_dim=2, action_dim=2, latent_dim=3, hidden=[16], encoder_hidden=[16])


def test_pearl_fine_tuner_starts_from_the_adapted_policy_and_takes_sac_steps_by_hand():
    """Offline PEARL+FT: z is the offline posterior mean; one step is one Adam step of the critics on the soft
    Bellman error (target from the pre-step actor and target critics), the actor then moves, the module does not."""
    model, ctx, x = tiny_pearl(), context(), torch.randn(7, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tuner = model.fine_tuner(ctx)
    adapted = model.adapt(ctx)
    adapted.reset(7)
    torch.testing.assert_close(tuner.policy()(x), adapted(x))  # before any step: PEARL's own adaptation
    torch.testing.assert_close(tuner.z, adapted.posterior()[0][0])

    # the critics' gradient at the start, with the target drawn from the same random stream as the step's
    critic = {n: p.detach().clone().requires_grad_() for n, p in model.critic.named_parameters()}
    z = tuner.z.expand(32, -1)
    torch.manual_seed(5)
    with torch.no_grad():
        next_a, next_log_pi = model.policy.sample(torch.cat([ctx["next_obs"], z], -1))
        nq1, nq2 = model.critic_target(torch.cat([ctx["next_obs"], z], -1), next_a)
        target = ctx["rewards"] + 0.99 * (torch.min(nq1, nq2) - 0.2 * next_log_pi)  # no terminals in ctx
    q1, q2 = torch.func.functional_call(model.critic, critic, (torch.cat([ctx["obs"], z], -1), ctx["actions"]))
    loss = ((q1 - target) ** 2).mean() + ((q2 - target) ** 2).mean()
    grads = dict(zip(critic, torch.autograd.grad(loss, list(critic.values()))))
    torch.manual_seed(5)
    actor_before = {n: p.detach().clone() for n, p in tuner.actor.named_parameters()}
    out = tuner.step(ctx)
    assert out["loss_critic"] == pytest.approx(float(loss), rel=1e-5)
    for name, p in tuner.critic.named_parameters():  # Adam's first step: -lr * g / (|g| + eps)
        g = grads[name]
        torch.testing.assert_close(p.detach(), critic[name].detach() - 3e-4 * g / (g.abs() + 1e-8), atol=1e-7, rtol=0)
    assert any(not torch.equal(p, actor_before[n]) for n, p in tuner.actor.named_parameters())
    assert tuner.num_steps == 1
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_online_finetune_runs_pearl_from_its_offline_posterior():
    """The same schedule with offline PEARL: the 0-step point is its adapted policy, no gradient step yet."""
    family, model, ctx = get_family("point_robot"), tiny_pearl(), context()
    task = {"goal": [0.0, 1.0]}
    result = online_finetune(model, family, task, ctx, [20, 60], gradient_steps_per_rollout=2, batch_size=16, seed=3)
    assert result.env_steps == [0, 20, 60] and result.gradient_steps == [0, 2, 6]
    offline_only = rollout(model.adapt(ctx), family, [task], seed=3 + 10_000).task_returns()[0]
    assert result.returns[0] == pytest.approx(offline_only, abs=1e-5)
    assert all(np.isfinite(result.returns))
