"""Search walks (lit_offmeta.data.search_walks): searches chained from logged continuous-state steps."""

from __future__ import annotations

import numpy as np
import pytest

from lit_offmeta.data.relabel import TrialArrays
from lit_offmeta.data.search_walks import search_walk_trials
from lit_offmeta.tasks import get_family
from lit_offmeta.tasks.point_robot import ACTION_SCALE

EAST, WEST = {"goal": [1.0, 0.0]}, {"goal": [-1.0, 0.0]}


def _random_steps(trials: int = 300, seed: int = 0) -> TrialArrays:
    """Sparse-PointRobot steps with uniform random actions from states spread over the goals' surroundings, each
    episode starting at the origin: a dense, unstructured step set (rewards are recomputed by the walks)."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform([-1.3, -0.3], [1.3, 1.3], size=(trials, 2, 60, 2)).astype(np.float32)
    obs[:, :, 0] = 0.0
    actions = rng.uniform(-1.0, 1.0, size=obs.shape).astype(np.float32)
    return TrialArrays(obs=obs, actions=actions, rewards=np.zeros(obs.shape[:3], np.float32),
                       next_obs=(obs + ACTION_SCALE * actions).astype(np.float32),
                       terminals=np.zeros(obs.shape[:3], bool), valid=np.ones(obs.shape[:3], bool),
                       task_index=rng.integers(0, 2, trials), tasks={0: EAST, 1: WEST})


def _pays(walks: TrialArrays) -> np.ndarray:
    return ((walks.rewards > 0) & walks.valid).any(-1)  # [N, episodes]


def test_walks_chain_logged_steps_and_carry_their_own_tasks_rewards():
    family = get_family("point_robot_sparse")
    data = _random_steps()
    walks, jumps = search_walk_trials(family, data, np.array([0, 1, 0, 1]), np.random.default_rng(0), radius=0.05)
    assert walks.obs.shape == (4, 2, 60, 2) and walks.valid.all() and jumps <= 2  # a wander past the data's edge
    logged = {tuple(x) for x in np.concatenate([data.obs, data.actions, data.next_obs], -1).reshape(-1, 6).tolist()}
    steps = np.concatenate([walks.obs, walks.actions, walks.next_obs], -1).reshape(-1, 6)
    assert all(tuple(x) in logged for x in steps.tolist())  # every step is a logged one
    assert np.linalg.norm(walks.obs[:, :, 0], axis=-1).max() <= 0.05 + 1e-6  # near where the logged episodes start
    gap = np.linalg.norm(walks.obs[:, :, 1:] - walks.next_obs[:, :, :-1], axis=-1)
    assert (gap > 0.05 + 1e-6).sum() <= jumps  # each step starts within the radius of where the last one ended
    for i, task in enumerate(walks.task_index):
        expected = family.reward(data.tasks[int(task)], walks.obs[i], walks.actions[i], walks.next_obs[i])
        np.testing.assert_array_equal(walks.rewards[i], expected)


def test_steering_walks_rule_goals_out_and_go_to_the_one_left():
    """Fully steering walks head for the nearer possible goal; once its reward is absent or present they know the
    task (two goals), so the second episode pays in every walk. Unsteered walks wander and rarely pay."""
    family = get_family("point_robot_sparse")
    data = _random_steps()
    targets = np.repeat([0, 1], 10)
    steered, _ = search_walk_trials(family, data, targets, np.random.default_rng(1), greed=(1.0, 1.0))
    assert _pays(steered)[:, 1].all()
    wandering, _ = search_walk_trials(family, data, targets, np.random.default_rng(1), greed=(0.0, 0.0))
    assert _pays(wandering)[:, 1].mean() <= 0.2


def test_walks_are_reproducible_from_the_generator():
    family = get_family("point_robot_sparse")
    data = _random_steps(100)
    a, _ = search_walk_trials(family, data, np.array([0, 1]), np.random.default_rng(7))
    b, _ = search_walk_trials(family, data, np.array([0, 1]), np.random.default_rng(7))
    np.testing.assert_array_equal(a.next_obs, b.next_obs)


def test_a_walk_with_no_step_near_takes_the_nearest_and_counts_the_jump():
    family = get_family("point_robot_sparse")
    data = _random_steps(20)
    data.obs[:, :, 0] = 5.0  # every start state far from any other step's start
    walks, jumps = search_walk_trials(family, data, np.array([0]), np.random.default_rng(0), radius=0.05)
    assert jumps >= 2 and walks.valid.all()  # at least each episode's first step out of its far start


@pytest.mark.parametrize(
    "change, message",
    [
        ({"radius": 0.0}, "radius must be > 0"),
        ({"greed": (0.6, 0.4)}, "greed must be a range"),
        ({"target_tasks": np.array([2])}, r"target tasks \[2\] are not in the data"),
    ],
)
def test_bad_arguments_are_named(change, message):
    family = get_family("point_robot_sparse")
    kwargs = {"family": family, "trials": _random_steps(10), "target_tasks": np.array([0]),
              "rng": np.random.default_rng(0)} | change
    with pytest.raises(ValueError, match=message):
        search_walk_trials(**kwargs)


def test_families_the_walks_cannot_serve_are_refused():
    family = get_family("point_robot_sparse")
    data = _random_steps(10)
    no_goal = TrialArrays(**{**data.__dict__, "tasks": {0: {"velocity": 1.0}, 1: WEST}})
    with pytest.raises(ValueError, match="needs a 'goal'"):
        search_walk_trials(family, no_goal, np.array([1]), np.random.default_rng(0))
    wide = TrialArrays(**{**data.__dict__, "obs": np.zeros((10, 2, 60, 4), np.float32)})
    with pytest.raises(ValueError, match="4 dimensions"):
        search_walk_trials(family, wide, np.array([0]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="task-dependent dynamics"):
        search_walk_trials(get_family("walker_params"), data, np.array([0]), np.random.default_rng(0))
