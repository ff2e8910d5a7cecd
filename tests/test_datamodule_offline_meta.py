"""OfflineMetaDataModule: batches checked on their values (id-coded observations), determinism, errors."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from lit_offmeta.data.batch import TRANSITION_KEYS, TaskBatch
from lit_offmeta.data.storage import MissingDatasetError, write_task_dataset
from lit_offmeta.data.synthetic import EPISODE_STRIDE, synthetic_episodes
from lit_offmeta.datamodules.batch_keys import BatchKeySampler
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule
from lit_offmeta.tasks import get_family

FAMILY = "point_robot"
HORIZON = 10
EPISODES = 40
TRAIN, TEST = [0, 1, 2, 3, 4, 5], [6, 7, 8]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("offline_meta")
    tasks = get_family(FAMILY).default_tasks()
    for i in TRAIN + TEST:
        write_task_dataset(root, FAMILY, i, tasks[i], synthetic_episodes(i, EPISODES, HORIZON, seed=i))
    return root


def _dm(data_dir, **kwargs):
    args = dict(
        train_ids=TRAIN,
        test_ids=TEST,
        tasks_per_batch=3,
        support_size=16,
        query_size=32,
        batches_per_epoch=5,
        seed=0,
    )
    args.update(kwargs)
    dm = OfflineMetaDataModule(FAMILY, data_dir, **args)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _decode(obs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Observation ids -> (task index, row inside the task's buffer) for every transition."""
    code, t = obs[..., 0].numpy().astype(np.int64), obs[..., 1].numpy().astype(np.int64)
    return code // EPISODE_STRIDE, (code % EPISODE_STRIDE) * HORIZON + t


def test_train_batch_values(data_dir):
    """K distinct train tasks; support contiguous; query disjoint from support; every field from that task."""
    dm = _dm(data_dir)
    for batch in dm.train_dataloader():
        assert isinstance(batch, TaskBatch) and batch.num_tasks == 3
        ids = batch.task_ids.tolist()
        assert len(set(ids)) == 3 and set(ids) <= set(TRAIN)
        s_task, s_row = _decode(batch.support["obs"])
        q_task, q_row = _decode(batch.query["obs"])
        for k, task_id in enumerate(ids):
            assert (s_task[k] == task_id).all() and (q_task[k] == task_id).all()
            np.testing.assert_array_equal(np.diff(s_row[k]), 1)  # a contiguous slice of the buffer
            assert len(set(q_row[k])) == 32 and not set(q_row[k]) & set(s_row[k])
            buf = dm.buffer(task_id)
            targets = buf.value_targets(0.99)
            for part, rows in (("support", s_row[k]), ("query", q_row[k])):
                data = getattr(batch, part)
                np.testing.assert_array_equal(data["actions"][k].numpy(), buf.actions[rows])
                np.testing.assert_array_equal(data["rewards"][k].numpy(), buf.rewards[rows])
                np.testing.assert_array_equal(data["next_obs"][k].numpy(), buf.next_obs[rows])
                np.testing.assert_allclose(data["mc_returns"][k].numpy(), targets.mc_returns[rows])
                np.testing.assert_allclose(
                    data["bootstrap_discounts"][k].numpy(), targets.bootstrap_discounts[rows]
                )
                np.testing.assert_array_equal(
                    data["bootstrap_obs"][k].numpy(), buf.next_obs[targets.bootstrap_index[rows]]
                )
        assert set(batch.support) == set(TRANSITION_KEYS)
        assert all(v.dtype == torch.float32 for v in batch.support.values())


def test_same_seed_same_batches_and_epochs_differ(data_dir):
    def epoch_batches(dm, epoch=0):
        loader = dm.train_dataloader()
        for _ in range(epoch):  # each pass over the loader is the next epoch
            list(loader.sampler)
        return [(b.task_ids.clone(), b.support["obs"].clone(), b.query["obs"].clone()) for b in loader]

    a, b = epoch_batches(_dm(data_dir)), epoch_batches(_dm(data_dir))
    assert all(torch.equal(x, y) for xa, xb in zip(a, b) for x, y in zip(xa, xb))
    c = epoch_batches(_dm(data_dir, seed=1))
    assert not all(torch.equal(xa[1], xc[1]) for xa, xc in zip(a, c))
    d = epoch_batches(_dm(data_dir), epoch=1)
    assert not all(torch.equal(xa[1], xd[1]) for xa, xd in zip(a, d))


