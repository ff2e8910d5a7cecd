"""TaskBuffer: Monte-Carlo targets against hand computations, samplers and windows checked on values."""

from __future__ import annotations

import numpy as np
import pytest

from lit_offmeta.data.buffer import MAX_ABS_VALUE, TaskBuffer
from lit_offmeta.data.packed import PackedTasks, check_consistent_dims
from lit_offmeta.data.synthetic import synthetic_episodes


def _episode(rewards, terminated=False, truncated=True, start=0.0):
    t = len(rewards)
    obs = np.stack([np.arange(t + 1, dtype=np.float32) + start, np.zeros(t + 1, np.float32)], 1)
    end = np.zeros(t, bool)
    end[-1] = True
    return {
        "observations": obs,
        "actions": np.zeros((t, 2), np.float32),
        "rewards": np.asarray(rewards, np.float32),
        "terminations": end if terminated else np.zeros(t, bool),
        "truncations": end if truncated and not terminated else np.zeros(t, bool),
    }


def _hand_buffer() -> TaskBuffer:
    """ep0: r=[1,2,3] cut by the time limit; ep1: r=[4,5] terminated; ep2: r=[1,1] unfinished (end of data)."""
    episodes = [
        _episode([1, 2, 3], truncated=True, start=0),
        _episode([4, 5], terminated=True, start=10),
        _episode([1, 1], truncated=False, start=20),
    ]
    return TaskBuffer.from_episodes(
        episodes, {"goal": [1.0, 0.0]}, 0, "point_robot", behaviour_steps=[0, 3, 5]
    )


def test_mc_returns_and_bootstrap_match_hand_computation():
    """gamma = 0.5: reward-to-go inside each trajectory; gamma^(T-t) where cut, 0 where terminated."""
    targets = _hand_buffer().value_targets(0.5)
    np.testing.assert_allclose(targets.mc_returns, [2.75, 3.5, 3.0, 6.5, 5.0, 1.5, 1.0])
    np.testing.assert_allclose(targets.bootstrap_discounts, [0.125, 0.25, 0.5, 0.0, 0.0, 0.25, 0.5])
    np.testing.assert_array_equal(targets.bootstrap_index, [2, 2, 2, 4, 4, 6, 6])


def test_full_value_target_uses_last_next_obs_of_cut_trajectories():
    """mc + discount * V(bootstrap state) with V(s) = s[0]: ep0 bootstraps from s_3 = 3, ep2 from s_2 = 22."""
    buf = _hand_buffer()
    targets = buf.value_targets(0.5)
    value = buf.next_obs[targets.bootstrap_index, 0]
    np.testing.assert_allclose(value, [3, 3, 3, 12, 12, 22, 22])
    full = targets.mc_returns + targets.bootstrap_discounts * value
    np.testing.assert_allclose(full, [2.75 + 0.375, 3.5 + 0.75, 3 + 1.5, 6.5, 5.0, 1.5 + 5.5, 1 + 11])


def test_mc_returns_gamma_one_and_zero():
    buf = _hand_buffer()
    np.testing.assert_allclose(buf.value_targets(1.0).mc_returns, [6, 5, 3, 9, 5, 2, 1])
    np.testing.assert_allclose(buf.value_targets(0.0).mc_returns, [1, 2, 3, 4, 5, 1, 1])
    np.testing.assert_allclose(buf.value_targets(0.0).bootstrap_discounts, [0, 0, 0, 0, 0, 0, 0])


def test_mc_returns_match_a_plain_loop_on_mixed_lengths():
    eps = synthetic_episodes(0, 30, horizon=7, terminate_every=4, seed=3)
    buf = TaskBuffer.from_episodes(eps, {}, 0, "x")
    expected = []
    for ep in eps:
        g, out = 0.0, []
        for r in ep["rewards"][::-1]:
            g = float(r) + 0.9 * g
            out.append(g)
        expected += out[::-1]
    np.testing.assert_allclose(buf.value_targets(0.9).mc_returns, expected, rtol=1e-5, atol=1e-6)


