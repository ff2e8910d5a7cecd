"""CORRO: InfoNCE and the relabelled negatives against hand computations, the embedding separating two tasks, a
training step, training from a datamodule with evaluation, and the refusal of relabelling where it is invalid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

from lit_offmeta.algorithms import CORRO
from lit_offmeta.algorithms.corro import info_nce_loss
from lit_offmeta.callbacks import AdaptationEvaluator
from lit_offmeta.collect import collect, get_preset
from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule
from lit_offmeta.tasks import get_family

POINT_ROBOT = get_family("point_robot")
GOALS = np.array([task["goal"] for task in POINT_ROBOT.default_tasks()])
# the two default goals furthest apart on the semicircle, so that one transition tells them apart
_ANGLES = np.arctan2(GOALS[:, 1], GOALS[:, 0])
FAR_IDS = [int(_ANGLES.argmin()), int(_ANGLES.argmax())]


def _softmax_nll(logits: np.ndarray) -> float:
    """-log softmax(logits)[0] for one anchor, written out."""
    return float(-logits[0] + np.log(np.exp(logits).sum()))


def _cos(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))


def test_info_nce_by_hand_two_tasks_two_transitions():
    # task 0: transitions h00, h01; task 1: h10, h11. Each anchor's positive is the other transition of its task,
    # its one negative the anchor relabelled under the other task.
    h = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    negatives = np.array([[0.5, 0.5], [0.2, 1.0], [1.0, 0.1], [0.9, -0.4]])
    anchors, positives = h, h[[1, 0, 3, 2]]
    tau = 0.5
    expected = np.mean([_softmax_nll(np.array([_cos(a, p), _cos(a, n)]) / tau)
                        for a, p, n in zip(anchors, positives, negatives)])
    loss = info_nce_loss(torch.tensor(anchors), torch.tensor(positives), torch.tensor(negatives)[:, None, :], tau)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # equal similarities everywhere: log(1 + M)
    same = torch.ones(4, 2)
    assert info_nce_loss(same, same, same[:, None, :].expand(4, 3, 2)).item() == pytest.approx(math.log(4))


def test_a_masked_negative_is_left_out():
    torch.manual_seed(0)
    anchors, positives, negatives = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 4, 3)
    mask = torch.ones(5, 4, dtype=torch.bool)
    mask[:, 2] = False
    kept = negatives[:, [0, 1, 3]]
    torch.testing.assert_close(info_nce_loss(anchors, positives, negatives, 0.2, mask),
                               info_nce_loss(anchors, positives, kept, 0.2))


def _transitions(task_id: int, n: int) -> dict[str, torch.Tensor]:
    """PointRobot transitions of task ``task_id`` from states spread over the goals' region."""
    obs = torch.rand(n, 2) * torch.tensor([2.0, 1.0]) - torch.tensor([1.0, 0.0])
    actions = torch.rand(n, 2) * 2 - 1
    next_obs = obs + 0.1 * actions
    rewards = -torch.linalg.norm(next_obs - torch.tensor(GOALS[task_id], dtype=torch.float32), dim=-1)
    return {"obs": obs, "actions": actions, "rewards": rewards, "next_obs": next_obs, "terminals": torch.zeros(n)}


def _batch(ids: list[int], n: int) -> TaskBatch:
    def stack(parts):
        return {k: torch.stack([p[k] for p in parts]) for k in parts[0]}

    return TaskBatch(stack([_transitions(i, n) for i in ids]), stack([_transitions(i, n) for i in ids]),
                     torch.tensor(ids))


