"""The "drop into an existing Lightning project" promise: a user's own Trainer, loggers and callbacks around
MACAW + OfflineMetaDataModule + AdaptationEvaluator, on real (tiny) collected PointRobot data."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn

from lit_offmeta.algorithms import MACAW
from lit_offmeta.callbacks import AdaptationEvaluator
from lit_offmeta.collect.presets import get_preset
from lit_offmeta.collect.runner import collect
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule
from lit_offmeta.nn import NetConfig


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    collect(get_preset("point_robot", "tiny"), root, seed=0, progress=False, log=None)  # 3 goals, 20 episodes
    return root


def make_datamodule(root) -> OfflineMetaDataModule:
    # data_dir as str: a Path in the saved hyperparameters would not load under torch.load(weights_only=True)
    return OfflineMetaDataModule("point_robot", str(root), train_ids=[0, 1], test_ids=[2], tasks_per_batch=2,
                                 support_size=32, query_size=32, batches_per_epoch=3, seed=0)


@pytest.mark.slow
def test_own_trainer_loggers_and_callbacks(tiny_data, tmp_path):
    """fit -> checkpoint -> test from the checkpoint: rollout metrics reach both loggers, the report is written,
    and the adapted policy is a plain nn.Module that survives a state_dict round trip."""
    seed_everything(0)
    dm = make_datamodule(tiny_data)
    model = MACAW(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8), lr_value=1e-3,
                  lr_policy=1e-3)
    evaluator = AdaptationEvaluator(batch_size=32, steps=1, curve_steps=[0, 1, 2], random_episodes=2)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    csv_logger = CSVLogger(tmp_path, name="csv")
    tb_logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=[csv_logger, tb_logger],
        callbacks=[evaluator, checkpoint, LearningRateMonitor()], limit_val_batches=1, log_every_n_steps=1,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)

    # MACAW validates, so the evaluator runs at each validation epoch end (2 epochs -> 2 evaluations)
    assert evaluator._fit_hook == "validation" and evaluator.num_evaluations == 2
    rows = list(csv.DictReader(open(csv_logger.log_dir + "/metrics.csv")))
    returns = [float(r["rollout/return_mean"]) for r in rows if r.get("rollout/return_mean")]
    assert len(returns) == 2 and all(-40.0 < r < 0.0 for r in returns)  # PointRobot returns: -distance x 20
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    # the per-task return logged equals the mean, with one held-out task
    last = [r for r in rows if r.get("rollout/return_mean")][-1]
    assert float(last["rollout/task_2/return"]) == pytest.approx(float(last["rollout/return_mean"]))

    # test from the checkpoint (the evaluator's state travels in it): metrics.json / report.md in the log dir
    results = trainer.test(model, datamodule=dm, ckpt_path=checkpoint.last_model_path, verbose=False)
    metrics = json.loads(open(csv_logger.log_dir + "/metrics.json").read())
    assert metrics["summary"]["return_mean"] == pytest.approx(results[0]["rollout/return_mean"])
    assert [t["task_id"] for t in metrics["tasks"]] == [2]
    assert set(metrics["curve"]) == {"0", "1", "2"}
    assert (tmp_path / "csv" / "version_0" / "report.md").exists()
    assert (tmp_path / "csv" / "version_0" / "adaptation.png").exists()
    state = torch.load(checkpoint.last_model_path, weights_only=True)["callbacks"]
    assert any("AdaptationEvaluator" in key for key in state)

    # the adapted policy: a plain nn.Module, reloadable without lit-offmeta
    context = dm.adaptation_batch(2, size=32, seed=1)
    policy = model.adapt(context, steps=1)
    path = tmp_path / "policy.pt"
    torch.save(policy.state_dict(), path)
    clone = nn.Sequential(*[type(m)(m.in_features, m.out_features) if isinstance(m, nn.Linear) else type(m)()
                            for m in policy])
    clone.load_state_dict(torch.load(path, weights_only=True))
    obs = torch.randn(5, 2)
    torch.testing.assert_close(clone(obs), policy(obs))
