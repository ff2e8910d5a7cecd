"""UNICORN: the classification, reconstruction and combined losses against hand computations, the embedding
separating two tasks under UNICORN-SUP and UNICORN-SS, a training step, and training from a datamodule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

from lit_offmeta.algorithms import UNICORN
from lit_offmeta.algorithms.focal import distance_metric_loss
from lit_offmeta.algorithms.unicorn import reconstruction_loss, task_classification_loss
from lit_offmeta.callbacks import AdaptationEvaluator
from lit_offmeta.collect import collect, get_preset
from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule

SMALL = {"obs_dim": 2, "action_dim": 1, "latent_dim": 3, "encoder_hidden": [8], "hidden": [8],
         "classifier_hidden": [8], "decoder_hidden": [8]}
SUP = {"classification_weight": 1.0, "reconstruction_weight": 0.0, "metric_weight": 0.0}
SS = {"classification_weight": 0.0, "reconstruction_weight": 1.0, "metric_weight": 0.0}


def test_reconstruction_loss_by_hand_two_tasks_two_transitions():
    obs = np.array([[[0.0, 1.0], [1.0, 0.0]], [[2.0, 2.0], [-1.0, 0.5]]])  # [task, transition, obs_dim]
    next_obs = obs + np.array([[[0.1, 0.0], [0.0, -0.2]], [[0.3, 0.1], [0.0, 0.0]]])
    rewards = np.array([[1.0, -1.0], [0.5, 0.0]])
    predicted = np.array([[[0.8, 0.1, 0.1], [-1.0, 0.0, 0.0]], [[0.0, 0.3, 0.0], [0.2, 0.1, -0.1]]])
    # per transition: 1/2 ||(r, s' - s) - prediction||^2, then the mean over the 4 transitions
    per_transition = [0.5 * ((0.2) ** 2 + 0 + 0.1 ** 2), 0.5 * (0 + 0 + 0.2 ** 2),
                      0.5 * (0.5 ** 2 + 0 + 0.1 ** 2), 0.5 * (0.2 ** 2 + 0.1 ** 2 + 0.1 ** 2)]
    loss = reconstruction_loss(*(torch.tensor(x) for x in (predicted, obs, rewards, next_obs)))
    assert loss.item() == pytest.approx(np.mean(per_transition), rel=1e-9)
    target = np.concatenate([rewards[..., None], next_obs - obs], -1)
    assert reconstruction_loss(torch.tensor(target), *(torch.tensor(x) for x in (obs, rewards, next_obs))).item() \
        == pytest.approx(0.0, abs=1e-12)


def test_task_classification_loss_by_hand():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = np.array([0, 1])
    expected = np.mean([-logits[k, labels[k]] + np.log(np.exp(logits[k]).sum()) for k in range(2)])
    loss = task_classification_loss(torch.tensor(logits), torch.tensor(labels))
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def _context(task: int, n: int) -> dict[str, torch.Tensor]:
    """Same states and actions in both tasks; the reward's sign tells them apart, the dynamics are shared."""
    obs, actions = torch.randn(n, 2), torch.rand(n, 1) * 2 - 1
    rewards = obs[:, 0] if task == 0 else -obs[:, 0]
    return {"obs": obs, "actions": actions, "rewards": rewards, "next_obs": obs + 0.1 * actions,
            "terminals": torch.zeros(n)}


def _batch(ids: list[int], n: int) -> TaskBatch:
    def stack(parts):
        return {k: torch.stack([p[k] for p in parts]) for k in parts[0]}

    return TaskBatch(stack([_context(i % 2, n) for i in ids]), stack([_context(i % 2, n) for i in ids]),
                     torch.tensor(ids))


def test_the_combined_loss_is_the_weighted_sum_by_hand():
    torch.manual_seed(0)
    model = UNICORN(**SMALL, classification_weight=0.7, reconstruction_weight=1.5, metric_weight=0.2, num_tasks=4,
                    dml_transitions=2)
    batch = _batch([0, 3], 2)  # 2 tasks x 2 transitions, labels 0 and 3
    embeddings = model.encoder.embed(batch.support)
    z = embeddings.mean(1)
    out = model.representation_losses(batch, embeddings, z)

    logits = model.classifier(z).detach().numpy()
    classification = np.mean([-logits[k, y] + np.log(np.exp(logits[k]).sum()) for k, y in enumerate([0, 3])])
    query = {k: v.numpy() for k, v in batch.query.items()}
    z_np = z.detach().numpy()
    reconstruction = []
    for k in range(2):
        for n in range(2):
            x = torch.tensor(np.concatenate([query["obs"][k, n], query["actions"][k, n], z_np[k]]))
            predicted = model.decoder(x).detach().numpy()
            target = np.concatenate([[query["rewards"][k, n]], query["next_obs"][k, n] - query["obs"][k, n]])
            reconstruction.append(0.5 * np.sum((predicted - target) ** 2))
    h = embeddings.detach().numpy()
    positive = np.mean([np.sum((h[k, 0] - h[k, 1]) ** 2) for k in range(2)])
    negative = np.mean([1.0 / (np.sum((h[0, i] - h[1, j]) ** 2) + 0.1) for i in range(2) for j in range(2)])
    metric = positive + negative
    assert out["loss_classification"].item() == pytest.approx(classification, rel=1e-5)
    assert out["loss_reconstruction"].item() == pytest.approx(np.mean(reconstruction), rel=1e-5)
    assert out["loss_metric"].item() == pytest.approx(metric, rel=1e-5)
    torch.testing.assert_close(out["loss_metric"], distance_metric_loss(embeddings.reshape(4, -1),
                                                                        torch.tensor([0, 0, 1, 1])))
    expected = 0.7 * classification + 1.5 * np.mean(reconstruction) + 0.2 * metric
    assert out["loss_representation"].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("weights", [SUP, SS], ids=["UNICORN-SUP", "UNICORN-SS"])
