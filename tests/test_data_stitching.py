"""Stitched search paths (lit_offmeta.data.stitching): real paths made of logged steps only."""

from __future__ import annotations

import numpy as np
import pytest

from lit_offmeta.data.relabel import TrialArrays
from lit_offmeta.data.scripted import scripted_trials
from lit_offmeta.data.stitching import stitch_trials
from lit_offmeta.datamodules.trajectory import TrialDataModule
from lit_offmeta.tasks import get_family


def _steps(trials: TrialArrays) -> set[tuple]:
    v = trials.valid
    return {(tuple(s), int(a), tuple(n)) for s, a, n in zip(trials.obs[v], trials.actions[v], trials.next_obs[v])}


def test_stitched_trials_are_environment_paths_with_environment_rewards():
    family = get_family("grid_navi")
    data = scripted_trials(family, [0, 5, 20], 20, 4, seed=0)
    stitched = stitch_trials(family, data, np.array([5, 20, 5]), np.random.default_rng(1))
    assert stitched.obs.shape == (3, 4, 15, 2) and stitched.valid.all() and not stitched.terminals.any()
    for i, task_index in enumerate(stitched.task_index):
        env = family.make_env(data.tasks[int(task_index)])
        for e in range(4):
            obs, _ = env.reset(seed=0)
            for t in range(15):
                np.testing.assert_array_equal(stitched.obs[i, e, t], obs)  # every episode from the start state
                obs, reward, *_ = env.step(int(stitched.actions[i, e, t]))
                np.testing.assert_array_equal(stitched.next_obs[i, e, t], obs)
                assert stitched.rewards[i, e, t] == pytest.approx(reward)


def test_stitched_steps_are_logged_steps_only():
    family = get_family("grid_navi")
    data = scripted_trials(family, [3], 3, 4, seed=2)  # few trials: many (cell, action) pairs never logged
    logged = _steps(data)
    assert len(logged) < 25 * 5
    stitched = stitch_trials(family, data, np.full(50, 3), np.random.default_rng(0))
    assert _steps(stitched) <= logged


def test_novelty_one_steps_to_an_unvisited_state_whenever_one_is_logged():
    family = get_family("grid_navi")
    data = scripted_trials(family, list(range(21)), 30, 4, seed=0)
    succ: dict[tuple, set[tuple]] = {}
    for s, _, n in _steps(data):
        succ.setdefault(s, set()).add(n)
    walks = stitch_trials(family, data, np.zeros(40, np.int64), np.random.default_rng(0), novelty=1.0)
    searched = 0
    for i in range(walks.num_trials):
        visited: set[tuple] = set()
        for e in range(4):
            visited.add(tuple(walks.obs[i, e, 0]))
            for t in range(15):
                s, n = tuple(walks.obs[i, e, t]), tuple(walks.next_obs[i, e, t])
                if succ[s] - visited:
                    assert n not in visited
                    searched += 1
                visited.add(n)
    assert searched > 40 * 15  # the rule was exercised beyond the first episode
    random_walks = stitch_trials(family, data, np.zeros(40, np.int64), np.random.default_rng(0), novelty=0.0)

    def cells_in_episode_1(t: TrialArrays) -> float:
        return float(np.mean([len({tuple(c) for c in t.next_obs[i, 0]}) for i in range(t.num_trials)]))

    assert cells_in_episode_1(walks) > cells_in_episode_1(random_walks) + 3


def test_stitching_refuses_continuous_states_stochastic_steps_and_bad_arguments():
    grid = get_family("grid_navi")
    data = scripted_trials(grid, [0], 5, 4, seed=0)
    with pytest.raises(ValueError, match="novelty"):
        stitch_trials(grid, data, np.zeros(2, np.int64), np.random.default_rng(0), novelty=1.5)
    with pytest.raises(ValueError, match=r"target tasks \[7\]"):
        stitch_trials(grid, data, np.array([7]), np.random.default_rng(0))
    noisy = data.select(np.arange(data.num_trials))
    noisy.next_obs = noisy.next_obs.copy()
    noisy.next_obs[0, 0, 0] = [4.0, 4.0]  # the same (cell, action) now has two successors
    with pytest.raises(ValueError, match="deterministic"):
        stitch_trials(grid, noisy, np.zeros(2, np.int64), np.random.default_rng(0))
    point = get_family("point_robot_sparse")
    continuous = scripted_trials(point, list(range(100)), 2, 2, seed=0)
    with pytest.raises(ValueError, match="discrete states"):
        stitch_trials(point, continuous, np.zeros(2, np.int64), np.random.default_rng(0))


def test_datamodule_adds_stitched_trials_for_every_training_task():
    base = TrialDataModule("grid_navi", split="all", scripted_trials_per_task=4, mix_prob=1.0)
    base.setup("fit")
    dm = TrialDataModule("grid_navi", split="all", scripted_trials_per_task=4, mix_prob=1.0,
                         stitched_trials_per_task=3)
    dm.setup("fit")
    n = base.train_trials.num_trials
    assert dm.train_trials.num_trials == n + 3 * 21
    np.testing.assert_array_equal(dm.train_trials.obs[:n], base.train_trials.obs)
    np.testing.assert_array_equal(np.bincount(dm.train_trials.task_index[n:]), np.full(21, 3))
    # the evaluator's behaviour returns come from each task's LOGGED trials only, never the stitched ones
    for task in (0, 7):
        logged = base.train_trials.select(np.flatnonzero(base.train_trials.task_index == task))
        returns = (logged.rewards * logged.valid).sum(-1).ravel()
        assert dm.behaviour_return_range(task) == pytest.approx((returns.min(), returns.mean(), returns.max()))
        np.testing.assert_array_equal(dm.logged_trials(task, limit=2).obs, logged.obs[:2])
    with pytest.raises(ValueError, match="stitched_trials_per_task"):
        TrialDataModule("grid_navi", stitched_trials_per_task=-1)
