"""Every task family's vectorised ``reward`` reproduces what ``env.step()`` returned, exactly.

This is what makes reward relabelling trustworthy: BOReL relabels stored transitions with other tasks'
reward functions, and the datasets store ``float32`` observations, so the check runs on the ``float32``
observations the environments emit and compares bit for bit.
"""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest

from lit_offmeta.tasks import FAMILIES, get_family

RECOMPUTABLE = sorted(name for name in FAMILIES if get_family(name).rewards_from_transitions)
"""Families whose rewards are a function of the stored transition (Meta-World's are not; tests/test_meta_world.py)."""


def rollout(family, task, steps: int, seed: int):
    """Random-action rollout; resets after an episode ends. Returns stacked transition arrays."""
    env = family.make_env(task)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    records = {"obs": [], "actions": [], "rewards": [], "next_obs": [], "terminated": []}
    for _ in range(steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(records, (obs, action, reward, next_obs, terminated)):
            records[key].append(value)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return {key: np.asarray(value) for key, value in records.items()}


@pytest.mark.parametrize("name", RECOMPUTABLE)
def test_vectorised_reward_equals_step_reward(name):
    """reward(task, obs, action, next_obs) over a whole random rollout equals step()'s rewards exactly."""
    family = get_family(name)
    for task in family.sample_tasks(2, seed=3):
        data = rollout(family, task, steps=80, seed=11)
        relabelled = family.reward(task, data["obs"], data["actions"], data["next_obs"])
        assert relabelled.shape == data["rewards"].shape
        # step() returns float(reward(...)) of the same float32 inputs, so the values are identical.
        np.testing.assert_array_equal(np.asarray(relabelled, dtype=np.float64), data["rewards"])
        assert np.std(data["rewards"]) > 0 or family.name in {"grid_navi", "point_robot_sparse"}


@pytest.mark.parametrize("name", RECOMPUTABLE)
def test_reward_is_batch_shape_agnostic(name):
    """A [2, T] batch gives the same rewards as two [T] batches (no hidden per-row state)."""
    family = get_family(name)
    task = family.default_tasks()[0]
    data = rollout(family, task, steps=20, seed=5)
    flat = family.reward(task, data["obs"], data["actions"], data["next_obs"])
    stacked = family.reward(
        task,
        np.stack([data["obs"][:10], data["obs"][10:]]),
        np.stack([data["actions"][:10], data["actions"][10:]]),
        np.stack([data["next_obs"][:10], data["next_obs"][10:]]),
    )
    np.testing.assert_array_equal(stacked.reshape(-1), flat)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_gym_make_by_registered_id(name):
    """gym.make("lit_offmeta/<Name>-v0", task=...) builds the family's env with its time limit."""
    family = get_family(name)
    env = gym.make(family.env_id, task=family.default_tasks()[0])
    assert env.spec.max_episode_steps == family.horizon
    obs, _ = env.reset(seed=0)
    assert obs.shape == (family.obs_dim,)
    assert env.observation_space.contains(obs)
    env.close()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_task_sampling_is_deterministic_under_a_seed(name):
    family = get_family(name)
    assert family.sample_tasks(7, seed=4) == family.sample_tasks(7, seed=4)
    assert family.default_tasks() == family.default_tasks()
    assert len(family.default_tasks()) == family.num_default_tasks
    for task in family.sample_tasks(5, seed=0) + family.default_tasks():
        assert family.validate_task(task) == task


@pytest.mark.parametrize("name", sorted(set(FAMILIES) - {"cheetah_dir", "metaworld_ml45"}))  # fixed task lists
def test_different_seeds_give_different_tasks(name):
    family = get_family(name)
    assert family.sample_tasks(5, seed=0) != family.sample_tasks(5, seed=1)


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown task family 'cheetah_speed'.*available"):
        get_family("cheetah_speed")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_sample_tasks_rejects_non_positive_n(name):
    with pytest.raises(ValueError, match="n must be >= 1|has 50 tasks"):
        get_family(name).sample_tasks(0, seed=0)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_missing_task_parameter_is_a_clear_error(name):
    family = get_family(name)
    with pytest.raises(ValueError, match="lacks parameter"):
        family.make_env({"not_a_parameter": 1.0})
    with pytest.raises(ValueError, match="must be a dict"):
        family.validate_task([1.0, 2.0])


def _leaves_replaced(value, leaf):
    return [_leaves_replaced(v, leaf) for v in value] if isinstance(value, list) else leaf(value)


@pytest.mark.parametrize("name", RECOMPUTABLE)  # Meta-World's env_name is a string: tests/test_meta_world.py
def test_unknown_keys_strings_and_bools_are_refused(name):
    """A misspelt extra key names the allowed ones; '1.0' and True are not coerced into numbers."""
    family = get_family(name)
    task = family.default_tasks()[0]
    keys = sorted(task)
    with pytest.raises(ValueError, match=rf"unknown parameter\(s\) \['velocty'\]; the parameters are \[.*'{keys[0]}'"):
        family.validate_task({**task, "velocty": 1.0})
    for leaf in (str, lambda v: True, np.bool_):
        bad = {**task, keys[0]: _leaves_replaced(task[keys[0]], leaf)}
        with pytest.raises(ValueError, match=rf"'{keys[0]}'.*(number|integers|1 or -1)"):
            family.validate_task(bad)
    assert family.validate_task(task) == task


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_vectorised_termination_equals_step_termination(name):
    """family.terminated(...) over a rollout reproduces step()'s terminated flags (relabelling needs it)."""
    family = get_family(name)
    task = family.default_tasks()[0]
    data = rollout(family, task, steps=400, seed=2)
    flags = family.terminated(task, data["obs"], data["actions"], data["next_obs"])
    np.testing.assert_array_equal(flags, data["terminated"])
    if name in {"ant_dir", "walker_params"}:
        assert data["terminated"].any()  # random actions topple the ant/walker: the True branch is covered


def test_point_robot_rewards_by_hand():
    """Dense -||p' - g||; sparse 1 within radius 0.2 (inclusive) of the goal, else 0."""
    task = {"goal": [0.0, 1.0]}
    next_obs = np.array([[0.0, 1.0], [0.0, 0.8], [0.3, 1.4], [0.0, 0.0]], dtype=np.float32)
    obs = np.zeros_like(next_obs)
    action = np.zeros_like(next_obs)
    dense = get_family("point_robot").reward(task, obs, action, next_obs)
    np.testing.assert_allclose(dense, [0.0, -0.2, -0.5, -1.0], atol=1e-6)
    sparse = get_family("point_robot_sparse").reward(task, obs, action, next_obs)
    np.testing.assert_array_equal(sparse, [1.0, 1.0, 0.0, 0.0])


def test_grid_navi_reward_on_a_scripted_path():
    """Walk right 4 times then up 4 times to the goal (4, 4): -0.1 per step off the goal, then 1 on it
    (and the episode goes on); the vectorised reward reproduces every step."""
    family = get_family("grid_navi")
    task = {"goal": [4, 4]}
    env = family.make_env(task)
    obs, _ = env.reset(seed=0)
    actions = [2] * 4 + [1] * 4 + [0] * 3
    rows = []
    for action in actions:
        next_obs, reward, terminated, truncated, info = env.step(action)
        rows.append((obs, action, next_obs, reward))
        obs = next_obs
        assert not terminated
    rewards = np.array([r[3] for r in rows])
    np.testing.assert_allclose(rewards, [-0.1] * 7 + [1.0] * 4, rtol=1e-6)
    relabelled = family.reward(task, np.stack([r[0] for r in rows]), np.array(actions), np.stack([r[2] for r in rows]))
    np.testing.assert_array_equal(relabelled, rewards.astype(np.float32))


@pytest.mark.parametrize(
    ("name", "task", "match"),
    [
        ("point_robot", {"goal": [0.0, 1.0, 0.0]}, r"'goal' must have shape \(2,\)"),
        ("point_robot_sparse", {"goal": [0.0, 11.0]}, "outside"),
        ("grid_navi", {"goal": [0, 0]}, "not one of the 21 goal cells"),
        ("grid_navi", {"goal": "corner"}, "must be two integers"),
    ],
)
def test_navigation_bad_parameters(name, task, match):
    with pytest.raises(ValueError, match=match):
        get_family(name).make_env(task)


def test_family_table_in_the_package_docstring_is_true():
    """The ids, obs/action sizes, horizons and task counts documented in lit_offmeta.tasks match the families."""
    import lit_offmeta.tasks as tasks

    lines = tasks.__doc__.splitlines()
    ruler = next(line for line in lines if line.startswith("===="))
    spans = [m.span() for m in re.finditer(r"=+", ruler)]
    for name in FAMILIES:
        family = get_family(name)
        act = f"{family.action_dim} (d)" if family.discrete_actions else str(family.action_dim)
        row = next(line for line in lines if line.startswith(f"``{name}``"))
        cells = [row[start:end].strip() for start, end in spans[:-1]] + [row[spans[-1][0] :].strip()]
        assert cells[1] == f"``{family.env_id}``", name
        assert cells[2] == f"{family.obs_dim} / {act}", name
        assert cells[3:5] == [str(family.horizon), str(family.num_default_tasks)], name
        assert cells[5], f"{name}: the default-task column is empty"


def test_gym_make_with_module_prefix():
    env = gym.make("lit_offmeta.tasks:lit_offmeta/AntSemiCircleSparse-v0", task={"goal": [0.0, 1.0]})
    assert env.reset(seed=0)[0].shape == (29,)
