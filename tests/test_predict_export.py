"""``Trainer.predict`` / ``lit-offmeta predict`` (adapted policies written per task) and ``export_policy`` /
``lit-offmeta export`` (TorchScript, ONNX, weights, architecture.json), checked against the module's own ``adapt``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from test_baselines_helpers import one_torch_thread, write_point_robot_datasets  # noqa: F401 (autouse fixture)
from torch import nn

from lit_offmeta.algorithms import MACAW, MetaBC, MultiTaskAWR, OfflinePEARL
from lit_offmeta.algorithms.prediction import AdaptedPolicyPrediction, predict_adapted_policy
from lit_offmeta.callbacks import AdaptedPolicyWriter
from lit_offmeta.cli import main
from lit_offmeta.datamodules import AdaptationBatch, OfflineMetaDataModule
from lit_offmeta.export import export_policy, load_exported
from lit_offmeta.nn import NetConfig

ROOT = Path(__file__).resolve().parents[1]
TRAIN_IDS, TEST_IDS = [0, 1, 2], [3, 4]

MODULES = {
    "macaw": lambda: MACAW(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8)),
    "meta_bc": lambda: MetaBC(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8)),
    "mt_awr": lambda: MultiTaskAWR(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, layer="linear"),
                                   finetune_steps=2),
    "pearl": lambda: OfflinePEARL(obs_dim=2, action_dim=2, latent_dim=3, hidden=[16, 16], encoder_hidden=[16]),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("point_robot_data")
    write_point_robot_datasets(root, TRAIN_IDS + TEST_IDS, episodes=4)
    return root


def _datamodule(data_dir: Path, **kwargs) -> OfflineMetaDataModule:
    return OfflineMetaDataModule("point_robot", data_dir, train_ids=TRAIN_IDS, test_ids=TEST_IDS, tasks_per_batch=2,
                                 support_size=16, query_size=16, batches_per_epoch=2, use_cache=False, **kwargs)


def _trainer(tmp_path: Path, **kwargs) -> Trainer:
    return Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=tmp_path, **kwargs)


@pytest.mark.parametrize("name", list(MODULES))
def test_trainer_predict_returns_each_tasks_adapted_policy_and_its_actions(name, data_dir, tmp_path):
    """One prediction per requested task, in order; its actions are the module's own ``adapt`` on the same
    batch, acting on that batch's observations."""
    torch.manual_seed(0)
    model, dm = MODULES[name](), _datamodule(data_dir, predict_ids=[4, 1])
    predictions = _trainer(tmp_path).predict(model, datamodule=dm)
    assert [p.task_id for p in predictions] == [4, 1]
    for p in predictions:
        assert isinstance(p, AdaptedPolicyPrediction)
        context = dm.adaptation_batch(p.task_id, size=16, seed=p.task_id)
        torch.testing.assert_close(p.obs, context["obs"])
        assert p.actions.shape == (16, 2) and bool(torch.isfinite(p.actions).all())
        policy = model.adapt(context)
        if hasattr(policy, "reset"):  # PEARL's belief policy: a fresh trial per observation, as predict does
            policy.reset(16)
        with torch.no_grad():
            expected = policy(context["obs"])
        torch.testing.assert_close(p.actions, expected)
        assert all(not t.is_inference() for t in p.policy.state_dict().values()), "the policy outlives predict"


def test_predict_ids_default_to_the_held_out_tasks_and_are_validated(data_dir):
    assert _datamodule(data_dir).predict_task_ids == tuple(TEST_IDS)
    with pytest.raises(ValueError, match="predict_ids is empty"):
        _datamodule(data_dir, predict_ids=[])
    with pytest.raises(ValueError, match="predict_ids"):
        _datamodule(data_dir, predict_ids=[400])


def test_predict_step_refuses_a_training_batch(data_dir):
    dm = _datamodule(data_dir)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    with pytest.raises(ValueError, match="MACAW.predict_step needs one task's adaptation batch.*predict_dataloader"):
        predict_adapted_policy(MODULES["macaw"](), batch)


