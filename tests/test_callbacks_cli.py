"""``lit-offmeta fit`` / ``test`` with an algorithm config plus ``configs/eval/``: the evaluator runs and
``test --ckpt_path`` writes metrics.json and report.md into the run's log directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lit_offmeta.cli import main
from lit_offmeta.collect.presets import get_preset
from lit_offmeta.collect.runner import collect
from lit_offmeta.nn import NetConfig

ROOT = Path(__file__).resolve().parents[1]
EVAL_CONFIGS = sorted((ROOT / "configs" / "eval").glob("*.yaml"))


@pytest.mark.parametrize("path", EVAL_CONFIGS, ids=lambda p: p.name)
def test_eval_configs_build_their_callbacks(path):
    """Every evaluator section instantiates (the YAML's arguments are the callback's real ones)."""
    from jsonargparse import ArgumentParser
    from lightning.pytorch import Callback

    config = yaml.safe_load(path.read_text())
    parser = ArgumentParser()
    parser.add_argument("--callbacks", type=list[Callback])
    callbacks = parser.instantiate_classes(parser.parse_object({"callbacks": config["trainer"]["callbacks"]}))
    names = [type(c).__name__ for c in callbacks.callbacks]
    assert "AdaptationEvaluator" in names


@pytest.mark.slow
def test_cli_fit_then_test_writes_report(tmp_path):
    data = tmp_path / "data"
    collect(get_preset("point_robot", "tiny"), data, seed=0, progress=False, log=None)
    common = [
        "--config", str(ROOT / "configs" / "macaw" / "point_robot.yaml"),
        "--config", str(ROOT / "configs" / "eval" / "point_robot.yaml"),
        f"--data.init_args.data_dir={data}", "--data.init_args.train_ids=[0, 1]", "--data.init_args.test_ids=[2]",
        "--data.init_args.tasks_per_batch=2", "--data.init_args.support_size=32", "--data.init_args.query_size=32",
        "--data.init_args.batches_per_epoch=2", "--model.init_args.net.width=16", "--model.init_args.net.latent_size=8",
        "--trainer.callbacks.init_args.batch_size=32", "--trainer.callbacks.init_args.random_episodes=1",
        "--trainer.callbacks.init_args.curve_steps=[0, 1]",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}", "--trainer.enable_progress_bar=false",
        "--trainer.limit_val_batches=1",
    ]
    main(["fit", *common, "--trainer.max_steps=4"])
    ckpts = sorted((tmp_path / "logs").rglob("last.ckpt"))
    assert ckpts, "ModelCheckpoint (kept by the eval config) saved no last.ckpt"
    main(["test", *common, f"--ckpt_path={ckpts[-1]}"])
    reports = sorted((tmp_path / "logs").rglob("metrics.json"))
    assert reports, "test wrote no metrics.json"
    metrics = json.loads(reports[-1].read_text())
    assert metrics["settings"]["stage"] == "test" and [t["task_id"] for t in metrics["tasks"]] == [2]
    assert (reports[-1].parent / "report.md").exists() and (reports[-1].parent / "adaptation.png").exists()


@pytest.mark.slow
def test_tiny_path_collect_fit_test_with_the_shipped_configs_alone(tmp_path, monkeypatch):
    """The README's first run, verbatim: collect the tiny preset, fit and test with the tiny config, no overrides."""
    monkeypatch.chdir(tmp_path)  # the configs' relative paths (data/tiny/, lightning_logs/) land in tmp_path
    tiny = str(ROOT / "configs" / "macaw" / "point_robot_tiny.yaml")
    main(["collect", "--config", str(ROOT / "configs" / "collect" / "point_robot_tiny.yaml"), "--no_progress"])
    assert len(list((tmp_path / "data" / "tiny" / "point_robot").glob("task_*"))) == 3
    main(["fit", "--config", tiny, "--trainer.enable_progress_bar=false"])
    run = tmp_path / "lightning_logs" / "macaw_point_robot_tiny" / "version_0"
    assert (run / "adaptation.png").exists(), "the evaluator ran during fit"
    main(["test", "--config", tiny, "--trainer.enable_progress_bar=false",
          f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"])
    metrics = json.loads((tmp_path / "lightning_logs" / "macaw_point_robot_tiny" / "version_1" / "metrics.json")
                         .read_text())
    assert metrics["settings"]["stage"] == "test" and [t["task_id"] for t in metrics["tasks"]] == [2]
    assert sorted(int(k) for k in metrics["curve"]) == [0, 1, 5]


def test_cheetah_ood_finetune_config_combines_with_the_macaw_config(capsys):
    """The fine-tuning config overrides the datamodule's split and adds its callbacks to the MACAW config."""
    macaw = ROOT / "configs" / "macaw" / "cheetah_vel.yaml"
    assert macaw.exists(), "configs/macaw/cheetah_vel.yaml is part of the project"
    with pytest.raises(SystemExit):
        main(["test", "--config", str(macaw), "--config", str(ROOT / "configs/eval/cheetah_vel_ood_finetune.yaml"),
              "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["init_args"]["split"] == "ood_0_2"
    assert printed["data"]["init_args"]["family"] == "cheetah_vel"
    names = [c["class_path"] for c in printed["trainer"]["callbacks"]]
    assert names[-1] == "lit_offmeta.callbacks.OnlineFineTuning"
    assert printed["trainer"]["callbacks"][-1]["init_args"]["report_env_steps"] == [20000, 200000]


def _python_api_checkpoint(tmp_path):
    """A checkpoint written the way a user's own Lightning project writes one (no CLI, so no class path)."""
    from lightning.pytorch import Trainer

    from lit_offmeta.algorithms import MACAW
    from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule

    data = tmp_path / "data"
    collect(get_preset("point_robot", "tiny"), data, seed=0, progress=False, log=None)
    dm = OfflineMetaDataModule("point_robot", data, train_ids=[0, 1], test_ids=[2], tasks_per_batch=2,
                               support_size=16, query_size=16, batches_per_epoch=2)
    model = MACAW(obs_dim=2, action_dim=2, net=NetConfig(width=12, depth=2, latent_size=4), lr_policy=3e-4)
    trainer = Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    trainer.save_checkpoint(tmp_path / "python_api.ckpt")
    return data, tmp_path / "python_api.ckpt"


def test_cli_test_accepts_a_checkpoint_saved_from_python(tmp_path, monkeypatch):
    """The config names the class; the checkpoint's own hyperparameters (width 12, not the config's 64) win."""
    from lit_offmeta.cli import OffMetaCLI

    data, ckpt = _python_api_checkpoint(tmp_path)
    seen = {}
    original = OffMetaCLI.after_instantiate_classes

    def record(cli):  # the module the command built, to check whose hyperparameters it has
        seen.update(cli.model.hparams)
        return original(cli)

    monkeypatch.setattr(OffMetaCLI, "after_instantiate_classes", record)
    main([
        "test", "--config", str(ROOT / "configs" / "macaw" / "point_robot.yaml"),
        f"--data.init_args.data_dir={data}", "--data.init_args.train_ids=[0, 1]", "--data.init_args.test_ids=[2]",
        "--data.init_args.tasks_per_batch=2", "--data.init_args.support_size=16", "--data.init_args.query_size=16",
        "--data.init_args.batches_per_epoch=1", f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}",
        "--trainer.enable_progress_bar=false", f"--ckpt_path={ckpt}",
    ])
    assert NetConfig.of(seen["net"]).width == 12 and seen["lr_policy"] == 3e-4

