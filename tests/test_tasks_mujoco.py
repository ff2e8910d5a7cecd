"""MuJoCo task families against the simulator's own state, plus their parameter validation."""

from __future__ import annotations

import numpy as np
import pytest

from lit_offmeta.tasks import get_family

# Observations are float32: a position x carries a rounding error of up to |x| * 6e-8, so a velocity from two
# positions divided by dt = 0.05 is off by up to ~|x| * 2.4e-6 against the float64 simulator. Short random
# rollouts stay within |x| < 5 m, hence 1e-4 is a tight bound that still allows the rounding.
VELOCITY_ATOL = 1e-4


def sim_rollout(family, task, steps: int, seed: int, x_index: int = 0):
    """Random rollout recording the simulator's float64 qpos before and after each step."""
    env = family.make_env(task)
    sim = env.unwrapped
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = {"obs": [], "actions": [], "rewards": [], "next_obs": [], "qpos": [], "next_qpos": [], "terminated": []}
    for _ in range(steps):
        action = env.action_space.sample()
        qpos = sim.data.qpos.copy()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(out, (obs, action, reward, next_obs, qpos, sim.data.qpos.copy(), terminated)):
            out[key].append(value)
        obs = next_obs
        if terminated or truncated:
            break
    env.close()
    return {key: np.asarray(value) for key, value in out.items()}


@pytest.mark.parametrize("name", ["cheetah_vel", "cheetah_dir"])
def test_cheetah_torso_x_is_root_position(name):
    """Observation index 17 is the torso x position, i.e. qpos[0] of the simulator, to float32 rounding."""
    family = get_family(name)
    data = sim_rollout(family, family.default_tasks()[1], steps=40, seed=0)
    np.testing.assert_allclose(data["next_obs"][:, 17], data["next_qpos"][:, 0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(data["next_obs"][:, :8], data["next_qpos"][:, 1:], rtol=1e-6, atol=1e-7)


def test_cheetah_vel_reward_matches_simulator_velocity():
    """-|v - v_goal| - 0.05 |a|^2 with v = (qpos[0]' - qpos[0]) / dt from the float64 simulator state."""
    family = get_family("cheetah_vel")
    task = {"velocity": 1.5}
    data = sim_rollout(family, task, steps=60, seed=1)
    velocity = (data["next_qpos"][:, 0] - data["qpos"][:, 0]) / 0.05
    np.testing.assert_allclose(family.forward_velocity(data["obs"], data["next_obs"]), velocity, atol=VELOCITY_ATOL)
    actions = data["actions"].astype(np.float64)
    expected = -np.abs(velocity - 1.5) - 0.05 * np.sum(actions**2, axis=1)
    np.testing.assert_allclose(data["rewards"], expected, atol=VELOCITY_ATOL)
    assert not data["terminated"].any()
    assert np.ptp(velocity) > 0.1  # the rollout really moves, so the check is not vacuous


def test_cheetah_dir_reward_matches_simulator_velocity():
    family = get_family("cheetah_dir")
    for direction in (1, -1):
        data = sim_rollout(family, {"direction": direction}, steps=40, seed=2)
        velocity = (data["next_qpos"][:, 0] - data["qpos"][:, 0]) / 0.05
        expected = direction * velocity - 0.05 * np.sum(data["actions"].astype(np.float64) ** 2, axis=1)
        np.testing.assert_allclose(data["rewards"], expected, atol=VELOCITY_ATOL)


def test_cheetah_reward_by_hand():
    """Two hand-made transitions: torso x moves 0.1 m in 0.05 s (v = 2); action norms 0 and 6."""
    family = get_family("cheetah_vel")
    obs = np.zeros((2, 20), dtype=np.float32)
    next_obs = np.zeros((2, 20), dtype=np.float32)
    next_obs[:, 17] = 0.1
    action = np.stack([np.zeros(6), np.ones(6)]).astype(np.float32)
    np.testing.assert_allclose(family.reward({"velocity": 0.5}, obs, action, next_obs), [-1.5, -1.8], rtol=1e-6)
    # Actions beyond the control range cost what the clipped torque the simulator applies costs.
    np.testing.assert_allclose(family.reward({"velocity": 0.5}, obs, 3 * action, next_obs), [-1.5, -1.8], rtol=1e-6)
    direction = get_family("cheetah_dir")
    np.testing.assert_allclose(direction.reward({"direction": -1}, obs, action, next_obs), [-2.0, -2.3], rtol=1e-6)


def test_cheetah_shapes_and_default_tasks():
    family = get_family("cheetah_vel")
    assert (family.obs_dim, family.action_dim, family.horizon) == (20, 6, 200)
    velocities = [t["velocity"] for t in family.default_tasks()]
    np.testing.assert_allclose(velocities, np.linspace(0.075, 3.0, 40))
    assert get_family("cheetah_dir").default_tasks() == [{"direction": 1}, {"direction": -1}]


@pytest.mark.parametrize(
    ("name", "task", "match"),
    [
        ("cheetah_vel", {"velocity": 3.5}, r"'velocity'=3.5 is outside \[0.0, 3.0\]"),
        ("cheetah_vel", {"velocity": -0.1}, "outside"),
        ("cheetah_vel", {"velocity": float("nan")}, "outside"),
        ("cheetah_vel", {"velocity": [1.0, 2.0]}, "'velocity' must be a number"),
        ("cheetah_dir", {"direction": 0}, "'direction' must be 1 or -1"),
        ("cheetah_dir", {"direction": True}, "'direction' must be 1 or -1"),
    ],
)
def test_bad_task_parameters(name, task, match):
    with pytest.raises(ValueError, match=match):
        get_family(name).make_env(task)


def test_reward_rejects_wrong_observation_shape():
    family = get_family("cheetah_vel")
    with pytest.raises(ValueError, match=r"obs must have shape \[\.\.\., 20\]"):
        family.reward({"velocity": 1.0}, np.zeros((3, 17)), np.zeros((3, 6)), np.zeros((3, 20)))
