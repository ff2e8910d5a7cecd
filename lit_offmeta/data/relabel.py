"""Multi-episode trials and reward relabelling for offline VariBAD / BOReL.

A *trial* is ``E`` consecutive episodes of ONE task (the BAMDP of VariBAD: the belief carries over from one
episode to the next). Trials are stored episode-structured, ``[N, E, H, ...]`` (trial, episode, step), with a
``valid`` mask so that episodes that end early (true terminations) pad to the family's horizon.

Reward relabelling (Dorfman & Tamar, "Offline Meta Reinforcement Learning", slides "Reward Relabelling"; the
"MDP ambiguity" fix): every behaviour agent visits its own part of the state space, so a belief model could
identify the task from WHERE the agent is rather than from rewards. A relabelled trial of task ``i`` is built from
episodes of other tasks' data with rewards recomputed by task ``i``'s reward function, so the state distribution
no longer depends on the task. The reward function is the task family's ``reward``, the very function the
environment's ``step()`` calls (reference bug 1 was a relabelling reward that disagreed with ``step()``), and
the transition it sees is ``(s_t, a_t, s_{t+1})`` of the SAME step (reference bug 2 was off by one step).

This module is storage-level: it knows task families, never algorithms.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from lit_offmeta.tasks.base import Task, TaskFamily

EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")


@dataclass
class TrialArrays:
    """Trials of several tasks, episode-structured.

    Attributes:
        obs: ``[N, E, H, obs_dim]`` float32, ``s_t``.
        actions: ``[N, E, H, act_dim]`` float32 (continuous) or ``[N, E, H]`` int64 (discrete).
        rewards: ``[N, E, H]`` float32, ``r_{t+1}`` received for ``(s_t, a_t, s_{t+1})``.
        next_obs: ``[N, E, H, obs_dim]`` float32, ``s_{t+1}``: the true successor (at an episode's last step,
            the final observation of that episode, never the next episode's start).
        terminals: ``[N, E, H]`` bool, a true environment termination (NOT a time-limit cut, NOT "goal reached").
        valid: ``[N, E, H]`` bool, False on padding after an episode that terminated early.
        task_index: ``[N]`` int64, index of each trial's task in ``tasks``.
        tasks: the task dicts, indexed by ``task_index`` (a mapping task index -> task).
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminals: np.ndarray
    valid: np.ndarray
    task_index: np.ndarray
    tasks: dict[int, Task]

    @property
    def num_trials(self) -> int:
        return int(self.obs.shape[0])

    @property
    def episodes_per_trial(self) -> int:
        return int(self.obs.shape[1])

    @property
    def horizon(self) -> int:
        return int(self.obs.shape[2])

    def select(self, index: np.ndarray | Sequence[int]) -> TrialArrays:
        """The trials at ``index`` (along the first axis)."""
        index = np.asarray(index)
        kw = {f.name: getattr(self, f.name)[index] for f in fields(self) if f.name != "tasks"}
        return TrialArrays(**kw, tasks=self.tasks)

    def flat(self, key: str) -> np.ndarray:
        """``key`` reshaped to ``[N, E * H, ...]``: the trial as one sequence (the BAMDP time axis)."""
        value = getattr(self, key)
        return value.reshape(value.shape[0], -1, *value.shape[3:])

    @staticmethod
    def concatenate(parts: Sequence[TrialArrays]) -> TrialArrays:
        if not parts:
            raise ValueError("concatenate: no TrialArrays given")
        shapes = {(p.episodes_per_trial, p.horizon) for p in parts}
        if len(shapes) != 1:
            raise ValueError(f"concatenate: trials differ in (episodes, horizon): {sorted(shapes)}")
        tasks: dict[int, Task] = {}
        for p in parts:
            tasks.update(p.tasks)
        kw = {
            f.name: np.concatenate([getattr(p, f.name) for p in parts])
            for f in fields(TrialArrays)
            if f.name != "tasks"
        }
        return TrialArrays(**kw, tasks=tasks)


def trials_from_episodes(
    task_index: int,
    task: Task,
    episodes: Sequence[Mapping[str, np.ndarray]],
    metadata: Sequence[Mapping[str, Any]],
    episodes_per_trial: int,
    horizon: int,
    source: str = "episodes",
) -> TrialArrays:
    """Group one task's episodes (Minari-style layout) into complete trials.

    Episodes are grouped by ``metadata[k]["trial_index"]`` and ordered by ``"episode_in_trial"``; a trial
    that lacks an episode (e.g. the behaviour agent's log was cut mid-trial) is dropped, because the belief of
    a later episode depends on every earlier one.

    Args:
        task_index: the task's index in the family's ``default_tasks()``.
        task: the task dict (kept with the trials: relabelling needs its reward function).
        episodes: dicts with ``observations`` ``[T+1, obs_dim]``, ``actions`` ``[T, ...]``, ``rewards`` ``[T]``,
            ``terminations`` ``[T]``, ``truncations`` ``[T]``.
        metadata: one dict per episode with ``trial_index`` and ``episode_in_trial``.
        episodes_per_trial: ``E``.
        horizon: ``H``, the longest episode allowed (the family's horizon).
        source: a name for error messages (e.g. the dataset file).

    Returns:
        The task's trials as :class:`TrialArrays` (possibly with ``N = 0``).

    Raises:
        ValueError: a missing key, inconsistent lengths, an episode longer than ``horizon`` or missing
            trial metadata, naming ``source`` and the episode.
    """
    if len(episodes) != len(metadata):
        raise ValueError(f"{source}: {len(episodes)} episodes but {len(metadata)} metadata entries")
    by_trial: dict[int, dict[int, int]] = defaultdict(dict)
    for k, meta in enumerate(metadata):
        if "trial_index" not in meta or "episode_in_trial" not in meta:
            raise ValueError(
                f"{source}: episode {k} has no 'trial_index'/'episode_in_trial' metadata; collect the data with "
                f"multi-episode trials (e.g. `lit-offmeta collect --family ...` with {episodes_per_trial}-episode "
                "trials)"
            )
        by_trial[int(meta["trial_index"])][int(meta["episode_in_trial"])] = k
    complete = [t for t in sorted(by_trial) if sorted(by_trial[t]) == list(range(episodes_per_trial))]
    first = episodes[0] if episodes else None
    obs_dim = int(np.asarray(first["observations"]).shape[-1]) if first is not None else 0
    act_shape = np.asarray(first["actions"]).shape[1:] if first is not None else ()
    discrete = first is not None and np.issubdtype(np.asarray(first["actions"]).dtype, np.integer)
    n, e_, h = len(complete), episodes_per_trial, horizon
    out = TrialArrays(
        obs=np.zeros((n, e_, h, obs_dim), np.float32),
        actions=np.zeros((n, e_, h, *act_shape), np.int64 if discrete else np.float32),
        rewards=np.zeros((n, e_, h), np.float32),
        next_obs=np.zeros((n, e_, h, obs_dim), np.float32),
        terminals=np.zeros((n, e_, h), bool),
        valid=np.zeros((n, e_, h), bool),
        task_index=np.full(n, task_index, np.int64),
        tasks={int(task_index): dict(task)},
    )
    for i, trial in enumerate(complete):
        for e in range(e_):
            k = by_trial[trial][e]
            ep = episodes[k]
            missing = [key for key in EPISODE_KEYS if key not in ep]
            if missing:
                raise ValueError(f"{source}: episode {k} lacks {missing}; expected keys {list(EPISODE_KEYS)}")
            observations = np.asarray(ep["observations"], np.float32)
            t = int(np.asarray(ep["rewards"]).shape[0])
            if observations.shape[0] != t + 1:
                raise ValueError(
                    f"{source}: episode {k} has {observations.shape[0]} observations for {t} rewards; "
                    "expected T+1 observations (the final one included)"
                )
            if t > h:
                raise ValueError(f"{source}: episode {k} has {t} steps, more than the horizon {h}")
            out.obs[i, e, :t] = observations[:-1]
            out.next_obs[i, e, :t] = observations[1:]
            out.actions[i, e, :t] = np.asarray(ep["actions"])
            out.rewards[i, e, :t] = np.asarray(ep["rewards"], np.float32)
            out.terminals[i, e, :t] = np.asarray(ep["terminations"], bool)
            out.valid[i, e, :t] = True
    return out


def relabel_rewards(
    family: TaskFamily, task: Task, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray
) -> np.ndarray:
    """Rewards of transitions ``(s_t, a_t, s_{t+1})`` under ``task``: the family's own ``reward`` function.

    This is the function the environment's ``step()`` calls, so relabelled rewards equal the rewards the
    environment would have given (reference bug 1), and each reward sees the state BEFORE and AFTER its own
    step (reference bug 2, an off-by-one). The task is validated first, so a task without the parameter the
    reward needs fails loudly instead of using a goal that was never set (reference bug 3).
    """
    require_recomputable_rewards(family)
    task = family.validate_task(task)
    return np.asarray(family.reward(task, obs, actions, next_obs), dtype=np.float32)


def require_recomputable_rewards(family: TaskFamily) -> None:
    """Refuse reward relabelling for a family whose rewards are not a function of ``(obs, action, next_obs)``."""
    if not family.rewards_from_transitions:
        raise ValueError(
            f"reward relabelling: family {family.name!r} computes its rewards from simulator state that the stored "
            "transitions do not hold, so they cannot be recomputed for another task; train without reward "
            "relabelling (e.g. TrialDataModule(reward_relabelling=False)) on its logged rewards"
        )


def mix_trials(
    family: TaskFamily,
    trials: TrialArrays,
    target_tasks: np.ndarray,
    rng: np.random.Generator,
    mix_prob: float = 1.0,
    path_index: np.ndarray | None = None,
) -> TrialArrays:
    """Reward relabelling: trials for ``target_tasks`` whose episodes come from random trials of the data.

    For each output trial ``b`` (task ``i = target_tasks[b]``) and each episode slot ``e``, with probability
    ``mix_prob`` the episode is one drawn uniformly from ALL episodes in ``trials`` (any task, any slot),
    otherwise episode ``e`` of a random trial of task ``i`` itself; either way, its rewards are recomputed with
    task ``i``'s reward function. Dynamics must not depend on the task (true for GridNavi, PointRobot,
    Cheetah-Vel, Ant-Dir; NOT for Walker-Params, ``family.dynamics_vary_with_task``, which raises unless
    ``mix_prob = 0``).

    The reference replaces the first of 2 episodes, i.e. half of them; ``mix_prob`` generalises that to any number
    of episodes (``TrialDataModule``'s default is 0.5). ``mix_prob = 1`` makes the visited states fully
    independent of the task: goal rewards become rarer and the belief needs more updates, but only then is it
    calibrated in our GridNavi runs (its config uses 1.0 with 6000 VAE updates; docs/BOREL.md), and the RL stage's
    relabelled trials (``OfflineVariBAD(rl_data="relabelled")``) use 1.0 for the same reason.

    Args:
        family: the task family (its ``reward`` relabels).
        trials: the pool of trials (any tasks).
        target_tasks: ``[B]`` task indices (keys of ``trials.tasks``) to build trials for.
        rng: numpy random generator.
        mix_prob: probability that an episode comes from the pooled data rather than the task's own trials.
        path_index: ``[B]`` ints, optional (needs ``mix_prob = 1``): output trials with the same value get the same
            pooled episodes (one path relabelled for several tasks) instead of independent draws.

    Returns:
        ``B`` trials with ``task_index = target_tasks``.
    """
    if not 0.0 <= mix_prob <= 1.0:
        raise ValueError(f"mix_trials: mix_prob must be in [0, 1], got {mix_prob}")
    if mix_prob > 0:
        require_recomputable_rewards(family)
    if mix_prob > 0 and family.dynamics_vary_with_task:
        raise ValueError(f"mix_trials: family {family.name!r} has task-dependent dynamics, so episodes of other tasks "
                         "are not paths of the target task; use mix_prob=0 (no reward relabelling across tasks)")
    b, e_ = len(target_tasks), trials.episodes_per_trial
    if path_index is not None:
        path_index = np.asarray(path_index, np.int64)
        if mix_prob != 1.0:
            raise ValueError(f"mix_trials: path_index needs mix_prob=1 (paths independent of the task), got {mix_prob}")
        if path_index.shape != (b,) or path_index.min(initial=0) < 0:
            raise ValueError(f"mix_trials: path_index must be {b} non-negative ints, got shape {path_index.shape}")
    own = {int(t): np.flatnonzero(trials.task_index == t) for t in np.unique(target_tasks)}
    for t, idx in own.items():
        if idx.size == 0:
            raise ValueError(f"mix_trials: no trials of task {t} in the data")
    src_trial = np.empty((b, e_), np.int64)
    src_episode = np.tile(np.arange(e_), (b, 1))
    for k, t in enumerate(target_tasks):
        src_trial[k] = rng.choice(own[int(t)], size=e_)
    mixed = rng.random((b, e_)) < mix_prob
    src_trial[mixed] = rng.integers(0, trials.num_trials, size=int(mixed.sum()))
    src_episode[mixed] = rng.integers(0, e_, size=int(mixed.sum()))
    if path_index is not None:  # every trial takes the episodes drawn for the first trial of its path
        _, first = np.unique(path_index, return_index=True)
        lookup = np.zeros(path_index.max() + 1, np.int64)
        lookup[path_index[first]] = first
        src_trial, src_episode = src_trial[lookup[path_index]], src_episode[lookup[path_index]]

    def gather(x: np.ndarray) -> np.ndarray:
        return x[src_trial, src_episode]

    out = TrialArrays(
        obs=gather(trials.obs),
        actions=gather(trials.actions),
        rewards=np.zeros((b, e_, trials.horizon), np.float32),
        next_obs=gather(trials.next_obs),
        terminals=gather(trials.terminals),
        valid=gather(trials.valid),
        task_index=np.asarray(target_tasks, np.int64),
        tasks=trials.tasks,
    )
    for t in np.unique(target_tasks):
        rows = out.task_index == t
        out.rewards[rows] = relabel_rewards(
            family, trials.tasks[int(t)], out.obs[rows], out.actions[rows], out.next_obs[rows]
        )
    out.rewards[~out.valid] = 0.0
    return out


def trials_to_batch(trials: TrialArrays) -> dict[str, torch.Tensor]:
    """Time-major tensors of a set of trials.

    Returns:
        ``obs``, ``next_obs`` ``[L, B, obs_dim]``; ``actions`` ``[L, B, act_dim]`` or ``[L, B]``; ``rewards``,
        ``terminals``, ``valid``, ``episode_ends`` ``[L, B]`` with ``L = E * H`` (``episode_ends`` marks the
        last valid step of each episode); ``task_index`` ``[B]``.
    """

    def tm(key: str) -> torch.Tensor:
        x = trials.flat(key)
        return torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1)))

    return {
        "obs": tm("obs"),
        "actions": tm("actions"),
        "rewards": tm("rewards"),
        "next_obs": tm("next_obs"),
        "terminals": tm("terminals").float(),
        "valid": tm("valid"),
        "episode_ends": torch.from_numpy(np.ascontiguousarray(np.swapaxes(_episode_ends(trials), 0, 1))),
        "task_index": torch.from_numpy(trials.task_index),
    }


def _episode_ends(trials: TrialArrays) -> np.ndarray:
    """``[N, E * H]`` bool: True at the last valid step of every episode."""
    valid = trials.valid
    nxt = np.concatenate([valid[..., 1:], np.zeros_like(valid[..., :1])], axis=-1)
    ends = valid & ~nxt
    return ends.reshape(ends.shape[0], -1)
