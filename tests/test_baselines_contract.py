"""One contract for every algorithm module: fit on real stored datasets through ``OfflineMetaDataModule``,
evaluation by the shared ``AdaptationEvaluator``, checkpoint round trip, and ``adapt`` returning either a plain
mean-action ``nn.Module`` or a ``RolloutPolicy``. Plus: every baseline and ablation config parses, and the
PointRobot ones train from the command line."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from test_baselines_helpers import one_torch_thread, write_point_robot_datasets  # noqa: F401 (autouse fixture)
from torch import nn

from lit_offmeta.algorithms import MACAW, MetaBC, MultiTaskAWR, OfflinePEARL
from lit_offmeta.callbacks import AdaptationEvaluator
from lit_offmeta.cli import main as cli_main
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule
from lit_offmeta.nn import NetConfig
from lit_offmeta.policy import RolloutPolicy

REPO = Path(__file__).resolve().parents[1]
TRAIN_IDS, TEST_IDS = [0, 1, 2, 3, 4, 5], [6, 7]

ALGORITHMS = {
    "macaw": lambda: MACAW(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8)),
    "maml_awr": lambda: MACAW(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8),
                              enriched_policy_loss=False),
    "no_wt_equal_params": lambda: MACAW(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8,
                                                                                layer="bias_transform",
                                                                                equal_params=True)),
    "meta_bc": lambda: MetaBC(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8)),
    "mt_awr": lambda: MultiTaskAWR(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, layer="linear"),
                                   finetune_steps=3),
    "pearl": lambda: OfflinePEARL(obs_dim=2, action_dim=2, latent_dim=3, hidden=[16, 16], encoder_hidden=[16]),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("point_robot_data")
    write_point_robot_datasets(root, TRAIN_IDS + TEST_IDS, episodes=6)
    return root


def _datamodule(data_dir: Path, batches: int = 2) -> OfflineMetaDataModule:
    return OfflineMetaDataModule("point_robot", data_dir, train_ids=TRAIN_IDS, test_ids=TEST_IDS, tasks_per_batch=3,
                                 support_size=16, query_size=16, batches_per_epoch=batches, use_cache=False)


def _actions(policy, obs: np.ndarray) -> np.ndarray:
    if isinstance(policy, nn.Module) and not isinstance(policy, RolloutPolicy):
        with torch.no_grad():
            return policy(torch.as_tensor(obs)).numpy()
    policy.reset(obs.shape[0])
    return policy.act(obs)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_fast_dev_run(name, data_dir, tmp_path):
    """``fast_dev_run`` runs one training and one validation batch without errors."""
    pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(fast_dev_run=True, default_root_dir=tmp_path, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(ALGORITHMS[name](), datamodule=_datamodule(data_dir))
    assert trainer.state.finished


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_fit_evaluate_checkpoint_round_trip(name, data_dir, tmp_path):
    """Fit one epoch of two batches with the AdaptationEvaluator (finite held-out returns logged), then reload the
    checkpoint: same parameters, same adapted actions of shape [N, act_dim] within the action box."""
    pl.seed_everything(0, verbose=False)
    dm = _datamodule(data_dir)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    evaluator = AdaptationEvaluator(batch_size=32, curve_steps=[0, 1], random_episodes=1, plot=False, report=False)
    model = ALGORITHMS[name]()
    trainer = pl.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=False, callbacks=[checkpoint, evaluator],
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    metrics = trainer.callback_metrics
    assert math.isfinite(float(metrics["rollout/return_mean"]))
    assert {"rollout/curve/return_steps_0", "rollout/curve/return_steps_1"} <= set(metrics)

    # on the CPU, where Lightning hands back the trained module (a checkpoint written on a GPU loads there otherwise)
    reloaded = type(model).load_from_checkpoint(checkpoint.last_model_path, weights_only=False, map_location="cpu")
    for (key, a), (_, b) in zip(model.state_dict().items(), reloaded.state_dict().items()):
        assert torch.equal(a, b), key
    context = dm.adaptation_batch(TEST_IDS[0], size=32, seed=0)
    obs = np.random.default_rng(0).uniform(-1, 1, size=(4, 2)).astype(np.float32)
    policy = model.adapt(context, steps=1)
    assert isinstance(policy, (nn.Module, RolloutPolicy))
    actions = _actions(policy, obs)
    assert actions.shape == (4, 2) and np.all(np.abs(actions) <= 1.0)
    np.testing.assert_allclose(actions, _actions(reloaded.adapt(context, steps=1), obs), atol=1e-6)


CONFIGS = sorted((REPO / "configs" / "baselines").glob("*/*.yaml")) + sorted(
    (REPO / "configs" / "macaw" / "ablations").glob("*.yaml"))


def test_every_baseline_and_ablation_config_exists():
    names = {f"{p.parent.name}/{p.name}" for p in CONFIGS}
    for algo in ("meta_bc", "mt_awr", "pearl"):
        assert {f"{algo}/point_robot.yaml", f"{algo}/cheetah_vel.yaml"} <= names
    for ablation in ("maml_awr", "no_wt_equal_width", "no_wt_equal_params"):
        assert {f"ablations/{ablation}_point_robot.yaml", f"ablations/{ablation}_cheetah_vel.yaml"} <= names


@pytest.mark.parametrize(
    "config", [p for p in CONFIGS if "point_robot" in p.name], ids=lambda p: p.parent.name + "/" + p.stem
)
def test_point_robot_configs_train_from_the_cli(config, data_dir, tmp_path, monkeypatch):
    """``lit-offmeta fit --config <file>`` trains (fast_dev_run) on stored data, only the paths overridden."""
    monkeypatch.setattr(sys, "argv", ["lit-offmeta"])  # the CLI gets its arguments from `args`, not pytest's
    cli_main([
        "fit", "--config", str(config),
        f"--data.init_args.data_dir={data_dir}", f"--data.init_args.train_ids={TRAIN_IDS}",
        f"--data.init_args.test_ids={TEST_IDS}", "--data.init_args.support_size=16",
        "--data.init_args.query_size=16", "--trainer.fast_dev_run=true", "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
    ])


@pytest.mark.parametrize(
    "config", [p for p in CONFIGS if "cheetah_vel" in p.name], ids=lambda p: p.parent.name + "/" + p.stem
)
def test_cheetah_vel_configs_parse(config, capsys, monkeypatch):
    """The Cheetah-Vel configs are complete and valid (``--print_config``); training them needs MuJoCo data."""
    monkeypatch.setattr(sys, "argv", ["lit-offmeta"])
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "family: cheetah_vel" in capsys.readouterr().out