def test_the_embedding_separates_two_tasks_after_its_own_loss(weights):
    torch.manual_seed(0)
    model = UNICORN(**dict(SMALL, latent_dim=4, encoder_hidden=[32], decoder_hidden=[32], classifier_hidden=[32]),
                    use_next_obs_in_context=False, num_tasks=2, **weights)
    optimizer = torch.optim.Adam(model.representation_parameters(), lr=3e-3)
    for _ in range(300):
        batch = _batch([0, 1], 16)
        embeddings = model.encoder.embed(batch.support)
        loss = model.representation_losses(batch, embeddings, embeddings.mean(1))["loss_representation"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        z0 = torch.stack([model.encoder(_context(0, 64)) for _ in range(5)])
        z1 = torch.stack([model.encoder(_context(1, 64)) for _ in range(5)])
    between = torch.cdist(z0, z1).min()
    within = max(torch.pdist(z0).max(), torch.pdist(z1).max())
    assert between > 1.5 * within


@pytest.mark.parametrize("weights", [SUP, dict(SS, metric_weight=0.5)], ids=["UNICORN-SUP", "UNICORN-SS"])
def test_a_training_step_changes_every_part_and_the_rl_does_not_reach_the_encoder(weights):
    torch.manual_seed(0)
    model = UNICORN(**SMALL, num_tasks=6, **weights)
    batch = _batch([1, 4, 5], 8)
    out = model.compute_losses(batch)
    rl = out["loss_critic"] + out["loss_actor"] + out["loss_behaviour"]
    heads = [p for head in (model.encoder, model.classifier, model.decoder) if head is not None
             for p in head.parameters()]
    assert all(g is None for g in torch.autograd.grad(rl, heads, allow_unused=True))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = model.configure_optimizers()
    optimizer.zero_grad()
    out["loss"].backward()
    optimizer.step()
    after = model.state_dict()
    parts = ["encoder", "behaviour", "critic.", "policy"] + [name for name in ("classifier", "decoder")
                                                              if getattr(model, name) is not None]
    for part in parts:
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(part)), part
    adapted = model.adapt({k: v[0] for k, v in batch.support.items()})
    adapted.reset(3)
    assert adapted.act(np.zeros((3, 2), np.float32)).shape == (3, 1)


def test_only_the_weighted_parts_are_built_and_bad_weights_are_refused():
    sup = UNICORN(**SMALL, num_tasks=3)
    assert sup.classifier is not None and sup.decoder is None
    ss = UNICORN(**SMALL, **SS)
    assert ss.classifier is None and ss.decoder is not None
    with pytest.raises(ValueError, match="needs num_tasks"):
        UNICORN(**SMALL)
    with pytest.raises(ValueError, match="all 0"):
        UNICORN(**SMALL, classification_weight=0.0)
    with pytest.raises(ValueError, match="metric_weight must be >= 0"):
        UNICORN(**SMALL, num_tasks=3, metric_weight=-1.0)
    with pytest.raises(ValueError, match="no class among num_tasks=3"):
        sup.compute_losses(_batch([0, 5], 4))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("unicorn")
    collect(get_preset("point_robot", "tiny"), root, progress=False, log=None)
    return root


def test_unicorn_trains_from_the_datamodule_and_evaluates(data_dir):
    torch.manual_seed(0)
    dm = OfflineMetaDataModule("point_robot", str(data_dir), train_ids=[0, 1], test_ids=[2], tasks_per_batch=2,
                               support_size=32, query_size=32, batches_per_epoch=20)
    model = UNICORN(obs_dim=2, action_dim=2, latent_dim=4, encoder_hidden=[32], hidden=[32, 32], num_tasks=40,
                    reconstruction_weight=1.0, metric_weight=0.1, classifier_hidden=[16], decoder_hidden=[16])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    after = model.state_dict()
    for part in ("encoder", "classifier", "decoder"):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(part)), part
    assert math.isfinite(trainer.callback_metrics["val/loss_representation"].item())
    evaluator = AdaptationEvaluator(batch_size=32, episodes=1, random_episodes=2, curve_steps=[0, 1], plot=False,
                                    report=False)
    rows = evaluator.evaluate_tasks(model, dm, [2], with_curve=True)
    assert np.isfinite(rows[2]["return"]) and set(rows[2]["curve"]) == {0, 1}


def test_too_few_classes_for_the_family_are_refused(data_dir):
    dm = OfflineMetaDataModule("point_robot", str(data_dir), train_ids=[0, 1], test_ids=[2], tasks_per_batch=2,
                               support_size=8, query_size=8, batches_per_epoch=1)
    model = UNICORN(obs_dim=2, action_dim=2, latent_dim=3, encoder_hidden=[8], hidden=[8], num_tasks=3)
    trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", limit_val_batches=0)
    with pytest.raises(ValueError, match="has 40 tasks"):
        trainer.fit(model, datamodule=dm)
