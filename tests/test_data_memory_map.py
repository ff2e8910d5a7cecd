"""Memory-mapped packed caches: the same buffers, batches and value targets as reading them, pages released."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_offmeta.data import buffer as buffer_module
from lit_offmeta.data import packed as packed_module
from lit_offmeta.data.buffer import mapped_region, release_pages
from lit_offmeta.data.storage import dataset_path, load_task_buffers, read_task_dataset, write_task_dataset
from lit_offmeta.data.synthetic import synthetic_episodes
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule
from lit_offmeta.tasks import get_family

FIELDS = ("obs", "actions", "rewards", "next_obs", "terminals", "truncations", "episode_starts", "behaviour_steps")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 1 KB: every scan below crosses many chunk boundaries."""
    monkeypatch.setattr(buffer_module, "MAPPED_CHUNK_BYTES", 1024)


@pytest.fixture
def root(tmp_path):
    tasks = get_family("point_robot").default_tasks()
    for i in range(4):
        write_task_dataset(tmp_path, "point_robot", i, tasks[i],
                           synthetic_episodes(i, 30, 7, seed=i, terminate_every=4))
    return tmp_path


def test_mapped_buffers_equal_read_buffers(root):
    read = load_task_buffers(root, "point_robot")
    mapped = load_task_buffers(root, "point_robot", memory_map=True)
    for a, b in zip(read, mapped):
        assert mapped_region(b.obs) is not None and mapped_region(a.obs) is None
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        ta, tb = a.value_targets(0.99), b.value_targets(0.99)
        np.testing.assert_array_equal(ta.mc_returns, tb.mc_returns)
        np.testing.assert_array_equal(ta.bootstrap_discounts, tb.bootstrap_discounts)
        np.testing.assert_array_equal(ta.bootstrap_index, tb.bootstrap_index)


def test_discrete_actions_are_read_from_the_map(tmp_path):
    fam = get_family("grid_navi")
    eps = synthetic_episodes(0, 9, 5, obs_dim=fam.obs_dim, discrete_actions=fam.action_dim)
    write_task_dataset(tmp_path, "grid_navi", 0, fam.default_tasks()[0], eps)
    (buf,) = load_task_buffers(tmp_path, "grid_navi", [0], memory_map=True)
    assert buf.actions.dtype == np.int64
    np.testing.assert_array_equal(buf.actions, np.concatenate([e["actions"] for e in eps]))


def test_datamodule_batches_are_identical_mapped_or_read(root, monkeypatch):
    monkeypatch.setattr(packed_module, "RELEASE_EVERY", 2)  # pages are released between the batches compared

    def batches(memory_map: bool):
        dm = OfflineMetaDataModule("point_robot", str(root), train_ids=[0, 1, 2], test_ids=[3], tasks_per_batch=2,
                                   support_size=8, query_size=16, batches_per_epoch=6, memory_map=memory_map)
        dm.setup("fit")
        return [b for b in dm.train_dataloader()], dm

    (read, _), (mapped, dm) = batches(False), batches(True)
    assert dm._train_set.packed.mapped and dm._train_set.packed.gathers == 6
    for a, b in zip(read, mapped):
        assert torch.equal(a.task_ids, b.task_ids)
        for part in ("support", "query"):
            for key, value in getattr(a, part).items():
                assert torch.equal(value, getattr(b, part)[key]), (part, key)


def test_released_pages_read_back_the_same_values(root):
    buf = read_task_dataset(dataset_path(root, "point_robot", 0), memory_map=True)
    before = np.array(buf.obs)
    assert release_pages(buf.obs) and not release_pages(before)
    np.testing.assert_array_equal(np.array(buf.obs), before)


def test_a_corrupt_cache_is_rebuilt_not_mapped(root):
    folder = dataset_path(root, "point_robot", 1)
    expected = read_task_dataset(folder).obs.copy()
    block = np.load(folder / "packed.npy", mmap_mode="r+")
    block[3, 0] = np.nan  # an in-place edit of the cache (its source checksums still match)
    block.flush()
    del block
    buf = read_task_dataset(folder, memory_map=True)
    np.testing.assert_array_equal(buf.obs, expected)


def test_memory_map_needs_the_cache(root):
    with pytest.raises(ValueError, match="memory_map=True maps the packed cache, so it needs use_cache=True"):
        read_task_dataset(dataset_path(root, "point_robot", 0), use_cache=False, memory_map=True)