def test_workers_give_the_same_batches(data_dir):
    """Batches depend on (seed, epoch, index) only, so num_workers changes nothing."""
    serial = [b.query["obs"] for b in _dm(data_dir).train_dataloader()]
    parallel = [b.query["obs"] for b in _dm(data_dir, num_workers=2).train_dataloader()]
    assert len(serial) == len(parallel) == 5
    assert all(torch.equal(x, y) for x, y in zip(serial, parallel))


def test_quality_window_restricts_support_only_or_both(data_dir):
    dm = _dm(data_dir, window="last", window_trajectories=5)
    first_row = (EPISODES - 5) * HORIZON
    saw_query_outside = False
    for batch in dm.train_dataloader():
        _, s_row = _decode(batch.support["obs"])
        _, q_row = _decode(batch.query["obs"])
        assert (s_row >= first_row).all()
        saw_query_outside |= bool((q_row < first_row).any())
    assert saw_query_outside  # paper App. D: only the adaptation data comes from the window
    dm = _dm(data_dir, window="first", window_trajectories=6, window_applies_to="both")
    for batch in dm.train_dataloader():
        assert (_decode(batch.support["obs"])[1] < 60).all() and (_decode(batch.query["obs"])[1] < 60).all()


def test_eval_batches_cover_held_out_tasks_with_disjoint_uniform_sets(data_dir):
    dm = _dm(data_dir)
    batches = list(dm.val_dataloader())
    assert [b.task_ids.tolist() for b in batches] == [[6, 7, 8]]
    s_task, s_row = _decode(batches[0].support["obs"])
    q_task, q_row = _decode(batches[0].query["obs"])
    for k in range(3):
        assert not set(s_row[k]) & set(q_row[k])
        assert (np.diff(np.sort(s_row[k])) > 1).any()  # uniform, not a slice
    assert torch.equal(batches[0].query["obs"], next(iter(dm.test_dataloader())).query["obs"])
    dm2 = _dm(data_dir, tasks_per_batch=2)
    assert [b.task_ids.tolist() for b in dm2.val_dataloader()] == [[6, 7], [8]]


def test_adaptation_batch_and_task_api(data_dir):
    dm = _dm(data_dir)
    batch = dm.adaptation_batch(7, size=50, window="middle", num_trajectories=6, seed=3)
    task, rows = _decode(batch["obs"])
    assert batch["obs"].shape == (50, 2) and (task == 7).all() and len(set(rows)) == 50
    assert rows.min() >= 17 * HORIZON and rows.max() < 23 * HORIZON  # trajectories 17..22 of 40
    assert torch.equal(batch["obs"], dm.adaptation_batch(7, 50, "middle", 3, num_trajectories=6)["obs"])
    assert not torch.equal(batch["obs"], dm.adaptation_batch(7, 50, "middle", 4, num_trajectories=6)["obs"])
    assert (_decode(dm.adaptation_batch(0, 10)["obs"])[0] == 0).all()  # a training task works too
    assert dm.task(7) == get_family(FAMILY).default_tasks()[7]
    returns = dm.buffer(7).episode_returns()
    low, mean, high = dm.behaviour_return_range(7)
    assert (low, mean, high) == (returns.min(), pytest.approx(returns.mean()), returns.max())
    assert dm.obs_dim == 2 and dm.action_dim == 2
    assert dm.train_task_ids == tuple(TRAIN) and dm.test_task_ids == tuple(TEST)


def test_max_transitions_per_task_keeps_the_oldest_data(data_dir):
    dm = _dm(data_dir, max_transitions_per_task=105)
    assert len(dm.buffer(0)) == 105
    # The half episode at the cut does not count as a behaviour episode for the return range.
    full = dm.buffer(0).episode_returns()[:10]
    assert dm.behaviour_return_range(0) == (full.min(), pytest.approx(full.mean()), full.max())
    for batch in dm.train_dataloader():
        assert (_decode(batch.query["obs"])[1] < 105).all()


