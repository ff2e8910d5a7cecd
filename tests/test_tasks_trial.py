"""The multi-episode trial wrapper (BAMDP): episode flag, resets at boundaries, trial length."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from lit_offmeta.tasks import get_family
from lit_offmeta.tasks.trial import TrialWrapper, make_trial_env


def play(env, policy, seed=0):
    """Run one whole trial; returns per-step records (next_obs is info['final_obs'] at boundaries)."""
    obs, info = env.reset(seed=seed)
    steps = []
    while True:
        action = policy(obs)
        new_obs, reward, terminated, truncated, info = env.step(action)
        steps.append(dict(obs=obs, action=action, reward=reward, next_obs=info.get("final_obs", new_obs),
                          returned=new_obs, terminated=terminated, truncated=truncated, info=info))
        obs = new_obs
        if terminated or truncated:
            return steps


def test_grid_navi_trial_of_four_episodes():
    """4 x 15 steps; flag 1 only on the observation ending each episode; every episode restarts at (0, 0)."""
    family = get_family("grid_navi")
    task = {"goal": [4, 4]}
    env = make_trial_env(family, task, episodes=4)
    assert env.observation_space.shape == (3,)
    assert env.trial_length == 60
    steps = play(env, lambda obs: 2)  # always "right": reaches x = 4 after 4 steps
    assert len(steps) == 60
    assert [s["truncated"] for s in steps] == [False] * 59 + [True]
    assert not any(s["terminated"] for s in steps)
    flags = np.array([s["next_obs"][-1] for s in steps])
    np.testing.assert_array_equal(np.flatnonzero(flags), [14, 29, 44, 59])
    for boundary in (14, 29, 44):
        info = steps[boundary]["info"]
        assert info["episode_done"] and info["episode"] == boundary // 15 + 1 and info["episode_step"] == 0
        np.testing.assert_array_equal(steps[boundary]["next_obs"], [4.0, 0.0, 1.0])  # where the episode ended
        np.testing.assert_array_equal(steps[boundary]["returned"], [0.0, 0.0, 0.0])  # restart at the start cell
    assert [s["info"]["episode"] for s in steps[:16]] == [0] * 14 + [1, 1]
    # Rewards use the inner observation (flag stripped) and the true final observation at boundaries.
    obs = np.stack([s["obs"][:-1] for s in steps])
    next_obs = np.stack([s["next_obs"][:-1] for s in steps])
    rewards = family.reward(task, obs, np.array([s["action"] for s in steps]), next_obs)
    np.testing.assert_array_equal(rewards, [s["reward"] for s in steps])


def test_inner_termination_ends_only_that_episode():
    """Walker2d falls under random actions: each fall starts the next episode; the last fall ends the trial."""
    family = get_family("walker_params")
    env = make_trial_env(family, family.default_tasks()[0], episodes=3)
    env.action_space.seed(0)
    steps = play(env, lambda obs: env.action_space.sample())
    ends = [i for i, s in enumerate(steps) if s["info"]["episode_done"]]
    assert len(ends) == 3 and ends[-1] == len(steps) - 1
    assert all(steps[i]["info"]["episode_terminated"] for i in ends)  # random walkers fall before 200 steps
    assert len(steps) < env.trial_length
    assert steps[-1]["terminated"] and not steps[-1]["truncated"]
    assert not any(s["terminated"] or s["truncated"] for s in steps[:-1])
    for i in ends[:-1]:
        restart = steps[i]["returned"]
        assert restart[-1] == 0.0 and abs(restart[1] - 1.25) < 0.01  # standing again (reset noise 5e-3)
        assert steps[i]["next_obs"][-1] == 1.0


def test_single_episode_trial_adds_no_flag():
    family = get_family("point_robot")
    env = make_trial_env(family, family.default_tasks()[0], episodes=1)
    assert env.observation_space == family.make_env(family.default_tasks()[0]).observation_space
    steps = play(env, lambda obs: np.array([0.5, 0.5], dtype=np.float32))
    assert len(steps) == family.horizon and steps[-1]["truncated"]
    assert steps[-1]["returned"].shape == (2,)


def test_trial_horizon_can_be_shorter_than_the_time_limit():
    family = get_family("point_robot_sparse")
    env = TrialWrapper(family.make_env(family.default_tasks()[0]), episodes=2, horizon=5)
    steps = play(env, lambda obs: np.array([1.0, 0.0], dtype=np.float32))
    assert len(steps) == 10
    np.testing.assert_allclose(steps[4]["next_obs"], [0.5, 0.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(steps[4]["returned"], [0.0, 0.0, 0.0])


def test_default_episodes_come_from_the_family():
    assert make_trial_env(get_family("grid_navi"), {"goal": [2, 2]}).episodes == 4
    assert make_trial_env(get_family("cheetah_vel"), {"velocity": 1.0}).episodes == 2


def test_stepping_a_finished_trial_is_an_error():
    family = get_family("grid_navi")
    env = make_trial_env(family, {"goal": [2, 2]}, episodes=2)
    play(env, lambda obs: 0)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0)


@pytest.mark.parametrize("episodes", [0, -1, 1.5, True])
def test_bad_episode_count(episodes):
    family = get_family("grid_navi")
    with pytest.raises(ValueError, match="episodes must be a positive integer"):
        TrialWrapper(family.make_env({"goal": [2, 2]}), episodes=episodes)


def test_env_without_time_limit_needs_a_horizon():
    from lit_offmeta.tasks.grid_navi import GridNaviEnv

    with pytest.raises(ValueError, match="pass horizon="):
        TrialWrapper(GridNaviEnv({"goal": [2, 2]}), episodes=2)
    assert TrialWrapper(GridNaviEnv({"goal": [2, 2]}), episodes=2, horizon=3).trial_length == 6


def test_every_trial_observation_lies_in_the_observation_space():
    family = get_family("point_robot_sparse")
    env = make_trial_env(family, family.default_tasks()[0])
    assert isinstance(env, gym.Wrapper)
    env.action_space.seed(1)
    steps = play(env, lambda obs: env.action_space.sample())
    assert len(steps) == 2 * family.horizon
    for s in steps:
        assert env.observation_space.contains(s["returned"]) and env.observation_space.contains(s["next_obs"])


def test_docstring_example_runs():
    import doctest

    import lit_offmeta.tasks.trial as trial

    result = doctest.testmod(trial)
    assert result.attempted > 0 and result.failed == 0
