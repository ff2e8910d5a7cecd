"""Synthetic offline data for MACAW's tests: noisy goal-seeking rollouts in PointRobot -> TaskBatches.

The helpers build the same ``TaskBatch`` the datamodule does (contiguous support slice, uniform disjoint query,
Monte-Carlo returns with bootstrap at the time-limit cut), directly from rollouts of the family's environment,
so the MACAW tests do not depend on the data layer.
"""

from __future__ import annotations

import numpy as np
import torch

from lit_offmeta.data.batch import TRANSITION_KEYS, TaskBatch
from lit_offmeta.tasks import get_family

GAMMA = 0.99


def rollout_buffer(task: dict, episodes: int, seed: int, gamma: float = GAMMA) -> dict[str, np.ndarray]:
    """Flat per-task buffer of ``episodes`` noisy goal-seeking episodes (noise grows with the episode index
    modulo 4, so the data mixes good and poor behaviour and advantages carry information)."""
    family = get_family("point_robot")
    env = family.make_env(task)
    rng = np.random.default_rng(seed)
    goal = np.asarray(task["goal"], dtype=np.float32)
    out = {k: [] for k in TRANSITION_KEYS}
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        noise = [0.2, 0.6, 1.0, 2.0][ep % 4]
        ep_obs, ep_act, ep_rew, ep_next = [], [], [], []
        for _ in range(family.horizon):
            direction = (goal - obs) / 0.1
            action = np.clip(direction + rng.normal(0.0, noise, size=2), -1, 1).astype(np.float32)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            ep_obs.append(obs)
            ep_act.append(action)
            ep_rew.append(reward)
            ep_next.append(next_obs)
            obs = next_obs
            if terminated or truncated:
                break
        rewards = np.asarray(ep_rew, dtype=np.float32)
        length = len(rewards)
        mc = np.zeros(length, dtype=np.float32)
        running = 0.0
        for t in reversed(range(length)):
            running = rewards[t] + gamma * running
            mc[t] = running
        out["obs"].append(np.asarray(ep_obs))
        out["actions"].append(np.asarray(ep_act))
        out["rewards"].append(rewards)
        out["next_obs"].append(np.asarray(ep_next))
        out["terminals"].append(np.zeros(length, dtype=np.float32))
        out["mc_returns"].append(mc)
        out["bootstrap_obs"].append(np.repeat(np.asarray(ep_next[-1])[None], length, axis=0))
        # PointRobot never terminates: every episode is cut by the time limit, so bootstrap from its last state.
        out["bootstrap_discounts"].append(gamma ** (length - np.arange(length)).astype(np.float32))
    env.close()
    return {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}


def make_buffers(num_tasks: int = 8, episodes: int = 12, seed: int = 0) -> tuple[list[dict], list[dict]]:
    tasks = get_family("point_robot").default_tasks()[:num_tasks]
    return tasks, [rollout_buffer(task, episodes, seed + 1000 * i) for i, task in enumerate(tasks)]


def sample_task_batch(buffers: list[dict], task_ids: list[int], support_size: int, query_size: int,
                      rng: np.random.Generator) -> TaskBatch:
    """Support: a random contiguous slice; query: uniform over the rest (disjoint), as the reference."""
    support, query = {k: [] for k in TRANSITION_KEYS}, {k: [] for k in TRANSITION_KEYS}
    for i in task_ids:
        n = len(buffers[i]["obs"])
        start = int(rng.integers(0, n - support_size + 1))
        s_idx = np.arange(start, start + support_size)
        rest = np.setdiff1d(np.arange(n), s_idx)
        q_idx = rng.choice(rest, size=query_size, replace=False)
        for k in TRANSITION_KEYS:
            support[k].append(buffers[i][k][s_idx])
            query[k].append(buffers[i][k][q_idx])
    stack = lambda d: {k: torch.as_tensor(np.stack(v)) for k, v in d.items()}  # noqa: E731
    return TaskBatch(stack(support), stack(query), torch.as_tensor(task_ids))


def test_rollout_buffer_returns_are_discounted_reward_to_go():
    """mc_returns[t] + gamma^(T-t) V(s_T) is the discounted return; check the MC part by hand on one episode."""
    task = get_family("point_robot").default_tasks()[0]
    buf = rollout_buffer(task, episodes=1, seed=3)
    rewards = buf["rewards"]
    assert len(rewards) == 20
    expected_0 = sum(GAMMA**t * r for t, r in enumerate(rewards))
    np.testing.assert_allclose(buf["mc_returns"][0], expected_0, rtol=1e-5)
    np.testing.assert_allclose(buf["mc_returns"][-1], rewards[-1], rtol=1e-6)
    np.testing.assert_allclose(buf["bootstrap_discounts"][[0, -1]], [GAMMA**20, GAMMA], rtol=1e-6)
    np.testing.assert_array_equal(buf["bootstrap_obs"][0], buf["next_obs"][-1])
