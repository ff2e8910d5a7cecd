"""A non-finite gradient stops training with :class:`NonFiniteUpdateError` naming the step and the batch's task ids,
before the weights change, for every algorithm; ``last.ckpt`` keeps the last finite state."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from test_baselines_helpers import one_torch_thread, write_point_robot_datasets  # noqa: F401 (autouse fixture)
from torch import nn

from lit_offmeta.algorithms import MACAW, MetaBC, MultiTaskAWR, OfflinePEARL
from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD
from lit_offmeta.algorithms.guards import NonFiniteUpdateError, TrainingGuards, batch_task_ids
from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule
from lit_offmeta.datamodules.trajectory import TrialDataModule
from lit_offmeta.nn import NetConfig

TRAIN_IDS, TEST_IDS = [0, 1, 2], [3]


class _Linear(TrainingGuards, LightningModule):
    """One weight; the loss is ``w * x`` summed, so the gradient is the batch's sum: NaN when the batch holds one."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def training_step(self, batch, batch_idx):
        return (self.w * batch.query["obs"]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _batch(value: float, task_ids: list[int], fill: float = 1.0) -> TaskBatch:
    k = len(task_ids)
    obs = torch.full((k, 2, 1), fill)
    obs[-1, -1] = value
    data = {"obs": obs}
    return TaskBatch(support=data, query=data, task_ids=torch.tensor(task_ids))


def test_the_guard_raises_before_the_step_naming_step_task_ids_and_parameter(tmp_path):
    batches = [_batch(1.0, [4, 2]), _batch(float("nan"), [7, 3])]
    model = _Linear()
    trainer = Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(NonFiniteUpdateError, match=r"_Linear: non-finite .* global step 1 \(batch of task ids "
                                                   r"\[3, 7\]\) in w;"):
        trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    # step 0: gradient = sum of the 2 tasks x 2 ones = 4, so w = 1 - 0.1 * 4; step 1's NaN one never applied
    assert model.w.item() == pytest.approx(1.0 - 0.1 * 4.0)


def test_finite_data_whose_gradient_overflows_is_stopped_too(tmp_path):
    model = _Linear()  # every obs 3e38 (finite float32): their sum, the gradient, overflows to inf
    trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.raises(NonFiniteUpdateError, match="global step 0"):
        trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader([_batch(3e38, [0, 1], fill=3e38)] * 2,
                                                                          batch_size=None))
    assert model.w.item() == 1.0


def test_batch_task_ids_reads_both_batch_kinds():
    assert batch_task_ids(_batch(1.0, [5, 1, 5])) == [1, 5]
    assert batch_task_ids({"task_index": torch.tensor([[2], [0]])}) == [0, 2]
    assert batch_task_ids({"obs": torch.zeros(1)}) is None


class _PoisonBatch(Callback):
    """From ``at_step`` on, one observation of every training batch becomes NaN (as a corrupt row would)."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.at_step:
            if isinstance(batch, TaskBatch):
                batch.support["obs"][0, 0, 0] = float("nan")
                batch.query["obs"][0, 0, 0] = float("nan")
            else:  # a trial batch: the VAE reads rewards and next observations
                for key in ("rewards", "next_obs"):
                    batch[key][(0,) * batch[key].dim()] = float("nan")


ALGORITHMS = {
    "macaw": lambda: MACAW(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8)),
    "meta_bc": lambda: MetaBC(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8)),
    "mt_awr": lambda: MultiTaskAWR(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, layer="linear"),
                                   finetune_steps=2),
    "pearl": lambda: OfflinePEARL(obs_dim=2, action_dim=2, latent_dim=3, hidden=[16], encoder_hidden=[16]),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("point_robot_data")
    write_point_robot_datasets(root, TRAIN_IDS + TEST_IDS, episodes=4)
    return root


def _fit_until_it_stops(model, datamodule, tmp_path, at_step: int):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_last=True)
    trainer = Trainer(max_steps=6, logger=False, callbacks=[_PoisonBatch(at_step), checkpoint],
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      num_sanity_val_steps=0, default_root_dir=tmp_path)
    with pytest.raises(NonFiniteUpdateError) as raised:
        trainer.fit(model, datamodule=datamodule)
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["global_step"] == at_step, "last.ckpt is the last finite state"
    bad = [k for k, v in last["state_dict"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    assert not bad, f"last.ckpt holds non-finite {bad}"
    return str(raised.value)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_every_offline_algorithm_stops_on_a_nan_batch_and_keeps_a_finite_last_ckpt(name, data_dir, tmp_path):
    torch.manual_seed(0)
    dm = OfflineMetaDataModule("point_robot", data_dir, train_ids=TRAIN_IDS, test_ids=TEST_IDS, tasks_per_batch=2,
                               support_size=16, query_size=16, batches_per_epoch=4, use_cache=False)
    message = _fit_until_it_stops(ALGORITHMS[name](), dm, tmp_path, at_step=2)
    assert "global step 2 (batch of task ids [" in message


def test_borel_stops_on_a_nan_trial_batch_in_the_vae_stage(tmp_path):
    torch.manual_seed(0)
    dm = TrialDataModule("point_robot_sparse", scripted_trials_per_task=2, tasks_per_batch=2, trials_per_task=1,
                         steps_per_epoch=3, seed=3)
    model = OfflineVariBAD("point_robot_sparse", vae_steps=4, rl_steps=2, vae={"hidden_dim": 8, "latent_dim": 2},
                           rl={"hidden": (8,), "tasks_per_batch": 2, "batch_per_task": 4},
                           rl_trials_per_task=2, seed=5)
    message = _fit_until_it_stops(model, dm, tmp_path, at_step=1)
    assert message.startswith("OfflineVariBAD: non-finite") and "global step 1 (batch of task ids [" in message
