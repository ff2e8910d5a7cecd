"""Stitched search paths: new trials walked along the LOGGED transitions of a discrete-state dataset.

Why: BOReL's behaviour data comes from single-task learners, and none of them searches: a GridNavi behaviour
episode enters 5.8 cells on average (3.4% enter 10 or more), while the meta-policy sweeps 10.7 cells in its first
episode. The belief VAE only ever sees the data's paths, so its belief along a real search is an extrapolation,
and it leaves most of its mass on cells already searched (docs/BOREL.md).

Where the states are discrete and the dynamics deterministic and shared by all tasks (GridNavi), every walk that
chains logged steps ``(s, a, s')`` end to start is itself a path the environment produces: each of its steps was
observed in the data. A walk that prefers states its trial has not visited yet covers as many cells as a search.
Rewards are recomputed with each trial's task (:func:`lit_offmeta.data.relabel.relabel_rewards`), so stitched
trials are ordinary :class:`TrialArrays` that reward relabelling and the RL stage use like logged ones.

This is ours, not BOReL's protocol (the paper trains on the behaviour paths only); it uses no transition that is
not in the data. Terminal steps are left out of the walk graph (a terminal ends an episode early; GridNavi has none).
"""

from __future__ import annotations

import numpy as np

from lit_offmeta.data.relabel import TrialArrays, relabel_rewards
from lit_offmeta.tasks.base import TaskFamily

# A dataset with more distinct states than this is not a discrete-state one (continuous states never repeat, so
# stitching would only replay the logged episodes).
MAX_STATES = 10_000


def stitch_trials(
    family: TaskFamily,
    trials: TrialArrays,
    target_tasks: np.ndarray,
    rng: np.random.Generator,
    novelty: float = 0.9,
) -> TrialArrays:
    """Trials for ``target_tasks`` whose paths are walks over the logged transitions of ``trials``.

    Every episode starts in a logged episode's start state. At each step the walk takes one of the logged
    transitions out of its current state, uniformly, except that with probability ``novelty`` it chooses only
    among those leading to states not yet visited in the trial (when there is one). States visited in earlier
    episodes of the trial count as visited, so later episodes search further, as a Bayes-adaptive agent would.

    Args:
        family: the task family (its ``reward`` labels the stitched steps).
        trials: the logged trials (any tasks): the transition graph and the start states.
        target_tasks: ``[B]`` task indices (keys of ``trials.tasks``), one stitched trial each.
        rng: numpy random generator.
        novelty: probability of restricting a step to unvisited successor states (0: a plain random walk over
            the logged transitions).

    Returns:
        ``B`` trials shaped like ``trials`` (episodes, horizon), full length, rewards of their own task.

    Raises:
        ValueError: ``novelty`` outside [0, 1], a family whose dynamics depend on the task, states that are not
            discrete (more than ``MAX_STATES`` distinct ones), a state-action pair with two logged successors
            (stochastic dynamics: a chained walk would not be a sample of them), or no start state with a way on.
    """
    if not 0.0 <= novelty <= 1.0:
        raise ValueError(f"stitch_trials: novelty must be in [0, 1], got {novelty}")
    if family.dynamics_vary_with_task:
        raise ValueError(f"stitch_trials: family {family.name!r} has task-dependent dynamics; a walk over several "
                         "tasks' transitions is not a path of any one task")
    target_tasks = np.asarray(target_tasks, np.int64)
    missing = sorted({int(t) for t in target_tasks} - set(trials.tasks))
    if missing:
        raise ValueError(f"stitch_trials: target tasks {missing} are not in the data's tasks {sorted(trials.tasks)}")
    graph = _TransitionGraph(trials)
    n, e_, h = len(target_tasks), trials.episodes_per_trial, trials.horizon
    out = TrialArrays(
        obs=np.zeros((n, e_, h, graph.states.shape[1]), np.float32),
        actions=np.zeros((n, e_, h, *graph.actions.shape[1:]), graph.actions.dtype),
        rewards=np.zeros((n, e_, h), np.float32),
        next_obs=np.zeros((n, e_, h, graph.states.shape[1]), np.float32),
        terminals=np.zeros((n, e_, h), bool),
        valid=np.ones((n, e_, h), bool),
        task_index=target_tasks,
        tasks=trials.tasks,
    )
    visited = np.zeros((n, len(graph.states)), bool)
    rows = np.arange(n)
    for e in range(e_):
        state = rng.choice(graph.starts, size=n)
        visited[rows, state] = True
        for t in range(h):
            cand = graph.out[state]  # [n, K] transition ids, -1 = none
            ok = cand >= 0
            novel = ok & ~visited[rows[:, None], graph.dst[np.maximum(cand, 0)]]
            restrict = (rng.random(n) < novelty) & novel.any(axis=1)
            allowed = np.where(restrict[:, None], novel, ok)
            # uniform among the allowed candidates: the largest of independent uniforms over the allowed set
            pick = np.where(allowed, rng.random(cand.shape), -1.0).argmax(axis=1)
            step = cand[rows, pick]
            nxt = graph.dst[step]
            out.obs[:, e, t] = graph.states[state]
            out.actions[:, e, t] = graph.actions[step]
            out.next_obs[:, e, t] = graph.states[nxt]
            visited[rows, nxt] = True
            state = nxt
    for task in np.unique(target_tasks):
        sel = target_tasks == task
        out.rewards[sel] = relabel_rewards(family, trials.tasks[int(task)], out.obs[sel], out.actions[sel],
                                           out.next_obs[sel])
    return out