def test_writer_files_reload_into_the_policy_and_reproduce_its_actions(data_dir, tmp_path):
    torch.manual_seed(0)
    model, dm = MODULES["macaw"](), _datamodule(data_dir, predict_ids=[3])
    writer = AdaptedPolicyWriter(tmp_path / "out")
    (prediction,) = _trainer(tmp_path, callbacks=[writer]).predict(model, datamodule=dm)
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["task_3.actions.npy", "task_3.obs.npy", "task_3.policy.pt"]
    state = torch.load(tmp_path / "out" / "task_3.policy.pt", weights_only=True)
    rebuilt = nn.Sequential(*[type(layer)() if not isinstance(layer, nn.Linear) else nn.Linear(
        layer.in_features, layer.out_features) for layer in prediction.policy])
    rebuilt.load_state_dict(state)
    obs = np.load(tmp_path / "out" / "task_3.obs.npy", allow_pickle=False)
    actions = np.load(tmp_path / "out" / "task_3.actions.npy", allow_pickle=False)
    with torch.no_grad():
        np.testing.assert_array_equal(rebuilt(torch.as_tensor(obs)).numpy(), actions)
    np.testing.assert_array_equal(actions, prediction.actions.numpy())


def test_writer_refuses_a_prediction_that_is_not_an_adapted_policy(tmp_path):
    writer = AdaptedPolicyWriter(tmp_path / "out")
    with pytest.raises(ValueError, match="AdaptedPolicyWriter writes adapted policies.*returned Tensor"):
        writer.write_on_batch_end(None, MODULES["macaw"](), torch.zeros(2), None, None, 0, 0)


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2), nn.Tanh())


def test_export_writes_every_format_and_each_reproduces_the_policy(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    policy = _mlp()
    paths = export_policy(policy, tmp_path / "policy", obs_dim=3, metadata={"task_id": 7})
    assert sorted(paths) == ["architecture", "onnx", "torchscript", "weights"]
    assert sorted(p.name for p in (tmp_path / "policy").iterdir()) == [
        "architecture.json", "policy.onnx", "policy.pt", "weights.pt"]
    assert [p.name for p in tmp_path.iterdir()] == ["policy"], "no temporary folder is left behind"
    arch = json.loads(paths["architecture"].read_text())
    assert (arch["obs_dim"], arch["action_dim"], arch["hidden_sizes"]) == (3, 2, [8, 8])
    assert arch["output"] == "tanh_squashed_mean" and arch["metadata"] == {"task_id": 7}
    obs = torch.randn(5, 3)
    with torch.no_grad():
        expected = policy(obs)
        torch.testing.assert_close(load_exported(tmp_path / "policy")(obs), expected, rtol=0, atol=0)
        torch.testing.assert_close(torch.jit.load(str(paths["torchscript"]))(obs), expected, rtol=0, atol=0)
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # the batch axis is dynamic
        (onnx_actions,) = session.run(None, {"obs": obs[:batch].numpy()})
        np.testing.assert_allclose(onnx_actions, expected[:batch].numpy(), rtol=1e-5, atol=1e-6)


def test_export_refuses_bad_input_and_leaves_nothing_behind(tmp_path, monkeypatch):
    import lit_offmeta.export as export

    with pytest.raises(ValueError, match="plain nn.Sequential.*got a Linear"):
        export_policy(nn.Linear(3, 2), tmp_path / "a", obs_dim=3)
    with pytest.raises(ValueError, match="obs_dim=4 but the policy's first layer takes 3 inputs"):
        export_policy(_mlp(), tmp_path / "a", obs_dim=4)
    with pytest.raises(ValueError, match="layer 1 of the policy is a Sigmoid"):
        export_policy(nn.Sequential(nn.Linear(3, 2), nn.Sigmoid()), tmp_path / "a", obs_dim=3)
    with pytest.raises(ValueError, match="unknown formats \\['tflite'\\]"):
        export_policy(_mlp(), tmp_path / "a", obs_dim=3, formats=["tflite"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="full already exists and is not an empty folder"):
        export_policy(_mlp(), tmp_path / "full", obs_dim=3)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed mid-export")

    monkeypatch.setattr(export, "_export_onnx", crash)
    monkeypatch.setattr(export, "_require_onnx", lambda: None)
    with pytest.raises(KeyboardInterrupt):
        export_policy(_mlp(), tmp_path / "b", obs_dim=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"], "a killed export leaves no folder"


def test_export_refuses_a_belief_policy(data_dir, tmp_path):
    model, dm = MODULES["pearl"](), _datamodule(data_dir, predict_ids=[3])
    (prediction,) = _trainer(tmp_path).predict(model, datamodule=dm)
    with pytest.raises(ValueError, match="got a PearlRolloutPolicy"):
        export_policy(prediction.policy, tmp_path / "pearl", obs_dim=2)


def test_load_exported_names_what_is_wrong(tmp_path):
    export_policy(_mlp(), tmp_path / "p", obs_dim=3, formats=["torchscript"])
    with pytest.raises(ValueError, match="not a policy exported"):
        load_exported(tmp_path / "nothing")
    arch = tmp_path / "p" / "architecture.json"
    good = arch.read_text()
    arch.write_text("{broken")
    with pytest.raises(ValueError, match="architecture.json is not valid JSON"):
        load_exported(tmp_path / "p")
    spec = json.loads(good)
    spec["layers"][0]["out_features"] = 9
    arch.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="weights.pt does not load into the layers"):
        load_exported(tmp_path / "p")
    spec["layers"][0] = {"type": "conv"}
    arch.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="layers\\[0\\] has type 'conv'"):
        load_exported(tmp_path / "p")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data_dir) -> Path:
    """A MACAW checkpoint of the point_robot config's architecture shrunk as the CLI arguments below shrink it."""
    tmp = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = MACAW(obs_dim=2, action_dim=2, net=NetConfig(width=16, depth=2, latent_size=8))
    trainer = _trainer(tmp, max_steps=2)
    trainer.fit(model, datamodule=_datamodule(data_dir))
    trainer.save_checkpoint(tmp / "macaw.ckpt")
    return tmp / "macaw.ckpt"


