"""Exact resume: a run resumed with ``ckpt_path`` from ANY checkpoint (after any step, mid-epoch or at an epoch's
end, or at the end of an epoch through ``save_on_train_epoch_end``) ends with exactly the weights of the
uninterrupted run, for MACAW, offline PEARL (which draws from torch's random stream) and both stages of BOReL."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_offmeta.algorithms import MACAW, OfflinePEARL
from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD
from lit_offmeta.collect.presets import get_preset
from lit_offmeta.collect.runner import collect
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule
from lit_offmeta.datamodules.trajectory import TrialDataModule
from lit_offmeta.nn import NetConfig


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    collect(get_preset("point_robot", "tiny"), root, seed=0, progress=False, log=None)
    return root


def _run(make_model, make_data, max_steps, out, ckpt_path=None, val_batches=0):
    torch.manual_seed(0)
    model, data = make_model(), make_data()
    torch.manual_seed(1)  # the run's global stream, as seed_everything before fit
    callbacks = [
        ModelCheckpoint(dirpath=out / "steps", every_n_train_steps=1, save_top_k=-1, filename="{step}"),
        ModelCheckpoint(dirpath=out / "epochs", save_on_train_epoch_end=True, save_top_k=-1, filename="{epoch}"),
    ]
    trainer = Trainer(max_steps=max_steps, accelerator="cpu", logger=False, callbacks=callbacks,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=val_batches,
                      num_sanity_val_steps=0, default_root_dir=out)
    trainer.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _check_every_resume(tmp_path, make_model, make_data, max_steps, resume_from, val_batches=0):
    whole = _run(make_model, make_data, max_steps, tmp_path / "whole", val_batches=val_batches)
    for name in resume_from:
        torch.manual_seed(123)  # a resumed process starts from another global stream; the checkpoint must not care
        resumed = _run(make_model, make_data, max_steps, tmp_path / f"from-{name}",
                       ckpt_path=tmp_path / "whole" / name, val_batches=val_batches)
        assert resumed.keys() == whole.keys()
        for key, value in whole.items():
            assert torch.equal(value, resumed[key]), f"resumed from {name}: {key} differs"


def _offline_data(root):
    return lambda: OfflineMetaDataModule("point_robot", str(root), train_ids=[0, 1], test_ids=[2], tasks_per_batch=2,
                                         support_size=32, query_size=32, batches_per_epoch=3, seed=0)


def test_macaw_resumes_exactly_from_mid_epoch_epoch_end_and_after_validation(tiny_data, tmp_path):
    # 3 batches per epoch: step 2 is mid-epoch, step 3 the epoch's last batch, epoch=0 the epoch-end checkpoint
    def make_model():
        return MACAW(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8), lr_value=1e-3,
                               lr_policy=1e-3)
    _check_every_resume(tmp_path, make_model, _offline_data(tiny_data), 7,
                        ["steps/step=2.ckpt", "steps/step=3.ckpt", "epochs/epoch=0.ckpt", "epochs/epoch=1.ckpt"],
                        val_batches=1)


def test_offline_pearl_resumes_exactly_with_its_random_latents(tiny_data, tmp_path):
    make_model = lambda: OfflinePEARL(obs_dim=2, action_dim=2, latent_dim=3, hidden=[16], encoder_hidden=[16])  # noqa: E731
    _check_every_resume(tmp_path, make_model, _offline_data(tiny_data), 5,
                        ["steps/step=1.ckpt", "steps/step=4.ckpt", "epochs/epoch=0.ckpt"])


def test_borel_resumes_exactly_in_the_vae_stage_and_in_the_rl_stage(tmp_path):
    # 3 VAE + 4 SAC updates, 2 batches per epoch: step 1 is mid-epoch in the VAE stage, step 5 mid-epoch in the
    # RL stage, epoch=1 ends in the RL stage (its SAC draws action noise from torch's global stream)
    def make_data():
        return TrialDataModule("point_robot_sparse", scripted_trials_per_task=2, tasks_per_batch=2, trials_per_task=1,
                               steps_per_epoch=2, seed=3)

    def make_model():
        return OfflineVariBAD("point_robot_sparse", vae_steps=3, rl_steps=4, vae={"hidden_dim": 8, "latent_dim": 2},
                              rl={"hidden": (8,), "tasks_per_batch": 2, "batch_per_task": 4},
                              rl_trials_per_task=2, seed=5)

    _check_every_resume(tmp_path, make_model, make_data, 7,
                        ["steps/step=1.ckpt", "steps/step=5.ckpt", "epochs/epoch=1.ckpt"])
