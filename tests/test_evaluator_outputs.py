"""What the AdaptationEvaluator shows besides its metrics: a progress bar over the rollouts, the adaptation plot as
a TensorBoard image, ``hp_metric`` = the held-out score, and reports that name the checkpoint and step evaluated."""

from __future__ import annotations

import json

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from test_callbacks_evaluator import FakeDataModule, FakeModule

import lit_offmeta.callbacks.evaluator as evaluator_module
from lit_offmeta.callbacks import AdaptationEvaluator
from lit_offmeta.callbacks.progress import HookProgress


def _trainer(tmp_path, callbacks, logger=None, **kwargs):
    return Trainer(default_root_dir=tmp_path, logger=logger or CSVLogger(tmp_path, name="run"), callbacks=callbacks,
                   enable_model_summary=False, limit_train_batches=2, limit_val_batches=1, accelerator="cpu",
                   devices=1, **kwargs)


class _Recording(HookProgress):
    made: list[_Recording] = []

    def __init__(self, trainer, total, description):
        super().__init__(trainer, total, description)
        self.total, self.description, self.advanced, self.was_shown = total, description, 0, self.shown
        _Recording.made.append(self)

    def advance(self, n=1):
        self.advanced += n
        super().advance(n)


@pytest.mark.parametrize("bar", [True, False])
def test_rollouts_advance_a_progress_bar_by_every_episode_they_run(tmp_path, monkeypatch, bar):
    monkeypatch.setattr(evaluator_module, "HookProgress", _Recording)
    _Recording.made = []
    evaluator = AdaptationEvaluator(batch_size=8, steps=4, curve_steps=[0, 1, 4], episodes=2, random_episodes=3)
    trainer = _trainer(tmp_path, [evaluator], max_epochs=2, enable_progress_bar=bar)
    trainer.fit(FakeModule(), datamodule=FakeDataModule())
    # 3 tasks x 2 episodes for the main rollout and for curve points 0 and 1 (4 is the main one); the first
    # evaluation also rolls out 3 random episodes per task, the second reuses them
    assert [(r.total, r.advanced) for r in _Recording.made] == [(3 * 3 * 2 + 3 * 3,) * 2, (3 * 3 * 2,) * 2]
    assert all(r.was_shown == bar for r in _Recording.made)
    assert _Recording.made[0].description == "Rollouts (fit)"


def test_the_adaptation_plot_and_hp_metric_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    evaluator = AdaptationEvaluator(batch_size=8, steps=4, curve_steps=[0, 4], random_episodes=2)
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = _trainer(tmp_path, [evaluator], logger=logger, max_epochs=1, enable_progress_bar=False)
    trainer.fit(FakeModule(), datamodule=FakeDataModule())
    logger.experiment.flush()
    assert float(trainer.callback_metrics["hp_metric"]) == float(trainer.callback_metrics["rollout/score_mean"])
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {"rollout/adaptation_score", "rollout/adaptation_return"} <= set(events.Tags()["images"])
    image = events.Images("rollout/adaptation_score")[-1]
    assert image.step == trainer.global_step and image.width > 100
    hp = events.Scalars("hp_metric")
    assert hp[-1].value == pytest.approx(float(trainer.callback_metrics["rollout/score_mean"]))
    assert hp[-1].value != -1


def test_reports_name_the_checkpoint_and_the_step_it_was_trained_to(tmp_path):
    dm = FakeDataModule(test_task_ids=(1, 3))
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _trainer(tmp_path, [checkpoint], max_epochs=2, enable_progress_bar=False).fit(FakeModule(), datamodule=dm)
    ckpt = tmp_path / "ckpt" / "last.ckpt"

    evaluator = AdaptationEvaluator(steps=2, curve_steps=None, random_episodes=1, batch_size=4)
    _trainer(tmp_path, [evaluator], enable_progress_bar=False).test(FakeModule(), datamodule=dm, ckpt_path=ckpt)
    log_dir = tmp_path / "run" / "version_1"
    settings = json.loads((log_dir / "metrics.json").read_text())["settings"]
    assert (settings["checkpoint"], settings["global_step"], settings["epoch"]) == (str(ckpt), 4, 1)
    assert f"Checkpoint `{ckpt}`, trained for 4 global steps." in (log_dir / "report.md").read_text()

    _trainer(tmp_path, [evaluator], enable_progress_bar=False).test(FakeModule(), datamodule=dm)
    log_dir = tmp_path / "run" / "version_2"
    assert json.loads((log_dir / "metrics.json").read_text())["settings"]["checkpoint"] is None
    assert "The module in memory (no checkpoint loaded), after 0 global steps." in (log_dir / "report.md").read_text()
