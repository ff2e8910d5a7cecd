"""Scripted behaviour for the navigation families (PointRobot dense and sparse, GridNavi): cheap stand-ins for
an RL agent learning one task from scratch, whose early episodes wander and whose late ones head for the goal.

Two agents share the same goal-seeking step (:func:`step_towards`, :func:`grid_step_towards`):

* :class:`AnnealedGoalSeeker` is the behaviour of ``lit-offmeta collect``'s PointRobot presets. Two quantities
  anneal over its lifetime (``skill`` rises linearly from 0 to 1 over the first ``expert_at`` fraction of its
  episodes): its estimate of the goal, the true goal plus an error drawn afresh each episode with standard
  deviation ``goal_error_start * (1 - skill)``, and its Gaussian action noise, interpolated from ``noise_start``
  to ``noise_end``. ``noise_end > 0`` keeps a spread of actions in the late data, which advantage-weighted
  methods (MACAW's AWR) need to rank actions. Skill is a function of the episode index only, so two runs with
  one seed agree.
* :func:`scripted_trials` logs multi-episode trials in memory (BOReL's trial data, for tests and quick runs of
  :class:`~lit_offmeta.datamodules.TrialDataModule` without collected data). BOReL's offline data is the whole
  replay history of one RL agent per task, first random rollouts included (docs/REFERENCE.md, "Pipeline");
  this imitates it with an epsilon-greedy goal seeker: each episode heads for the task's goal with
  probability ``1 - eps`` and for a random target otherwise, with per-step action noise, and ``eps`` decays
  linearly from 1 to ``eps_final`` over the agent's trials. Every transition is stepped through the family's
  real environment, so rewards are the environment's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lit_offmeta.data.relabel import TrialArrays, trials_from_episodes
from lit_offmeta.tasks.base import TaskFamily
from lit_offmeta.tasks.grid_navi import GRID_SIZE, MOVES
from lit_offmeta.tasks.point_robot import ACTION_SCALE

SUPPORTED = ("grid_navi", "point_robot", "point_robot_sparse")


def step_towards(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """PointRobot: the action that moves ``position`` onto ``target`` (in units of the family's step size),
    clipped to the action box ``[-1, 1]``."""
    return np.clip((target - position) / ACTION_SCALE, -1.0, 1.0)


def grid_step_towards(cell: np.ndarray, target: np.ndarray) -> int:
    """The move that brings ``cell`` one step closer to ``target`` (x first), or the no-op on the target."""
    diff = target - cell
    step = np.zeros(2, np.int64)
    if diff[0] != 0:
        step[0] = np.sign(diff[0])
    elif diff[1] != 0:
        step[1] = np.sign(diff[1])
    return int(np.flatnonzero((MOVES == step).all(axis=1))[0])


@dataclass(frozen=True)
class GoalSeekerConfig:
    """Hyperparameters of :class:`AnnealedGoalSeeker`.

    Attributes:
        expert_at: fraction of the lifetime after which skill is 1 (the last ``1 - expert_at`` is near-expert).
        goal_error_start: standard deviation of the goal estimate's error at skill 0 (goals lie at radius 1).
        noise_start: action-noise standard deviation at skill 0 (actions live in ``[-1, 1]``).
        noise_end: action-noise standard deviation at skill 1.
    """

    expert_at: float = 0.8
    goal_error_start: float = 1.5
    noise_start: float = 1.0
    noise_end: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 < self.expert_at <= 1.0:
            raise ValueError(f"GoalSeekerConfig: expert_at must be in (0, 1], got {self.expert_at}")
        for name in ("goal_error_start", "noise_start", "noise_end"):
            if getattr(self, name) < 0:
                raise ValueError(f"GoalSeekerConfig: {name} must be >= 0, got {getattr(self, name)}")


class AnnealedGoalSeeker:
    """Moves towards a goal estimate that sharpens, with noise that shrinks, over ``lifetime`` episodes.

    Args:
        goal: the task's goal position ``[2]``.
        lifetime: number of episodes in the agent's life (sets the annealing schedule).
        config: the schedule's hyperparameters.
        rng: the agent's random generator.
    """

    def __init__(self, goal: np.ndarray, lifetime: int, config: GoalSeekerConfig, rng: np.random.Generator):
        if lifetime < 1:
            raise ValueError(f"AnnealedGoalSeeker: lifetime must be >= 1 episode, got {lifetime}")
        self.goal = np.asarray(goal, dtype=np.float64).reshape(2)
        self.lifetime = lifetime
        self.config = config
        self.rng = rng
        self.goal_estimate = self.goal.copy()
        self.noise_std = config.noise_end

    def skill(self, episode_index: int) -> float:
        """0 at the first episode, rising linearly to 1 at ``expert_at`` of the lifetime."""
        horizon = max(1.0, self.config.expert_at * (self.lifetime - 1))
        return float(min(1.0, episode_index / horizon))

    def begin_episode(self, episode_index: int, info: dict | None = None) -> None:
        skill = self.skill(episode_index)
        error = self.rng.normal(0.0, self.config.goal_error_start * (1.0 - skill), size=2)
        self.goal_estimate = self.goal + error
        self.noise_std = self.config.noise_start + skill * (self.config.noise_end - self.config.noise_start)

    def act(self, obs: np.ndarray) -> np.ndarray:
        position = np.asarray(obs, dtype=np.float64)[:2]
        action = step_towards(position, self.goal_estimate) + self.rng.normal(0.0, self.noise_std, size=2)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def learn(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminated: bool):
        """Nothing to learn: the schedule is fixed (kept for the per-task agent interface)."""


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
                        a = grid_step_towards(obs.astype(np.int64), target)
                        if rng.random() < action_noise:
                            a = int(rng.integers(0, len(MOVES)))
                    else:
                        a = step_towards(obs, target) + action_noise * rng.standard_normal(2)
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
