"""Batched rollouts, policy adapters and the normalised score, checked against hand-computed values."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from test_callbacks_fakes import ConstantModule, LineFamily, line_return

from lit_offmeta.callbacks.scoring import normalised_score
from lit_offmeta.rollout import ModulePolicy, RandomPolicy, as_rollout_policy, rollout
from lit_offmeta.tasks import get_family


def test_module_policy_returns_match_closed_form():
    """A constant mean action 1.0 on goals 1 and 3 (horizon 4) gives returns -(0+1+2+3) and -(2+1+0+1)."""
    family = LineFamily()
    result = rollout(ConstantModule(1.0), family, [{"goal": 1.0}, {"goal": 3.0}], episodes=2, seed=0)
    assert result.returns.shape == (2, 2)
    np.testing.assert_allclose(result.returns[0], [-6.0, -6.0])
    np.testing.assert_allclose(result.returns[1], [-4.0, -4.0])
    np.testing.assert_array_equal(result.lengths, 4)
    # success: within 0.5 of the goal at some step: x=1 hits goal 1, x=3 hits goal 3
    np.testing.assert_array_equal(result.success, True)
    assert result.num_env_steps == 16


def test_actions_are_clipped_to_the_action_space():
    """A mean action of 5 is clipped to 1, so the return equals that of action 1."""
    result = rollout(ConstantModule(5.0), LineFamily(), [{"goal": 2.0}])
    assert result.returns[0, 0] == pytest.approx(line_return(1.0, 2.0, 4))
    assert result.success[0, 0]


def test_no_success_where_family_defines_none():
    result = rollout(ConstantModule(0.0), LineFamily(with_success=False), [{"goal": 2.0}])
    assert result.success is None
    assert result.returns[0, 0] == pytest.approx(-8.0)


class RecordingPolicy:
    """Moves +1 every step and records every call, to check the trial semantics."""

    def __init__(self):
        self.resets, self.acts, self.observed = [], [], []

    def reset(self, num_envs):
        self.resets.append(num_envs)

    def act(self, obs):
        self.acts.append(obs.copy())
        return np.ones((len(obs), 1), np.float32)

    def observe(self, obs, actions, rewards, next_obs, dones):
        self.observed.append((obs.copy(), rewards.copy(), next_obs.copy(), dones.copy()))


def test_termination_and_trial_semantics():
    """Task 0 terminates at x >= 2 (2 steps), task 1 runs the horizon (4 steps); two episodes each.

    The policy is reset once; at an episode end observe gets the final obs with done, and the next act the
    reset obs; an env that has finished its trial idles with reward 0 and done=True.
    """
    family = LineFamily()
    tasks = [{"goal": 2.0, "terminate_at": 2.0}, {"goal": 2.0}]
    policy = RecordingPolicy()
    result = rollout(policy, family, tasks, episodes=2, record=True)
    assert policy.resets == [2]
    np.testing.assert_array_equal(result.lengths, [[2, 2], [4, 4]])
    np.testing.assert_allclose(result.returns[0], [-1.0, -1.0])  # -|1-2| - |2-2|
    np.testing.assert_allclose(result.returns[1], [line_return(1.0, 2.0, 4)] * 2)
    obs_seen = [a[0, 0] for a in policy.acts]
    assert obs_seen[:4] == [0.0, 1.0, 0.0, 1.0]  # task 0 resets after its 2nd step
    # step index 1: task 0 terminates; observe sees its true final obs 2 with done
    _, _, next_obs, dones = policy.observed[1]
    assert next_obs[0, 0] == 2.0 and dones.tolist() == [True, False]
    # steps 4..7: task 0 idles (done, reward 0) while task 1 plays its second episode
    for _, rewards, _, dones in policy.observed[4:]:
        assert rewards[0] == 0.0 and dones[0]
    assert len(policy.acts) == 8
    # recorded episodes follow the Minari layout
    ep = result.episodes[0][0]
    np.testing.assert_allclose(ep["observations"][:, 0], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(ep["terminations"], [False, True])
    np.testing.assert_array_equal(result.episodes[1][0]["truncations"], [False, False, False, True])


def test_envs_are_seeded_per_task():
    family = LineFamily()
    envs = [family.make_env({"goal": 1.0}) for _ in range(3)]
    rollout(ConstantModule(0.0), family, [{"goal": 1.0}] * 3, envs=envs, seed=10, episodes=2)
    assert [e.reset_seeds for e in envs] == [[10, None], [11, None], [12, None]]


def test_rollout_on_point_robot_matches_hand_computation():
    """PointRobot: moving straight up at full speed toward goal (0, 1) for 20 steps."""
    family = get_family("point_robot")

    class Up(ModulePolicy):
        def __init__(self):
            super().__init__(ConstantModule(0.0), family.action_space)

        def act(self, obs):
            return np.tile(np.array([0.0, 1.0], np.float32), (len(obs), 1))

    result = rollout(Up(), family, [{"goal": [0.0, 1.0]}])
    expected = -sum(abs(0.1 * (t + 1) - 1.0) for t in range(20))
    assert result.returns[0, 0] == pytest.approx(expected, abs=1e-5)
    assert result.success[0, 0]


def test_random_policy_is_seeded_and_within_bounds():
    space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    a, b = RandomPolicy(space, seed=3), RandomPolicy(space, seed=3)
    x, y = a.act(np.zeros((4, 2))), b.act(np.zeros((4, 2)))
    np.testing.assert_array_equal(x, y)
    assert x.shape == (4, 2) and np.all(np.abs(x) <= 1)
    d = RandomPolicy(gym.spaces.Discrete(5), seed=0).act(np.zeros((100, 2)))
    assert d.dtype == np.int64 and set(d.tolist()) == {0, 1, 2, 3, 4}


def test_discrete_module_policy_takes_argmax():
    import torch

    class Scores(torch.nn.Module):
        def forward(self, obs):
            return torch.tensor([[0.0, 3.0, 1.0]]).expand(obs.shape[0], 3)

    policy = as_rollout_policy(Scores(), gym.spaces.Discrete(3))
    np.testing.assert_array_equal(policy.act(np.zeros((2, 2))), [1, 1])


def test_as_rollout_policy_passes_policies_through_and_rejects_others():
    space = gym.spaces.Box(-1.0, 1.0, shape=(1,))
    p = RecordingPolicy()
    assert as_rollout_policy(p, space) is p
    assert isinstance(as_rollout_policy(ConstantModule(0.0), space), ModulePolicy)
    with pytest.raises(TypeError, match="adapt\\(\\) must return"):
        as_rollout_policy(object(), space)


def test_rollout_rejects_bad_arguments():
    with pytest.raises(ValueError, match="tasks is empty"):
        rollout(ConstantModule(0.0), LineFamily(), [])
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        rollout(ConstantModule(0.0), LineFamily(), [{"goal": 1.0}], episodes=0)


def test_normalised_score_by_hand():
    """(R - random) / (best - random): (-10 - -30) / (-5 - -30) = 0.8; per task broadcast."""
    np.testing.assert_allclose(normalised_score(-10.0, -30.0, -5.0), 0.8)
    np.testing.assert_allclose(normalised_score([-30.0, -5.0, 0.0], [-30.0, -30.0, -30.0], -5.0), [0.0, 1.0, 1.2])
    with pytest.raises(ValueError, match="best behaviour return must exceed"):
        normalised_score([1.0, 1.0], [-3.0, 2.0], [0.0, 2.0])


def test_non_finite_actions_are_refused():
    with pytest.raises(ValueError, match="non-finite actions"):
        rollout(ConstantModule(float("nan")), LineFamily(), [{"goal": 1.0}])