def test_named_split_is_used_by_default(data_dir):
    split = get_family(FAMILY).split("random")
    dm = OfflineMetaDataModule(FAMILY, data_dir, split="random")
    assert dm.train_task_ids == split.train and dm.test_task_ids == split.test


class _Consumer(pl.LightningModule):
    """Records which tasks it was fed; its loss is a regression on the query returns."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        assert isinstance(batch, TaskBatch)
        self.seen.append(batch.task_ids.tolist())
        return ((batch.query["mc_returns"] - self.w) ** 2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", ((batch.query["mc_returns"] - self.w) ** 2).mean(), batch_size=batch.num_tasks)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_fit_consumes_task_batches(data_dir, tmp_path):
    model = _Consumer()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    dm = OfflineMetaDataModule(
        FAMILY,
        data_dir,
        train_ids=TRAIN,
        test_ids=TEST,
        tasks_per_batch=3,
        support_size=16,
        query_size=32,
        batches_per_epoch=4,
    )
    trainer.fit(model, datamodule=dm)
    assert len(model.seen) == 8
    assert model.seen[:4] != model.seen[4:]  # Lightning advanced the sampler's epoch
    assert isinstance(trainer.train_dataloader.sampler, BatchKeySampler)  # kept, not wrapped


def test_without_held_out_tasks_validation_is_skipped_and_testing_refused(data_dir):
    dm = _dm(data_dir, test_ids=[])
    with pytest.warns(UserWarning, match="validation is skipped"):
        assert dm.val_dataloader() == []
    with pytest.raises(ValueError, match="no held-out tasks"):
        dm.test_dataloader()


def test_lightning_cli_can_build_it_from_config(data_dir):
    """Typed __init__ arguments are what LightningCLI / jsonargparse read."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(OfflineMetaDataModule, "data")
    cfg = parser.parse_args(
        [
            "--data.family=point_robot",
            f"--data.data_dir={data_dir}",
            "--data.window=last",
            "--data.window_trajectories=5",
            "--data.train_ids=[0, 1, 2]",
            "--data.test_ids=[6]",
            "--data.tasks_per_batch=2",
        ]
    )
    dm = parser.instantiate_classes(cfg).data
    assert dm.window == "last" and dm.train_task_ids == (0, 1, 2) and dm.test_task_ids == (6,)
    with pytest.raises(SystemExit):
        parser.parse_args(["--data.family=point_robot", f"--data.data_dir={data_dir}", "--data.window=best"])


# --- errors ------------------------------------------------------------------------------------------------


def test_missing_data_names_the_collect_command(tmp_path, data_dir):
    dm = OfflineMetaDataModule(FAMILY, tmp_path, train_ids=[0, 1, 2], test_ids=[3], tasks_per_batch=2)
    with pytest.raises(
        MissingDatasetError, match=rf"task\(s\) \[0, 1, 2, 3\].*lit-offmeta collect --family {FAMILY}"
    ):
        dm.prepare_data()
    dm = OfflineMetaDataModule(FAMILY, data_dir, train_ids=[0, 1, 2], test_ids=[9], tasks_per_batch=2)
    with pytest.raises(MissingDatasetError, match=r"task\(s\) \[9\]"):
        dm.setup("fit")


def test_sizes_larger_than_a_task_are_refused(data_dir):
    with pytest.raises(ValueError, match="support_size=300 \\+ query_size=200 need more transitions"):
        _dm(data_dir, support_size=300, query_size=200)
    with pytest.raises(ValueError, match="support_size=60 \\+ query_size=32 need more"):
        _dm(data_dir, support_size=60, window="last", window_trajectories=5)
    with pytest.raises(ValueError, match="a uniform draw of 80 transitions asks for more than the 40"):
        _dm(data_dir).adaptation_batch(6, size=80, window="first", num_trajectories=4)


