"""Named task splits: disjoint, in range, and equal to the ids the papers document."""

from __future__ import annotations

import numpy as np
import pytest

from lit_offmeta.tasks import FAMILIES, get_family
from lit_offmeta.tasks.base import TaskSplit


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_split_is_disjoint_and_indexes_default_tasks(name):
    family = get_family(name)
    splits = family.splits()
    assert family.default_split in splits
    for split_name, split in splits.items():
        assert split.name == split_name
        ids = split.train + split.test
        assert all(0 <= i < family.num_default_tasks for i in ids), split_name
        assert len(set(split.train)) == len(split.train) and len(set(split.test)) == len(split.test)
        if not split.allow_overlap:
            assert not set(split.train) & set(split.test), split_name
        assert split.test, f"{split_name} has no held-out tasks"


def test_cheetah_vel_paper_and_sparsity_splits():
    splits = get_family("cheetah_vel").splits()
    assert splits["paper"].test == (2, 7, 15, 23, 26)
    assert len(splits["paper"].train) == 35
    assert splits["sparse_20"].train == tuple(range(0, 40, 2))
    assert splits["sparse_10"].train == (0, 4, 8, 12, 16, 20, 24, 28, 32, 36)
    assert splits["sparse_5"].train == (0, 8, 16, 24, 32)
    assert splits["sparse_3"].train == (0, 16, 32)
    for name in ("sparse_20", "sparse_10", "sparse_5", "sparse_3"):
        split = splits[name]
        assert sorted(split.train + split.test) == list(range(40)), name  # test = all the rest


def test_cheetah_vel_ood_splits_follow_the_velocity_ranges():
    """Targets are 0.075 * (i + 1): [0, 1) holds indices 0-12 (up to 0.975), [0, 2) holds 0-25 (up to 1.95)."""
    family = get_family("cheetah_vel")
    splits = family.splits()
    velocities = np.array([t["velocity"] for t in family.default_tasks()])
    assert splits["ood_0_1"].train == tuple(range(13)) and splits["ood_0_1"].test == tuple(range(13, 40))
    assert splits["ood_0_2"].train == tuple(range(26)) and splits["ood_0_2"].test == tuple(range(26, 40))
    assert velocities[list(splits["ood_0_1"].train)].max() < 1.0 <= velocities[list(splits["ood_0_1"].test)].min()
    assert velocities[list(splits["ood_0_2"].test)].min() >= 2.0


def test_ant_dir_paper_split():
    split = get_family("ant_dir").split("paper")
    assert split.test == (6, 17, 23, 30, 41)
    assert len(split.train) == 45


def test_cheetah_dir_trains_and_tests_on_both_directions():
    split = get_family("cheetah_dir").split()
    assert split.train == split.test == (0, 1) and split.allow_overlap


def test_point_robot_sparse_and_walker_paper_splits():
    assert get_family("point_robot_sparse").split("paper").test == tuple(range(80, 100))
    walker = get_family("walker_params").split("paper")
    assert walker.train == tuple(range(45)) and walker.test == tuple(range(45, 50))


def test_unknown_split_is_a_clear_error():
    with pytest.raises(ValueError, match="family 'cheetah_vel' has no split 'sparse_7'; available"):
        get_family("cheetah_vel").split("sparse_7")


def test_overlapping_split_needs_allow_overlap():
    with pytest.raises(ValueError, match=r"share task ids \[1\]"):
        TaskSplit("bad", (0, 1), (1, 2))
    assert TaskSplit("ok", (0, 1), (1, 2), allow_overlap=True).test == (1, 2)