def test_relabelled_negatives_and_the_module_loss_by_hand():
    torch.manual_seed(0)
    ids = [3, 17]
    model = CORRO(obs_dim=2, action_dim=2, latent_dim=3, encoder_hidden=[8], hidden=[8], relabel_family="point_robot",
                  temperature=0.5, contrastive_transitions=2)
    batch = _batch(ids, 2)
    support = batch.support
    anchors = {k: support[k] for k in ("obs", "actions", "rewards", "next_obs")}
    negatives, mask = model.negative_transitions(batch, anchors)
    assert negatives["rewards"].shape == (2, 2, 1) and bool(mask.all())
    for i, j in ((0, 1), (1, 0)):  # the negative of task i's anchor carries task j's reward at the same (s, a, s')
        for n in range(2):
            s_next = support["next_obs"][i, n].numpy()
            assert negatives["rewards"][i, n, 0].item() == pytest.approx(-np.linalg.norm(s_next - GOALS[ids[j]]),
                                                                         abs=1e-6)
            for key in ("obs", "actions", "next_obs"):
                torch.testing.assert_close(negatives[key][i, n, 0], support[key][i, n])

    embeddings = model.embed(support)
    assert torch.linalg.norm(embeddings, dim=-1).detach().numpy() == pytest.approx(np.ones((2, 2)), rel=1e-6)
    loss = model.representation_losses(batch, embeddings, embeddings.mean(1))["loss_nce"]
    # anchor n of task i: positive query transition n of task i, negative the anchor under the other task's reward
    h = embeddings.detach().numpy()
    h_pos = model.embed(batch.query).detach().numpy()
    h_neg = model.embed(negatives).detach().numpy()[:, :, 0]
    expected = np.mean([_softmax_nll(np.array([_cos(h[i, n], h_pos[i, n]), _cos(h[i, n], h_neg[i, n])]) / 0.5)
                        for i in range(2) for n in range(2)])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_noise_negatives_keep_s_a_s_prime_and_perturb_the_reward():
    torch.manual_seed(0)
    model = CORRO(obs_dim=2, action_dim=2, latent_dim=3, encoder_hidden=[8], hidden=[8], negatives="noise",
                  noise_negatives=5, reward_noise_std=0.3)
    batch = _batch([0, 1, 2], 4)
    anchors = {k: batch.support[k] for k in ("obs", "actions", "rewards", "next_obs")}
    negatives, mask = model.negative_transitions(batch, anchors)
    assert mask is None and negatives["rewards"].shape == (3, 4, 5)
    torch.testing.assert_close(negatives["obs"][:, :, 4], anchors["obs"])
    noise = negatives["rewards"] - anchors["rewards"][..., None]
    assert 0.1 < noise.std().item() < 0.6 and noise.abs().min().item() > 0


def test_the_embedding_separates_two_tasks_after_contrastive_learning():
    torch.manual_seed(0)
    model = CORRO(obs_dim=2, action_dim=2, latent_dim=4, encoder_hidden=[32], hidden=[8], relabel_family="point_robot")
    optimizer = torch.optim.Adam(model.representation_parameters(), lr=3e-3)
    for _ in range(600):
        batch = _batch(FAR_IDS, 16)
        embeddings = model.embed(batch.support)
        loss = model.representation_losses(batch, embeddings, embeddings.mean(1))["loss_nce"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    z0 = torch.stack([model.task_embedding(_transitions(FAR_IDS[0], 64)) for _ in range(5)])
    z1 = torch.stack([model.task_embedding(_transitions(FAR_IDS[1], 64)) for _ in range(5)])
    between = torch.cdist(z0, z1).min()
    within = max(torch.pdist(z0).max(), torch.pdist(z1).max())
    assert between > 1.5 * within


@pytest.mark.parametrize("negatives", ["relabel", "noise"])
def test_a_training_step_changes_every_part_and_the_rl_does_not_reach_the_encoder(negatives):
    torch.manual_seed(0)
    model = CORRO(obs_dim=2, action_dim=2, latent_dim=3, encoder_hidden=[8], hidden=[8], negatives=negatives,
                  relabel_family="point_robot" if negatives == "relabel" else None, contrastive_transitions=4)
    batch = _batch([0, 5, 9], 8)
    out = model.compute_losses(batch)
    rl = out["loss_critic"] + out["loss_actor"] + out["loss_behaviour"]
    grads = torch.autograd.grad(rl, list(model.encoder.parameters()), allow_unused=True)
    assert all(g is None for g in grads)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = model.configure_optimizers()
    optimizer.zero_grad()
    out["loss"].backward()
    optimizer.step()
    after = model.state_dict()
    for part in ("encoder", "behaviour", "critic.", "policy"):
        assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith(part)), part
    adapted = model.adapt({k: v[0] for k, v in batch.support.items()})
    adapted.reset(3)
    assert adapted.act(np.zeros((3, 2), np.float32)).shape == (3, 2)