def test_episode_returns_and_offsets():
    buf = _hand_buffer()
    np.testing.assert_allclose(buf.episode_returns(), [6, 9, 2])
    np.testing.assert_array_equal(buf.episode_starts, [0, 3, 5, 7])
    np.testing.assert_array_equal(buf.episode_ids(), [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(buf.next_obs[:, 0], [1, 2, 3, 11, 12, 21, 22])


def _id_buffer(num_episodes=50, horizon=10) -> TaskBuffer:
    return TaskBuffer.from_episodes(synthetic_episodes(3, num_episodes, horizon), {}, 3, "point_robot")


def test_contiguous_slices_are_consecutive_rows_inside_the_range():
    buf = _id_buffer()
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(300):
        rows = buf.contiguous_indices(25, rng, lo=100, hi=200)
        np.testing.assert_array_equal(np.diff(rows), 1)
        assert rows[0] >= 100 and rows[-1] < 200
        starts.add(int(rows[0]))
    assert min(starts) == 100 and max(starts) == 175  # both extreme offsets are reachable


def test_uniform_without_replacement_respects_exclusion_exactly():
    buf = _id_buffer()
    rng = np.random.default_rng(1)
    exclude = np.array([5, 6, 7, 50, 51, 499])
    for _ in range(50):
        rows = buf.uniform_indices(100, rng, exclude=exclude)
        assert len(set(rows.tolist())) == 100
        assert not set(rows.tolist()) & set(exclude.tolist())
        assert rows.min() >= 0 and rows.max() < len(buf)
    # Asking for every allowed row returns exactly the complement.
    rows = buf.uniform_indices(len(buf) - len(exclude), rng, exclude=exclude)
    assert sorted(rows.tolist()) == sorted(set(range(len(buf))) - set(exclude.tolist()))
    # Inside a sub-range, exclusions outside it are ignored and rows stay inside it.
    rows = buf.uniform_indices(98, rng, lo=10, hi=110, exclude=np.array([0, 10, 109, 300]))
    assert sorted(rows.tolist()) == list(range(11, 109))


def test_windows_pick_first_middle_last_trajectories():
    buf = _id_buffer(num_episodes=50, horizon=10)
    for window, first_episode in (("first", 0), ("middle", 20), ("last", 40)):
        lo, hi = buf.window_range(window, 10)
        episodes = np.unique(buf.obs[lo:hi, 0] - 3000)
        np.testing.assert_array_equal(episodes, np.arange(first_episode, first_episode + 10))
    assert buf.window_range("all") == (0, 500)


def test_head_cuts_and_bootstraps_the_split_episode():
    buf = _hand_buffer()
    cut = buf.head(4)  # ep0 whole, one step of ep1 (which terminated only at its 2nd step)
    np.testing.assert_array_equal(cut.episode_starts, [0, 3, 4])
    np.testing.assert_allclose(cut.value_targets(0.5).mc_returns, [2.75, 3.5, 3.0, 4.0])
    np.testing.assert_allclose(cut.value_targets(0.5).bootstrap_discounts, [0.125, 0.25, 0.5, 0.5])
    np.testing.assert_array_equal(cut.behaviour_steps, [0, 3])


def test_packed_gather_returns_the_buffer_values():
    a, b = _id_buffer(20, 5), TaskBuffer.from_episodes(synthetic_episodes(4, 10, 5), {}, 4, "point_robot")
    packed = PackedTasks([a, b], gamma=0.9)
    rows = np.array([[0, 7, 49], [3, 4, 99]])
    out = packed.gather([1, 0], rows)
    np.testing.assert_array_equal(out["obs"][0].numpy(), b.obs[[0, 7, 49]])
    np.testing.assert_array_equal(out["obs"][1].numpy(), a.obs[[3, 4, 99]])
    np.testing.assert_array_equal(out["next_obs"][1].numpy(), a.next_obs[[3, 4, 99]])
    np.testing.assert_array_equal(out["actions"][1].numpy(), a.actions[[3, 4, 99]])
    np.testing.assert_array_equal(out["rewards"][1].numpy(), a.rewards[[3, 4, 99]])
    targets = a.value_targets(0.9)
    np.testing.assert_allclose(out["mc_returns"][1].numpy(), targets.mc_returns[[3, 4, 99]])
    np.testing.assert_allclose(
        out["bootstrap_obs"][1].numpy(), a.next_obs[targets.bootstrap_index[[3, 4, 99]]]
    )
    np.testing.assert_allclose(out["bootstrap_discounts"][1].numpy(), targets.bootstrap_discounts[[3, 4, 99]])
    np.testing.assert_array_equal(out["terminals"].numpy(), 0.0)


def test_packed_discrete_actions_come_back_as_int64():
    eps = synthetic_episodes(0, 4, 6, discrete_actions=5)
    buf = TaskBuffer.from_episodes(eps, {}, 0, "grid_navi")
    out = PackedTasks([buf], 0.9).gather([0], np.arange(10)[None])
    assert out["actions"].dtype.is_floating_point is False
    np.testing.assert_array_equal(out["actions"][0].numpy(), buf.actions[:10])


# --- errors ------------------------------------------------------------------------------------------------


def test_batch_larger_than_data_is_refused():
    buf = _id_buffer(2, 10)
    with pytest.raises(ValueError, match="asks for more than the 20 available"):
        buf.contiguous_indices(21, np.random.default_rng(0))
    with pytest.raises(ValueError, match="asks for more than the 15 available"):
        buf.uniform_indices(16, np.random.default_rng(0), exclude=np.arange(5))
    with pytest.raises(ValueError, match="holds 2 trajectories, fewer than the 3"):
        buf.window_range("last", 3)
    with pytest.raises(ValueError, match="window must be one of"):
        buf.window_range("best", 1)


def test_nan_and_tiny_tasks_are_refused():
    eps = synthetic_episodes(0, 2, 5)
    eps[1]["rewards"][2] = np.nan
    with pytest.raises(ValueError, match=r"field 'rewards' holds NaN or inf at transition 7 \(episode 1, step 2\)"):
        TaskBuffer.from_episodes(eps, {}, 0, "point_robot")
    with pytest.raises(ValueError, match="has 1 transition"):
        TaskBuffer.from_episodes(synthetic_episodes(0, 1, 1), {}, 0, "point_robot")
    with pytest.raises(ValueError, match="has no episodes"):
        TaskBuffer.from_episodes([], {}, 0, "point_robot")
    bad = synthetic_episodes(0, 1, 5)[0]
    bad["observations"] = bad["observations"][:-1]
    with pytest.raises(ValueError, match=r"'observations' must be \[T \+ 1, obs_dim\]"):
        TaskBuffer.from_episodes([bad], {}, 0, "point_robot")


def test_finite_but_extreme_values_are_refused_on_every_construction_path():
    """A reward of 1e20 is finite but squares to inf in float32: refused, naming field, row, episode and fix."""
    eps = synthetic_episodes(0, 3, 5)
    eps[1]["rewards"][3] = 1e20
    with pytest.raises(
        ValueError,
        match=r"field 'rewards' holds 1e\+20 at transition 8 \(episode 1, step 3\), beyond the bound .*rescale",
    ):
        TaskBuffer.from_episodes(eps, {}, 0, "point_robot", source="/data/task_0000-v0")
    # The packed-cache path (TaskBuffer.from_block) runs the same check on the stored block.
    good = TaskBuffer.from_episodes(synthetic_episodes(0, 3, 5), {}, 0, "point_robot", source="/data/x")
    block = good.transition_block().copy()
    block[11, good.block_columns()["next_obs"].start + 1] = -3 * MAX_ABS_VALUE
    where = r"^/data/x .*field 'next_obs' holds -3e\+06 at transition 11 \(episode 2, step 1\)"
    with pytest.raises(ValueError, match=where):
        TaskBuffer.from_block(block, 2, False, good.episode_starts, good.behaviour_steps, {}, 0, "point_robot",
                              source="/data/x")
    block[11] = good.transition_block()[11]
    block[4, 0] = np.inf
    with pytest.raises(ValueError, match=r"field 'obs' holds NaN or inf at transition 4 \(episode 0, step 4\)"):
        TaskBuffer.from_block(block, 2, False, good.episode_starts, good.behaviour_steps, {}, 0, "point_robot")
    block[4, 0] = MAX_ABS_VALUE / 2  # large but within the bound: accepted
    assert TaskBuffer.from_block(block, 2, False, good.episode_starts, good.behaviour_steps, {}, 0, "f").obs[4, 0] > 0


def test_inconsistent_dims_across_tasks_are_refused():
    a = TaskBuffer.from_episodes(synthetic_episodes(0, 2, 5, obs_dim=2), {}, 0, "f")
    b = TaskBuffer.from_episodes(synthetic_episodes(1, 2, 5, obs_dim=3), {}, 1, "f")
    c = TaskBuffer.from_episodes(synthetic_episodes(2, 2, 5, action_dim=3), {}, 2, "f")
    with pytest.raises(ValueError, match="inconsistent observation sizes: task 0 .* task 1"):
        check_consistent_dims([a, b])
    with pytest.raises(ValueError, match="inconsistent action layouts"):
        PackedTasks([a, c], 0.9)
