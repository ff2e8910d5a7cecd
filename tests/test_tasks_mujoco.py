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


def sim_rollout_with_contacts(family, task, steps: int, seed: int):
    """Like ``sim_rollout`` but also records the simulator's clipped contact forces after each step."""
    env = family.make_env(task)
    sim = env.unwrapped
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    rows = []
    for _ in range(steps):
        action = env.action_space.sample()
        qpos = sim.data.qpos.copy()
        next_obs, reward, terminated, _, _ = env.step(action)
        contacts = np.clip(sim.data.cfrc_ext, -1, 1).copy()
        rows.append((obs, action, reward, next_obs, qpos, sim.data.qpos.copy(), contacts, terminated))
        obs = next_obs
        if terminated:
            break
    env.close()
    keys = ("obs", "actions", "rewards", "next_obs", "qpos", "next_qpos", "contacts", "terminated")
    return {key: np.asarray(column) for key, column in zip(keys, zip(*rows))}


def test_ant_dir_reward_matches_simulator():
    """Velocity from qpos[0:2] differences projected on the goal direction, the simulator's own contact
    forces (all 14 bodies, world included), 0.5 |a|^2 and the +1 bonus."""
    family = get_family("ant_dir")
    angle = 2.0
    data = sim_rollout_with_contacts(family, {"angle": angle}, steps=150, seed=0)
    velocity = (data["next_qpos"][:, :2] - data["qpos"][:, :2]) / 0.05
    forward = velocity @ np.array([np.cos(angle), np.sin(angle)])
    ctrl = 0.5 * np.sum(data["actions"].astype(np.float64) ** 2, axis=1)
    contact = 5e-4 * np.sum(data["contacts"] ** 2, axis=(1, 2))
    np.testing.assert_allclose(data["rewards"], forward - ctrl - contact + 1.0, atol=VELOCITY_ATOL)
    assert contact.max() > 0  # the rollout touches the ground, so the contact term is exercised
    # Termination: torso z (qpos[2]) left [0.2, 1.0], and only at the last step.
    z = data["next_qpos"][:, 2]
    np.testing.assert_array_equal(data["terminated"], (z < 0.2) | (z > 1.0))


def test_ant_dir_terminates_by_hand():
    family = get_family("ant_dir")
    next_obs = np.zeros((4, 107), dtype=np.float32)
    next_obs[:, 2] = [0.19, 0.2, 1.0, 1.01]
    next_obs[0, 2] = 0.19
    np.testing.assert_array_equal(family.terminated({"angle": 0.0}, next_obs, None, next_obs), [1, 0, 0, 1])
    next_obs[1, 50] = np.nan
    assert family.terminated({"angle": 0.0}, next_obs, None, next_obs)[1]


def test_ant_semicircle_rewards():
    """Dense: -L1 distance of the simulator's torso xy to the goal - 0.1 |a|^2; no termination."""
    family = get_family("ant_semicircle")
    goal = np.array([0.6, 0.8])
    data = sim_rollout(family, {"goal": goal.tolist()}, steps=60, seed=3)
    distance = np.abs(data["next_qpos"][:, :2] - goal).sum(axis=1)
    ctrl = 0.1 * np.sum(data["actions"].astype(np.float64) ** 2, axis=1)
    np.testing.assert_allclose(data["rewards"], -distance - ctrl, atol=1e-5)
    assert not data["terminated"].any()
    # The ant starts exactly at the origin (BOReL: no reset noise), so evaluation starts where data did.
    obs, _ = family.make_env({"goal": goal.tolist()}).reset(seed=123)
    np.testing.assert_array_equal(obs[:2], [0.0, 0.0])


def test_ant_semicircle_sparse_reward_by_hand():
    """1 inside the 0.2 (Euclidean) goal radius, else 0, minus 0.1 |a|^2 of the clipped action."""
    family = get_family("ant_semicircle_sparse")
    task = {"goal": [0.0, 1.0]}
    next_obs = np.zeros((4, 29), dtype=np.float32)
    next_obs[:, :2] = [[0.0, 1.0], [0.0, 0.81], [0.15, 0.85], [0.0, 0.79]]  # dist 0, 0.19, 0.212, 0.21
    action = np.zeros((4, 8), dtype=np.float32)
    action[0] = 2.0  # clipped to 1 -> cost 0.1 * 8
    np.testing.assert_allclose(family.reward(task, next_obs, action, next_obs), [1 - 0.8, 1, 0, 0], atol=1e-6)
    np.testing.assert_array_equal(family.success(task, next_obs, action, next_obs), [True, True, False, False])
    dense = get_family("ant_semicircle")
    np.testing.assert_allclose(dense.reward(task, next_obs, action, next_obs), [-0.8, -0.19, -0.3, -0.21], atol=1e-6)