def _cli_args(data_dir: Path, tmp_path: Path) -> list[str]:
    return [
        "--config", str(ROOT / "configs" / "macaw" / "point_robot.yaml"),
        f"--data.init_args.data_dir={data_dir}", f"--data.init_args.train_ids={TRAIN_IDS}",
        f"--data.init_args.test_ids={TEST_IDS}", "--data.init_args.tasks_per_batch=2",
        "--data.init_args.support_size=16", "--data.init_args.query_size=16",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}", "--trainer.enable_progress_bar=false",
    ]


def test_cli_predict_writes_each_held_out_tasks_policy(data_dir, checkpoint, tmp_path):
    args = _cli_args(data_dir, tmp_path)
    with pytest.raises(ValueError, match="no prediction writer.*configs/predict/adapted_policies.yaml"):
        main(["predict", *args, f"--ckpt_path={checkpoint}"])
    main(["predict", *args, "--config", str(ROOT / "configs" / "predict" / "adapted_policies.yaml"),
          f"--trainer.callbacks.init_args.output_dir={tmp_path / 'pred'}", f"--ckpt_path={checkpoint}"])
    names = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert names == [f"task_{t}.{kind}" for t in TEST_IDS for kind in ("actions.npy", "obs.npy", "policy.pt")]
    model = MACAW.load_from_checkpoint(checkpoint, weights_only=True)
    dm = _datamodule(data_dir)
    policy = model.adapt(dm.adaptation_batch(3, size=16, seed=3))
    obs = torch.as_tensor(np.load(tmp_path / "pred" / "task_3.obs.npy"))
    with torch.no_grad():
        np.testing.assert_allclose(np.load(tmp_path / "pred" / "task_3.actions.npy"), policy(obs).numpy(),
                                   rtol=1e-6, atol=1e-6)


def test_cli_export_writes_a_policy_that_matches_the_adapted_one(data_dir, checkpoint, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "policy_3"
    main(["export", "--ckpt_path", str(checkpoint), "--task_id", "3", "--out", str(out),
          *_cli_args(data_dir, tmp_path)])
    assert f"onnx: {out / 'policy.onnx'}" in capsys.readouterr().out
    arch = json.loads((out / "architecture.json").read_text())
    assert arch["metadata"]["task_id"] == 3 and arch["metadata"]["algorithm"] == "lit_offmeta.algorithms.macaw.MACAW"
    model = MACAW.load_from_checkpoint(checkpoint, weights_only=True)
    policy = model.adapt(_datamodule(data_dir).adaptation_batch(3, size=16, seed=3))
    obs = torch.randn(7, 2)
    with torch.no_grad():
        expected = policy(obs)
    torch.testing.assert_close(load_exported(out)(obs), expected, rtol=1e-6, atol=1e-6)
    (actions,) = ort.InferenceSession(str(out / "policy.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"obs": obs.numpy()})
    np.testing.assert_allclose(actions, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_cli_export_refuses_bad_arguments(data_dir, checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", str(tmp_path / "missing.ckpt"), "--task_id", "3", "--out", str(tmp_path / "o")])
    assert "missing.ckpt: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", str(checkpoint), "--task_id", "3", "--out", str(tmp_path / "o"),
              "--formats", "tflite"])
    assert "--formats: unknown ['tflite']" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_adaptation_batch_is_what_predict_yields(data_dir):
    dm = _datamodule(data_dir, predict_ids=[3])
    dm.setup("predict")
    (batch,) = list(dm.predict_dataloader())
    assert isinstance(batch, AdaptationBatch) and batch.task_id == 3
    for key, value in dm.adaptation_batch(3, size=16, seed=3).items():
        torch.testing.assert_close(batch.context[key], value)
