"""A scripted stand-in for BOReL's behaviour data: one goal-seeking agent per task, logged over its lifetime.

BOReL's offline data is the whole replay history of one RL agent per task, first random rollouts included
(REFERENCE_NOTES, BOReL pipeline step 1). This module imitates that history cheaply for the navigation families
(GridNavi, PointRobot): in each episode the agent heads for its task's goal with probability ``1 - eps`` and
for a random target otherwise, with per-step action noise, and ``eps`` decays linearly from 1 to ``eps_final``
over the agent's trials, as an epsilon-greedy learner's would. Every transition is stepped through the family's
real environment, so rewards are the environment's. It is meant for tests and quick experiments; the project's
data tools (``lit-offmeta collect``) produce the real thing.
"""

from __future__ import annotations

import numpy as np

from lit_offmeta.data.relabel import TrialArrays, trials_from_episodes
from lit_offmeta.tasks.base import TaskFamily
from lit_offmeta.tasks.grid_navi import GRID_SIZE, MOVES

SUPPORTED = ("grid_navi", "point_robot", "point_robot_sparse")


def _grid_action(cell: np.ndarray, target: np.ndarray) -> int:
    """The move that brings ``cell`` one step closer to ``target`` (x first), or the no-op on the target."""
    diff = target - cell
    step = np.zeros(2, np.int64)
    if diff[0] != 0:
        step[0] = np.sign(diff[0])
    elif diff[1] != 0:
        step[1] = np.sign(diff[1])
    return int(np.flatnonzero((MOVES == step).all(axis=1))[0])


def scripted_trials(
    family: TaskFamily,
    task_indices: list[int],
    trials_per_task: int,
    episodes_per_trial: int,
    seed: int = 0,
    eps_final: float = 0.1,
    action_noise: float = 0.1,
) -> TrialArrays:
    """Trials of a scripted epsilon-greedy goal-seeker, ``trials_per_task`` per task, chronological.

    Args:
        family: a navigation family (``grid_navi``, ``point_robot``, ``point_robot_sparse``).
        task_indices: indices into ``family.default_tasks()``.
        trials_per_task: trials logged per task.
        episodes_per_trial: episodes per trial.
        seed: random seed.
        eps_final: probability of a random-target episode at the end of the agent's lifetime.
        action_noise: GridNavi: probability of a random action; PointRobot: std of Gaussian action noise.

    Returns:
        The trials of all tasks, as :class:`TrialArrays`.

    Raises:
        ValueError: for a family other than the navigation ones.
    """
    if family.name not in SUPPORTED:
        raise ValueError(f"scripted_trials: family {family.name!r} is not supported; use one of {SUPPORTED}")
    rng = np.random.default_rng(seed)
    tasks = family.default_tasks()
    parts = []
    for i in task_indices:
        task = tasks[i]
        env = family.make_env(task)
        goal = np.asarray(task["goal"])
        episodes, metadata = [], []
        for trial in range(trials_per_task):
            eps = 1.0 + (eps_final - 1.0) * trial / max(1, trials_per_task - 1)
            for e in range(episodes_per_trial):
                if rng.random() < eps:
                    if family.discrete_actions:
                        target = rng.integers(0, GRID_SIZE, size=2)
                    else:
                        target = rng.uniform([-1.5, -0.5], [1.5, 1.5])
                else:
                    target = goal
                obs, _ = env.reset(seed=int(rng.integers(2**31)))
                observations, actions, rewards, terms, truncs = [obs], [], [], [], []
                done = False
                while not done:
                    if family.discrete_actions:
                        a = _grid_action(obs.astype(np.int64), target)
                        if rng.random() < action_noise:
                            a = int(rng.integers(0, len(MOVES)))
                    else:
                        a = np.clip((target - obs) / 0.1, -1, 1) + action_noise * rng.standard_normal(2)
                        a = np.clip(a, -1, 1).astype(np.float32)
                    obs, r, term, trunc, _ = env.step(a)
                    observations.append(obs)
                    actions.append(a)
                    rewards.append(r)
                    terms.append(term)
                    truncs.append(trunc)
                    done = term or trunc
                episodes.append(
                    {
                        "observations": np.asarray(observations, np.float32),
                        "actions": np.asarray(actions, np.int64 if family.discrete_actions else np.float32),
                        "rewards": np.asarray(rewards, np.float32),
                        "terminations": np.asarray(terms, bool),
                        "truncations": np.asarray(truncs, bool),
                    }
                )
                metadata.append({"trial_index": trial, "episode_in_trial": e})
        env.close()
        parts.append(
            trials_from_episodes(
                i, task, episodes, metadata, episodes_per_trial, family.horizon, source=f"scripted task {i}"
            )
        )
    return TrialArrays.concatenate(parts)