@pytest.mark.parametrize("family", ["metaworld_ml1_reach", "walker_params"])
def test_relabelling_is_refused_where_it_is_invalid(family):
    with pytest.raises(ValueError, match="negatives='relabel'") as error:
        CORRO(obs_dim=2, action_dim=2, relabel_family=family)
    assert "negatives='noise'" in str(error.value)
    CORRO(obs_dim=2, action_dim=2, relabel_family=family, negatives="noise")  # reward randomisation: any family


def test_relabelling_without_a_family_or_other_tasks_is_refused():
    model = CORRO(obs_dim=2, action_dim=2, latent_dim=3, encoder_hidden=[8], hidden=[8])
    with pytest.raises(ValueError, match="needs the task family"):
        model.compute_losses(_batch([0, 1], 4))
    model = CORRO(obs_dim=2, action_dim=2, latent_dim=3, encoder_hidden=[8], hidden=[8], relabel_family="point_robot")
    with pytest.raises(ValueError, match="tasks_per_batch >= 2"):
        model.compute_losses(_batch([0], 4))
    with pytest.raises(ValueError, match="negatives must be one of"):
        CORRO(obs_dim=2, action_dim=2, negatives="cvae")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corro")
    collect(get_preset("point_robot", "tiny"), root, progress=False, log=None)
    return root


def test_corro_trains_from_the_datamodule_and_evaluates(data_dir):
    torch.manual_seed(0)
    dm = OfflineMetaDataModule("point_robot", str(data_dir), train_ids=[0, 1], test_ids=[2], tasks_per_batch=2,
                               support_size=32, query_size=32, batches_per_epoch=20)
    # relabel_family=None: the relabelling family comes from the datamodule in setup
    model = CORRO(obs_dim=2, action_dim=2, latent_dim=4, encoder_hidden=[32], hidden=[32, 32],
                  contrastive_transitions=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in after if k.startswith("encoder"))
    assert math.isfinite(trainer.callback_metrics["train/loss_nce"].item())
    # one held-out task: no other task to relabel with, so validation logs the critic's loss and no InfoNCE
    assert "val/loss_critic" in trainer.callback_metrics and "val/loss_nce" not in trainer.callback_metrics
    evaluator = AdaptationEvaluator(batch_size=32, episodes=1, random_episodes=2, curve_steps=[0, 1], plot=False,
                                    report=False)
    rows = evaluator.evaluate_tasks(model, dm, [2], with_curve=True)
    assert np.isfinite(rows[2]["return"]) and set(rows[2]["curve"]) == {0, 1}


def test_a_family_other_than_the_datamodule_s_is_refused(data_dir):
    dm = OfflineMetaDataModule("point_robot", str(data_dir), train_ids=[0, 1], test_ids=[2], tasks_per_batch=2,
                               support_size=8, query_size=8, batches_per_epoch=1)
    model = CORRO(obs_dim=2, action_dim=2, latent_dim=3, encoder_hidden=[8], hidden=[8], relabel_family="cheetah_vel")
    trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", limit_val_batches=0)
    with pytest.raises(ValueError, match="datamodule serves family 'point_robot'"):
        trainer.fit(model, datamodule=dm)
