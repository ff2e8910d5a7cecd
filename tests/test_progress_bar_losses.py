"""Every algorithm shows its key losses in the progress bar (``self.log(..., prog_bar=True)``)."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
from test_baselines_helpers import one_torch_thread, write_point_robot_datasets  # noqa: F401 (autouse fixture)

from lit_offmeta.algorithms import MACAW, MetaBC, MultiTaskAWR, OfflinePEARL
from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule
from lit_offmeta.datamodules.trajectory import TrialDataModule
from lit_offmeta.nn import NetConfig

SHOWN = {
    "macaw": (lambda: MACAW(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8)),
              {"train/loss_value", "train/loss_policy"}),
    "meta_bc": (lambda: MetaBC(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8)),
                {"train/loss_policy"}),
    "mt_awr": (lambda: MultiTaskAWR(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, layer="linear")),
               {"train/loss_value", "train/loss_policy"}),
    "pearl": (lambda: OfflinePEARL(obs_dim=2, action_dim=2, latent_dim=3, hidden=[16, 16], encoder_hidden=[16]),
              {"train/loss", "train/loss_critic", "train/loss_actor"}),
}


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path, **kwargs)


@pytest.mark.parametrize("name", list(SHOWN))
def test_training_puts_the_key_losses_in_the_progress_bar(name, tmp_path):
    write_point_robot_datasets(tmp_path, [0, 1, 2], episodes=4)
    dm = OfflineMetaDataModule("point_robot", tmp_path, train_ids=[0, 1], test_ids=[2], tasks_per_batch=2,
                               support_size=8, query_size=8, batches_per_epoch=2, use_cache=False)
    make, shown = SHOWN[name]
    trainer = _trainer(tmp_path, max_steps=2)
    trainer.fit(make(), datamodule=dm)
    assert shown <= set(trainer.progress_bar_metrics), sorted(trainer.progress_bar_metrics)


@pytest.mark.parametrize(("family", "algorithm", "rl_losses"), [
    ("grid_navi", "dqn", {"train/rl/loss_q"}),
    ("point_robot_sparse", "sac", {"train/rl/loss_critic", "train/rl/loss_actor"}),
])
def test_offline_varibad_shows_the_vae_loss_then_the_rl_losses(family, algorithm, rl_losses, tmp_path):
    dm = TrialDataModule(family, scripted_trials_per_task=2, tasks_per_batch=2, trials_per_task=2, steps_per_epoch=4)
    model = OfflineVariBAD(family, vae_steps=2, rl_steps=2,
                           vae={"action_embed_dim": 0, "reward_embed_dim": 8, "hidden_dim": 16},
                           rl={"algorithm": algorithm, "hidden": (8,), "tasks_per_batch": 2, "batch_per_task": 4})
    trainer = _trainer(tmp_path, max_epochs=-1)
    trainer.fit(model, dm)
    assert {"train/vae/loss", *rl_losses} <= set(trainer.progress_bar_metrics), sorted(trainer.progress_bar_metrics)
