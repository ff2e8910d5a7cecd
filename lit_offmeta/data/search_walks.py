"""Search walks: new trials chained from the LOGGED transitions of a low-dimensional continuous-state dataset,
steered towards the goals the trial's rewards have not ruled out yet.

Why: a BOReL agent's first episode sweeps the goal set, and a fruitless sweep leaves it with a belief that no
logged trial produces. PointRobot's behaviour episodes head for one goal each, so none of the RL stage's trials
starts episode 2 near the belief a trained agent holds after its own fruitless first episode: SAC has no example
of what to do from there, and its second search after a miss fails. GridNavi's answer was walks over its discrete states
(:mod:`lit_offmeta.data.stitching`); continuous states never repeat, so these walks join logged steps whose start
lies within ``radius`` of where the walk is.

Each walk keeps the exact posterior over the data's goals, as the true reward function allows (the assumption
reward relabelling already makes): a goal stays possible while every step's reward under it equals the reward the
walk received under its own task. At each step, with the episode's probability of steering (drawn uniformly from
[0, 1] per episode, so the data hold searches of every extent, wandering ones included), the walk takes the
candidate step that ends nearest a possible goal, otherwise a uniform one. The posterior is kept across the trial's
episodes, so a later episode goes straight to a goal found before, or searches where the earlier ones did not: the
second search after a miss that the logged trials lack.

This is ours, not BOReL's protocol. It uses only logged transitions; a step may start up to ``radius`` from where
the previous one ended (a small jump in the state), or at the nearest logged start state when no step starts within
``radius`` (counted in the returned ``jumps``).
"""

from __future__ import annotations

import numpy as np

from lit_offmeta.data.relabel import TrialArrays, relabel_rewards
from lit_offmeta.tasks.base import TaskFamily

MAX_STATE_DIM = 3
"""The walks look up steps by hashing states into cells of side ``radius``; that only finds neighbours cheaply in
a few dimensions."""
MAX_CANDIDATES = 64
"""At most this many of the steps near the walk (drawn uniformly) are weighed at each step."""


def search_walk_trials(
    family: TaskFamily,
    trials: TrialArrays,
    target_tasks: np.ndarray,
    rng: np.random.Generator,
    radius: float = 0.05,
    greed: tuple[float, float] = (0.0, 1.0),
) -> tuple[TrialArrays, int]:
    """Trials for ``target_tasks`` whose paths are goal-seeking walks over the logged steps of ``trials``.

    Args:
        family: a goal family with task-independent dynamics (its ``reward`` labels the steps and rules goals out).
        trials: the logged trials: their steps, their episodes' start states, and their tasks (the goals the
            walks' posterior ranges over; each task dict has a ``"goal"`` in the first coordinates of the state).
        target_tasks: ``[B]`` task indices (keys of ``trials.tasks``), one walk each.
        rng: numpy random generator.
        radius: a step may join the walk when it starts within this distance of the walk's current state.
        greed: each episode of each walk steers (takes the step ending nearest a possible goal) with a probability
            drawn uniformly from this range, and otherwise takes a uniform step among those near.

    Returns:
        ``B`` full-length trials shaped like ``trials`` with rewards of their own task, and the number of steps that
        had no logged step within ``radius`` and took the nearest one instead.

    Raises:
        ValueError: a non-positive ``radius``, task-dependent dynamics, states of more than ``MAX_STATE_DIM``
            dimensions, tasks without a ``"goal"``, target tasks not in the data, or no non-terminal step.
    """
    if radius <= 0:
        raise ValueError(f"search_walk_trials: radius must be > 0, got {radius}")
    if not 0.0 <= greed[0] <= greed[1] <= 1.0:
        raise ValueError(f"search_walk_trials: greed must be a range (low, high) within [0, 1], got {greed}")
    if family.dynamics_vary_with_task:
        raise ValueError(f"search_walk_trials: family {family.name!r} has task-dependent dynamics; a walk over several "
                         "tasks' steps is not a path of any one task")
    if trials.obs.shape[-1] > MAX_STATE_DIM:
        raise ValueError(f"search_walk_trials: states have {trials.obs.shape[-1]} dimensions; the walks need at most "
                         f"{MAX_STATE_DIM} (neighbours are found by hashing the state)")
    task_ids = sorted(trials.tasks)
    if any("goal" not in trials.tasks[t] for t in task_ids):
        raise ValueError("search_walk_trials: every task needs a 'goal' (the walks steer towards possible goals)")
    target_tasks = np.asarray(target_tasks, np.int64)
    missing = sorted({int(t) for t in target_tasks} - set(task_ids))
    if missing:
        raise ValueError(f"search_walk_trials: target tasks {missing} are not in the data's tasks {task_ids}")
    steps = _StepIndex(trials, radius, rng)
    goals = np.array([trials.tasks[t]["goal"] for t in task_ids], np.float64)
    column = {t: k for k, t in enumerate(task_ids)}
    n, episodes, horizon = len(target_tasks), trials.episodes_per_trial, trials.horizon
    out = TrialArrays(
        obs=np.zeros((n, episodes, horizon, trials.obs.shape[-1]), np.float32),
        actions=np.zeros((n, episodes, horizon, *trials.actions.shape[3:]), trials.actions.dtype),
        rewards=np.zeros((n, episodes, horizon), np.float32),
        next_obs=np.zeros((n, episodes, horizon, trials.obs.shape[-1]), np.float32),
        terminals=np.zeros((n, episodes, horizon), bool),
        valid=np.ones((n, episodes, horizon), bool),
        task_index=target_tasks,
        tasks=trials.tasks,
    )
    possible = np.ones((n, len(task_ids)), bool)  # the exact posterior's support over the data's goals
    jumps = 0
    for e in range(episodes):
        steer = rng.uniform(greed[0], greed[1], size=n)
        position = steps.obs[rng.choice(steps.starts, size=n)]
        for t in range(horizon):
            chosen = np.empty(n, np.int64)
            for i in range(n):
                cand = steps.near(position[i])
                if len(cand) == 0:
                    cand, jumps = steps.nearest(position[i]), jumps + 1
                elif len(cand) > MAX_CANDIDATES:  # a goal's neighbourhood holds thousands of hovering steps
                    cand = rng.choice(cand, MAX_CANDIDATES, replace=False)
                if rng.random() < steer[i]:
                    ends = steps.next_obs[cand, : goals.shape[1]]
                    to_goal = np.linalg.norm(ends[:, None] - goals[possible[i]][None], axis=-1).min(1)
                    chosen[i] = cand[np.argmin(to_goal)]
                else:
                    chosen[i] = cand[rng.integers(len(cand))]
            out.obs[:, e, t], out.actions[:, e, t] = steps.obs[chosen], steps.actions[chosen]
            out.next_obs[:, e, t] = position = steps.next_obs[chosen]
            paid = np.stack([relabel_rewards(family, trials.tasks[k], out.obs[:, e, t], out.actions[:, e, t],
                                             out.next_obs[:, e, t]) for k in task_ids], 1)  # [n, tasks]
            own = paid[np.arange(n), [column[int(k)] for k in target_tasks]]
            possible &= np.isclose(paid, own[:, None])
            out.rewards[:, e, t] = own
    return out, jumps


