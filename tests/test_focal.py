"""FOCAL: the distance-metric loss and the BRAC terms against hand computations, the embedding separating two
tasks, training from a datamodule and evaluation through the AdaptationEvaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

from lit_offmeta.algorithms import FOCAL
from lit_offmeta.algorithms.focal import distance_metric_loss
from lit_offmeta.algorithms.sac import SquashedGaussianActor, soft_td_target
from lit_offmeta.callbacks import AdaptationEvaluator
from lit_offmeta.collect import collect, get_preset
from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule
from lit_offmeta.nn.context_encoder import DeterministicContextEncoder


def test_distance_metric_loss_by_hand():
    q = torch.tensor([[0.0], [1.0], [3.0]])
    labels = torch.tensor([0, 0, 1])
    # positive pair (0, 1): distance 1; negative pairs (0, 2), (1, 2): distances 3 and 2
    expected = 1.0 + 0.5 * ((1 / (9 + 0.1) + 1 / (4 + 0.1)) / 2)
    assert distance_metric_loss(q, labels, beta=0.5, power=2.0, epsilon=0.1).item() == pytest.approx(expected)
    # power 1: 1 / (d + eps)
    expected = 1.0 + (1 / 3.1 + 1 / 2.1) / 2
    assert distance_metric_loss(q, labels, beta=1.0, power=1.0, epsilon=0.1).item() == pytest.approx(expected)
    assert distance_metric_loss(q, torch.tensor([0, 0, 0])).item() == pytest.approx((1 + 9 + 4) / 3)  # no negatives


def test_log_prob_of_a_sample_equals_the_sample_s_log_prob():
    torch.manual_seed(0)
    actor = SquashedGaussianActor(3, 2, [16], -torch.ones(2), torch.ones(2))
    obs = torch.randn(64, 3)
    actions, log_pi = actor.sample(obs)
    inside = actions.abs().max(-1).values < 0.99  # away from the clip at the box's edges
    torch.testing.assert_close(actor.log_prob(obs, actions)[inside], log_pi[inside], rtol=1e-4, atol=1e-3)


def test_brac_value_penalty_target_by_hand():
    # y = r + gamma (1 - d) (min Q' - alpha (log pi - log pi_b)), through the shared soft_td_target
    r, d = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    q1, q2 = torch.tensor([5.0, 3.0]), torch.tensor([4.0, 6.0])
    kl = torch.tensor([0.5, 2.0])
    target = soft_td_target(r, d, q1, q2, kl, 0.2, 0.9)
    torch.testing.assert_close(target, torch.tensor([1.0 + 0.9 * (4.0 - 0.1), 2.0]))


def test_the_embedding_separates_two_tasks_after_distance_metric_learning():
    torch.manual_seed(0)
    encoder = DeterministicContextEncoder(obs_dim=2, action_dim=1, latent_dim=4, hidden=[32], use_next_obs=False)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=3e-3)

    def context(task: int, n: int) -> dict[str, torch.Tensor]:  # same states and actions; rewards differ by task
        obs, actions = torch.randn(n, 2), torch.randn(n, 1)
        rewards = obs[:, 0] if task == 0 else -obs[:, 0]
        return {"obs": obs, "actions": actions, "rewards": rewards}

    for _ in range(300):
        embeddings = torch.cat([encoder.embed(context(0, 16)), encoder.embed(context(1, 16))])
        loss = distance_metric_loss(embeddings, torch.arange(2).repeat_interleave(16))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        z0 = torch.stack([encoder(context(0, 64)) for _ in range(5)])
        z1 = torch.stack([encoder(context(1, 64)) for _ in range(5)])
    between = torch.cdist(z0, z1).min()
    within = max(torch.pdist(z0).max(), torch.pdist(z1).max())
    assert between > 3 * within


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("focal")
    collect(get_preset("point_robot", "tiny"), root, progress=False, log=None)
    return root


def test_focal_trains_from_the_datamodule_and_evaluates(data_dir):
    torch.manual_seed(0)
    dm = OfflineMetaDataModule("point_robot", str(data_dir), train_ids=[0, 1], test_ids=[2], tasks_per_batch=2,
                               support_size=32, query_size=32, batches_per_epoch=20)
    model = FOCAL(obs_dim=2, action_dim=2, latent_dim=4, encoder_hidden=[32], hidden=[32, 32], dml_transitions=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    after = model.state_dict()
    for part in ("encoder", "behaviour", "critic.", "policy"):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(part)), part
    assert all(math.isfinite(v) for v in (trainer.callback_metrics["train/loss"].item(),))
    evaluator = AdaptationEvaluator(batch_size=32, episodes=1, random_episodes=2, curve_steps=[0, 1], plot=False,
                                    report=False)
    rows = evaluator.evaluate_tasks(model, dm, [2], with_curve=True)
    assert np.isfinite(rows[2]["return"]) and set(rows[2]["curve"]) == {0, 1}


def test_the_rl_losses_do_not_reach_the_encoder():
    torch.manual_seed(0)
    model = FOCAL(obs_dim=2, action_dim=2, latent_dim=3, encoder_hidden=[8], hidden=[8], dml_transitions=4)

    def part(k, b):
        return {"obs": torch.randn(k, b, 2), "actions": torch.rand(k, b, 2) * 2 - 1, "rewards": torch.randn(k, b),
                "next_obs": torch.randn(k, b, 2), "terminals": torch.zeros(k, b)}

    out = model.compute_losses(TaskBatch(part(2, 8), part(2, 8), torch.arange(2)))
    rl = out["loss_critic"] + out["loss_actor"] + out["loss_behaviour"]
    grads = torch.autograd.grad(rl, list(model.encoder.parameters()), allow_unused=True)
    assert all(g is None for g in grads)
    grads = torch.autograd.grad(out["loss_actor"], list(model.behaviour.parameters()), allow_unused=True)
    assert all(g is None for g in grads)  # the KL penalty trains the policy, not the behaviour model
    adapted = model.adapt({k: v[0] for k, v in part(2, 8).items()})
    adapted.reset(3)
    assert adapted.act(np.zeros((3, 2), np.float32)).shape == (3, 2)