class _TransitionGraph:
    """The logged non-terminal steps as a graph over distinct states, pruned of dead ends.

    Attributes:
        states: ``[S, obs_dim]`` the distinct states.
        actions: ``[T, ...]`` the action of each transition; ``src``, ``dst``: ``[T]`` state ids.
        out: ``[S, K]`` the transition ids leaving each state, padded with -1.
        starts: state ids of the logged episodes' start states that have a way on (with repetition: the walk
            starts where the data's episodes start, as often).
    """

    def __init__(self, trials: TrialArrays) -> None:
        step = trials.valid & ~trials.terminals
        obs, nxt, actions = trials.obs[step], trials.next_obs[step], trials.actions[step]
        if len(obs) == 0:
            raise ValueError("stitch_trials: the data holds no non-terminal step")
        states, ids = np.unique(np.concatenate([obs, nxt]), axis=0, return_inverse=True)
        ids = ids.reshape(-1)
        if len(states) > MAX_STATES:
            raise ValueError(f"stitch_trials: {len(states)} distinct states (more than {MAX_STATES}): stitching needs "
                             "discrete states, where walks can join logged steps at a shared state")
        src, dst = ids[: len(obs)], ids[len(obs):]
        flat_actions = actions.reshape(len(actions), -1)
        keys = np.concatenate([src[:, None].astype(np.float64), flat_actions.astype(np.float64),
                               dst[:, None].astype(np.float64)], axis=1)
        _, first = np.unique(keys, axis=0, return_index=True)
        src, dst, actions = src[first], dst[first], actions[first]
        pairs = np.unique(np.concatenate([src[:, None].astype(np.float64), flat_actions[first]], axis=1), axis=0)
        if len(pairs) != len(src):
            raise ValueError("stitch_trials: a state-action pair has two different logged successors; stitching "
                             "needs deterministic dynamics")
        alive = np.ones(len(states), bool)
        while True:  # drop transitions into states with no way on, until none is left
            keep = alive[dst]
            has_out = np.bincount(src[keep], minlength=len(states)) > 0
            if np.array_equal(has_out, alive):
                break
            alive = has_out
        keep = alive[dst] & alive[src]
        self.states, self.actions, self.src, self.dst = states, actions[keep], src[keep], dst[keep]
        counts = np.bincount(self.src, minlength=len(states))
        self.out = np.full((len(states), max(int(counts.max()), 1)), -1, np.int64)
        order = np.argsort(self.src, kind="stable")
        slot = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
        self.out[self.src[order], slot] = order
        episode_start = np.zeros_like(step)
        episode_start[:, :, 0] = True  # the episodes' first steps, among the steps kept above
        starts = ids[: len(obs)][episode_start[step]]
        starts = starts[alive[starts]]
        if len(starts) == 0:
            raise ValueError("stitch_trials: no logged start state has a logged way on")
        self.starts = starts