class _StepIndex:
    """The logged non-terminal steps, hashed by the cell of side ``radius`` their start state lies in."""

    def __init__(self, trials: TrialArrays, radius: float, rng: np.random.Generator) -> None:
        keep = trials.valid & ~trials.terminals
        if not keep.any():
            raise ValueError("search_walk_trials: the data holds no non-terminal step")
        self.obs = trials.obs[keep].astype(np.float64)
        self.actions, self.next_obs = trials.actions[keep], trials.next_obs[keep].astype(np.float64)
        first = np.zeros_like(keep)
        first[:, :, 0] = True
        self.starts = np.flatnonzero(first[keep])  # walks start where the data's episodes start, as often
        self.radius, self.rng = radius, rng
        cells, which = np.unique(np.floor(self.obs / radius).astype(np.int64), axis=0, return_inverse=True)
        order = np.argsort(which.reshape(-1), kind="stable")
        members = np.split(order, np.cumsum(np.bincount(which.reshape(-1)))[:-1])
        self.cells = {tuple(cell): ids for cell, ids in zip(cells.tolist(), members)}
        dim = self.obs.shape[1]
        self.offsets = np.stack(np.meshgrid(*[[-1, 0, 1]] * dim, indexing="ij"), -1).reshape(-1, dim)
        self.pool: dict[tuple, np.ndarray] = {}  # a cell -> steps starting in it or its neighbours (a sample)

    def near(self, x: np.ndarray) -> np.ndarray:
        """Steps starting within ``radius`` of ``x``: of those starting in ``x``'s cell and its neighbours, a
        sample of at most ``4 * MAX_CANDIDATES`` drawn once per cell (a goal's neighbourhood holds thousands)."""
        home = np.floor(x / self.radius).astype(np.int64)
        key = tuple(home.tolist())
        if key not in self.pool:
            ids = [self.cells[c] for c in map(tuple, (home + self.offsets).tolist()) if c in self.cells]
            ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
            if len(ids) > 4 * MAX_CANDIDATES:
                ids = self.rng.choice(ids, 4 * MAX_CANDIDATES, replace=False)
            self.pool[key] = ids
        ids = self.pool[key]
        return ids[np.linalg.norm(self.obs[ids] - x, axis=1) <= self.radius]

    def nearest(self, x: np.ndarray) -> np.ndarray:
        """The step whose start is nearest ``x``, as a one-element array."""
        return np.array([np.argmin(np.linalg.norm(self.obs - x, axis=1))])