def test_a_split_that_evaluates_on_its_training_tasks_is_kept_and_explicit_overlaps_are_refused(tmp_path):
    """Cheetah-Dir's protocol (PEARL, MACAW) trains and evaluates on its two tasks; its split says so. The same
    overlap given by hand is a mistake."""
    dm = OfflineMetaDataModule("cheetah_dir", tmp_path, tasks_per_batch=2)
    assert dm.train_task_ids == dm.test_task_ids == (0, 1)
    with pytest.raises(ValueError, match=r"share tasks \[0, 1\]"):
        OfflineMetaDataModule("cheetah_dir", tmp_path, tasks_per_batch=2, train_ids=[0, 1], test_ids=[0, 1])
    with pytest.raises(ValueError, match="tasks_per_batch=5 exceeds the 2 training tasks"):
        OfflineMetaDataModule("cheetah_dir", tmp_path)


def test_bad_arguments_are_refused(data_dir):
    with pytest.raises(ValueError, match="tasks_per_batch=7 exceeds the 6 training tasks"):
        OfflineMetaDataModule(FAMILY, data_dir, train_ids=TRAIN, test_ids=TEST, tasks_per_batch=7)
    with pytest.raises(ValueError, match=r"share tasks \[6\]"):
        OfflineMetaDataModule(FAMILY, data_dir, train_ids=[0, 6], test_ids=[6])
    with pytest.raises(ValueError, match=r"outside \[0, 40\)"):
        OfflineMetaDataModule(FAMILY, data_dir, train_ids=[0, 40], test_ids=[1])
    with pytest.raises(ValueError, match="needs window_trajectories >= 1"):
        OfflineMetaDataModule(FAMILY, data_dir, window="last")
    with pytest.raises(ValueError, match="window must be one of"):
        OfflineMetaDataModule(FAMILY, data_dir, window="best", window_trajectories=3)
    with pytest.raises(ValueError, match="support_size must be >= 1"):
        OfflineMetaDataModule(FAMILY, data_dir, support_size=0)
    with pytest.raises(ValueError, match="has no split 'nope'"):
        OfflineMetaDataModule(FAMILY, data_dir, split="nope")


def test_data_of_the_wrong_shape_for_the_family_is_refused(tmp_path):
    # point_robot_sparse shares point_robot's spaces; write 3-d observations by going around the family check.
    from lit_offmeta.data import storage

    for i in range(2):
        write_task_dataset(
            tmp_path, FAMILY, i, get_family(FAMILY).default_tasks()[i], synthetic_episodes(i, 3, 5)
        )
    dm = OfflineMetaDataModule(
        FAMILY, tmp_path, train_ids=[0], test_ids=[1], tasks_per_batch=1, support_size=2, query_size=2
    )
    buffers = storage.load_task_buffers(tmp_path, FAMILY, [0, 1])
    buffers[1].obs = np.concatenate([buffers[1].obs, buffers[1].obs[:, :1]], 1)
    buffers[1].next_obs = np.concatenate([buffers[1].next_obs, buffers[1].next_obs[:, :1]], 1)
    dm._buffers = {b.task_index: b for b in buffers}
    with pytest.raises(ValueError, match="inconsistent observation sizes: task 0 .* task 1"):
        dm.setup("fit")


def test_path_data_dir_is_saved_as_a_string_so_checkpoints_load_with_weights_only(tmp_path):
    """A ``pathlib.Path`` data_dir is stored in hparams as ``str`` (weights_only loading rejects PosixPath)."""
    dm = OfflineMetaDataModule("point_robot", tmp_path)
    assert dm.hparams["data_dir"] == str(tmp_path) and isinstance(dm.hparams["data_dir"], str)
    torch.save({"datamodule_hyper_parameters": dict(dm.hparams)}, tmp_path / "h.pt")
    loaded = torch.load(tmp_path / "h.pt", weights_only=True)
    assert loaded["datamodule_hyper_parameters"]["data_dir"] == str(tmp_path)


def test_a_corrupt_task_is_reported_as_corrupt_by_the_datamodule(tmp_path):
    from lit_offmeta.collect.presets import get_preset
    from lit_offmeta.collect.runner import collect

    collect(get_preset("point_robot", "tiny"), tmp_path, seed=0, progress=False, log=None)
    meta = tmp_path / "point_robot" / "task_0002-v0" / "data" / "metadata.json"
    meta.write_text("{not json")
    dm = OfflineMetaDataModule("point_robot", tmp_path, train_ids=[0, 1], test_ids=[2], tasks_per_batch=2)
    with pytest.raises(ValueError, match=rf"{meta} is corrupt"):
        dm.prepare_data()