def test_walker_reward_and_termination_match_simulator():
    family = get_family("walker_params")
    task = family.default_tasks()[4]
    data = sim_rollout(family, task, steps=200, seed=0)
    velocity = (data["next_qpos"][:, 0] - data["qpos"][:, 0]) / 0.008
    ctrl = 1e-3 * np.sum(data["actions"].astype(np.float64) ** 2, axis=1)
    # dt is 0.008 here, so the float32 rounding of x (|x| < 1 m in these rollouts) maps to < 2e-5.
    np.testing.assert_allclose(data["rewards"], velocity + 1.0 - ctrl, atol=VELOCITY_ATOL)
    height, angle = data["next_qpos"][:, 1], data["next_qpos"][:, 2]
    unhealthy = ~((height > 0.8) & (height < 2.0) & (angle > -1.0) & (angle < 1.0))
    np.testing.assert_array_equal(data["terminated"], unhealthy)
    assert data["terminated"][-1]  # random actions make the walker fall within 200 steps


def test_walker_tasks_change_the_dynamics():
    """Same seed, same actions: one task reproduces itself exactly, two tasks give different trajectories."""
    family = get_family("walker_params")
    tasks = family.sample_tasks(2, seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(15, 6)).astype(np.float32)

    def trajectory(task):
        env = family.make_env(task)
        obs = [env.reset(seed=7)[0]]
        obs += [env.step(a)[0] for a in actions]
        return np.stack(obs)

    first, again, other = trajectory(tasks[0]), trajectory(tasks[0]), trajectory(tasks[1])
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first[0], other[0])  # same start state: only the dynamics differ
    assert np.abs(first[-1] - other[-1]).max() > 1e-2


def test_walker_model_is_scaled_by_the_task():
    """The MuJoCo model's mass, inertia, friction and damping are the defaults times the task's factors."""
    import gymnasium as gym

    family = get_family("walker_params")
    task = family.sample_tasks(1, seed=5)[0]
    base = gym.make("Walker2d-v5").unwrapped.model
    model = family.make_env(task).unwrapped.model
    for key, field in [
        ("body_mass_scale", "body_mass"),
        ("body_inertia_scale", "body_inertia"),
        ("geom_friction_scale", "geom_friction"),
        ("dof_damping_scale", "dof_damping"),
    ]:
        np.testing.assert_allclose(getattr(model, field), getattr(base, field) * np.asarray(task[key]))
    factors = np.asarray(task["dof_damping_scale"])
    assert factors.min() >= 1.3**-3 and factors.max() <= 1.3**3


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (("body_mass_scale", [1.0] * 7), r"'body_mass_scale' must have shape \(8,\), got \(7,\)"),
        (("body_inertia_scale", [1.0] * 8), r"'body_inertia_scale' must have shape \(8, 3\)"),
        (("dof_damping_scale", [1.0] * 8 + [2.3]), r"'dof_damping_scale'\[8\]=2.3 is outside \[1.3\^-3"),
        (("geom_friction_scale", [[1.0, 1.0, 0.0]] * 8), r"'geom_friction_scale'\[0, 2\]=0.0 is outside"),
        (("body_mass_scale", ["heavy"] * 8), "'body_mass_scale' must be a"),
    ],
)
def test_walker_bad_parameters(change, match):
    family = get_family("walker_params")
    task = dict(family.default_tasks()[0])
    key, value = change
    task[key] = value
    with pytest.raises(ValueError, match=match):
        family.make_env(task)


@pytest.mark.parametrize(
    ("name", "task", "match"),
    [
        ("ant_dir", {"angle": 7.0}, r"'angle'=7.0 is outside \[0.0, 6.28"),
        ("ant_semicircle", {"goal": [0.0, 1.0, 2.0]}, r"'goal' must have shape \(2,\), got \(3,\)"),
        ("ant_semicircle_sparse", {"goal": [0.0, 20.0]}, r"'goal\[1\]'=20.0 is outside"),
    ],
)
def test_ant_bad_parameters(name, task, match):
    with pytest.raises(ValueError, match=match):
        get_family(name).make_env(task)


def test_cheetah_model_equals_gymnasium_model(tmp_path, monkeypatch):
    """Our warning-free compilation of half_cheetah.xml gives gymnasium's model and trajectories exactly."""
    import gymnasium as gym
    import mujoco

    monkeypatch.chdir(tmp_path)  # MuJoCo writes its warning log into the working directory
    ours = get_family("cheetah_vel").make_env({"velocity": 1.0}).unwrapped.model
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    reference = gym.make("HalfCheetah-v5").unwrapped.model
    for field in ("body_mass", "body_inertia", "body_subtreemass", "dof_invweight0", "geom_friction"):
        np.testing.assert_array_equal(getattr(ours, field), getattr(reference, field))
    data_ours, data_ref = mujoco.MjData(ours), mujoco.MjData(reference)
    for action in np.random.default_rng(0).uniform(-1, 1, size=(100, 6)):
        data_ours.ctrl[:] = data_ref.ctrl[:] = action
        mujoco.mj_step(ours, data_ours)
        mujoco.mj_step(reference, data_ref)
    np.testing.assert_array_equal(data_ours.qpos, data_ref.qpos)


@pytest.mark.parametrize("name", ["cheetah_vel", "ant_dir", "walker_params"])
def test_env_pickles_with_its_task(name):
    """Subprocess vector envs pickle environments: the copy must rebuild the same task and model."""
    import pickle

    family = get_family(name)
    task = family.default_tasks()[1]
    env = family.make_env(task).unwrapped
    copy = pickle.loads(pickle.dumps(env))
    assert copy.task == env.task
    np.testing.assert_array_equal(copy.model.body_mass, env.model.body_mass)
