"""Figures for offline VariBAD: GridNavi's visited cells per episode and belief over goals along a trial; sparse
PointRobot's paths per episode.

``python -m lit_offmeta.algorithms.borel.plots --ckpt path/to/model.ckpt --out docs/figures`` loads a trained
:class:`~lit_offmeta.algorithms.borel.pipeline.OfflineVariBAD`, runs one evaluation trial per task of the chosen
tasks with the Bayes-adaptive policy and with the Thompson-sampling comparison, prints the per-episode success and
return as JSON, and writes ``borel_grid_visits.png`` (the policy's trials) and ``borel_grid_belief.png`` (the
decoded belief along a hand-made row-by-row search of the first task's grid, see :func:`search_episode`); for
sparse PointRobot ``borel_point_paths.png`` (every task's path in each episode of its trial, see
:func:`plot_point_paths`) and, with the ``task_bins`` decoder, ``borel_point_arc_belief.png`` (the belief over the
goal arc before and after a first episode that finds its goal and one that misses it, learned and exact, see
:func:`plot_arc_belief`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD
from lit_offmeta.data.relabel import TrialArrays, trials_from_episodes, trials_to_batch
from lit_offmeta.figures import plt, save_figure
from lit_offmeta.rollout import RolloutResult, rollout
from lit_offmeta.tasks.point_robot import GOAL_RADIUS


def trial_summary(result: RolloutResult) -> dict[str, float]:
    """Mean return and success over tasks of each episode of a trial (``return_ep1``, ``success_ep1``, ...)."""
    out = {}
    for e in range(result.returns.shape[1]):
        out[f"return_ep{e + 1}"] = float(np.mean(result.returns[:, e]))
        if result.success is not None:
            out[f"success_ep{e + 1}"] = float(np.mean(result.success[:, e]))
    return out


def visit_counts(result: RolloutResult, grid_size: int = 5) -> np.ndarray:
    """``[episodes, G, G]``: how often each cell was entered (``s_{t+1}``), summed over tasks."""
    episodes = len(result.episodes[0])
    counts = np.zeros((episodes, grid_size, grid_size))
    for task_eps in result.episodes:
        for e, ep in enumerate(task_eps):
            for x, y in ep["observations"][1:, :2].astype(int):
                counts[e, x, y] += 1
    return counts


def distinct_cells(result: RolloutResult) -> list[float]:
    """Per episode of the trial, the mean number of distinct cells entered (``s_{t+1}``): how widely it searches."""
    episodes = len(result.episodes[0])
    return [
        float(np.mean([len({tuple(c) for c in eps[e]["observations"][1:, :2].astype(int)}) for eps in result.episodes]))
        for e in range(episodes)
    ]


def plot_visits(result: RolloutResult, goals: Sequence[Sequence[int]], path: str | Path, title: str = "") -> Path:
    """One panel per episode: the path of each task's agent (first task) and the visit counts over all tasks."""
    counts = visit_counts(result)
    episodes = counts.shape[0]
    fig, axes = plt.subplots(1, episodes, figsize=(3 * episodes, 3.2))
    for e, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(counts[e].T, origin="lower", cmap="Blues")
        path0 = result.episodes[0][e]["observations"][:, :2]
        ax.plot(path0[:, 0], path0[:, 1], "-o", color="tab:orange", ms=3, lw=1.5, label="task 1 path")
        ax.plot(*goals[0], "*", color="tab:red", ms=14, label="task 1 goal")
        ax.set_title(f"episode {e + 1}: success {result.success[:, e].mean():.0%}")
        ax.set_xticks(range(5))
        ax.set_yticks(range(5))
    np.atleast_1d(axes)[0].legend(loc="upper right", fontsize=6)
    fig.suptitle(title or "cells entered (blue: all evaluated tasks; orange: the first task's path)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def plot_point_paths(result: RolloutResult, goals: Sequence[Sequence[float]], radius: float, path: str | Path,
                     title: str = "") -> Path:
    """One panel per episode: each task's path from the origin, in the colour of its goal (a star with the
    rewarded disc around it), on the upper unit semicircle the goals lie on (sparse PointRobot)."""
    if len(goals) != len(result.episodes):
        raise ValueError(f"plot_point_paths: {len(goals)} goals for {len(result.episodes)} recorded trials "
                         "(one goal per task; evaluate with record=True)")
    episodes = len(result.episodes[0])
    colours = plt.cm.hsv(np.linspace(0, 0.9, len(goals)))
    fig, axes = plt.subplots(1, episodes, figsize=(4 * episodes, 2.6 * 1.3))
    arc = np.linspace(0, np.pi, 200)
    for e, ax in enumerate(np.atleast_1d(axes)):
        ax.plot(np.cos(arc), np.sin(arc), ":", color="grey", lw=1)
        for task_eps, goal, colour in zip(result.episodes, goals, colours, strict=True):
            xy = task_eps[e]["observations"][:, :2]
            ax.plot(xy[:, 0], xy[:, 1], "-", color=colour, lw=0.9, alpha=0.8)
            ax.add_patch(plt.Circle(goal, radius, color=colour, alpha=0.15))
            ax.plot(*goal, "*", color=colour, ms=8)
        ax.set_title(f"episode {e + 1}: success {result.success[:, e].mean():.0%}")
        ax.set_xlim(-1.4, 1.4)
        ax.set_ylim(-0.3, 1.4)
        ax.set_aspect("equal")
    fig.suptitle(title or "paths from the origin (colour: task; star and disc: its goal and rewarded region)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


@torch.no_grad()
def belief_maps(model, episode: dict[str, np.ndarray] | Sequence[dict[str, np.ndarray]]) -> np.ndarray:
    """Decoded ``p(goal at cell)`` at the belief mean after each step of a trial: ``[T + 1, G, G]``."""
    episodes = [episode] if isinstance(episode, dict) else list(episode)
    actions = torch.as_tensor(np.concatenate([ep["actions"] for ep in episodes]))[:, None]
    next_obs = torch.as_tensor(np.concatenate([ep["observations"][1:] for ep in episodes]), dtype=torch.float32)
    rewards = torch.as_tensor(np.concatenate([ep["rewards"] for ep in episodes]), dtype=torch.float32)[:, None]
    mu, _ = model.vae.encoder(actions, next_obs[:, None], rewards)
    return model.vae.goal_probabilities(mu[:, 0]).numpy()


def plot_belief(model, trial: Sequence[dict[str, np.ndarray]], goal: Sequence[int], path: str | Path) -> Path:
    """The belief over goals at the trial start, mid-search, when the goal is first reached, and after it."""
    maps = belief_maps(model, trial)
    positions = np.concatenate([trial[0]["observations"][:1]] + [ep["observations"][1:] for ep in trial])[:, :2]
    rewards = np.concatenate([ep["rewards"] for ep in trial])
    hit = int(np.argmax(rewards > 0)) + 1 if (rewards > 0).any() else len(rewards)
    picks = sorted({0, max(1, hit // 2), hit, min(len(maps) - 1, hit + 3)})
    fig, axes = plt.subplots(1, len(picks), figsize=(3 * len(picks), 3.2))
    for ax, t in zip(np.atleast_1d(axes), picks):
        ax.imshow(maps[t].T, origin="lower", cmap="viridis", vmin=0, vmax=1)
        ax.plot(positions[: t + 1, 0], positions[: t + 1, 1], "-o", color="white", ms=3, lw=1)
        ax.plot(*goal, "*", color="tab:red", ms=14)
        ax.set_title(f"t = {t}" + (" (goal found)" if t == hit else ""))
        ax.set_xticks(range(5))
        ax.set_yticks(range(5))
    fig.suptitle("decoded belief p(goal at cell); white: path so far, red star: true goal")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def episodes_batch(family, episodes: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Recorded episodes of ``family`` (Minari layout) as one-episode trials in the time-major batch layout
    (:func:`~lit_offmeta.data.relabel.trials_to_batch`, ``[H, N, ...]``); steps past an episode's end are
    invalid."""
    meta = [{"trial_index": 0, "episode_in_trial": 0}]
    return trials_to_batch(TrialArrays.concatenate([
        # the task dict is only read by reward relabelling, which this does not do
        trials_from_episodes(i, {}, [ep], meta, 1, family.horizon, "rollout") for i, ep in enumerate(episodes)]))


@torch.no_grad()
def belief_after(encoder, family, episodes: list[dict[str, np.ndarray]]) -> torch.Tensor:
    """The belief mean ``[N, latent]`` of ``encoder`` after each recorded episode of ``family`` (Minari layout,
    from the prior): the belief a trial's next episode starts with."""
    batch = episodes_batch(family, episodes)  # invalid steps leave the belief unchanged
    device = next(encoder.parameters()).device
    mu, _ = encoder(*(batch[k].to(device) for k in ("actions", "next_obs", "rewards", "valid")))
    return mu[-1].cpu()


def exact_task_posterior(family, tasks: list[dict], batch: dict[str, torch.Tensor]) -> np.ndarray:
    """The exact posterior over ``tasks`` (uniform prior) after each step of a batch of trials of a family whose
    rewards are a deterministic function of the transition: a task keeps its weight while the reward it pays equals
    the observed one at every valid step so far. ``batch``: time-major (:func:`trials_to_batch`), ``[L, B, ...]``.
    Returns ``[L + 1, B, T]`` (index 0 the prior); a row no task explains is all zeros."""
    obs, act, nxt = (batch[k].numpy() for k in ("obs", "actions", "next_obs"))
    rewards, valid = batch["rewards"].numpy(), batch["valid"].numpy().astype(bool)
    agrees = np.stack([np.isclose(family.reward(task, obs, act, nxt), rewards) | ~valid for task in tasks], -1)
    alive = np.concatenate([np.ones_like(agrees[:1]), np.cumprod(agrees, axis=0)]).astype(np.float64)
    total = alive.sum(-1, keepdims=True)
    return np.divide(alive, total, out=np.zeros_like(alive), where=total > 0)


@torch.no_grad()
def arc_beliefs(model, episode: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """For a ``task_bins`` model: ``p(task in bin)`` at the trial's start (the prior) and after ``episode`` (a
    recorded episode), learned and exact (uniform over the training goals whose rewards agree
    with every step, :func:`exact_task_posterior`), each ``[bins]``."""
    vae, family = model.vae, model.family
    if vae.decoder_kind != "task_bins":
        raise ValueError(f"arc_beliefs needs a model with the 'task_bins' decoder, got {vae.decoder_kind!r}")
    prior = vae.goal_map(vae.encoder.belief(vae.encoder.initial_state(1, model.device))[0])[0]
    learned = vae.goal_map(belief_after(vae.encoder, family, [episode]).to(model.device))[0]
    train = list(family.split().train)
    batch = episodes_batch(family, [episode])
    posterior = exact_task_posterior(family, [family.default_tasks()[i] for i in train], batch)[-1, 0]
    exact = np.bincount(vae.goal_class[torch.as_tensor(train)].cpu().numpy(), posterior, vae.cfg.task_bins)
    return {"prior": prior.cpu().numpy(), "learned": learned.cpu().numpy(), "exact": exact}


def plot_arc_belief(model, episodes: Sequence[dict[str, np.ndarray]], goals: Sequence[Sequence[float]],
                    path: str | Path) -> Path:
    """One column per recorded first episode: its path to the goal arc (top) and the belief over the arc's bins
    before it and after it, learned next to exact (bottom; :func:`arc_beliefs`)."""
    if len(episodes) != len(goals):
        raise ValueError(f"plot_arc_belief: {len(goals)} goals for {len(episodes)} episodes")
    fig, axes = plt.subplots(2, len(episodes), figsize=(5 * len(episodes), 6.4), squeeze=False)
    arc = np.linspace(0, np.pi, 200)
    for column, (episode, goal) in enumerate(zip(episodes, goals, strict=True)):
        found = bool((episode["rewards"] > 0).any())
        top, bottom = axes[0, column], axes[1, column]
        top.plot(np.cos(arc), np.sin(arc), ":", color="grey", lw=1)
        xy = episode["observations"][:, :2]
        top.plot(xy[:, 0], xy[:, 1], "-", color="tab:blue", lw=1)
        top.add_patch(plt.Circle(goal, GOAL_RADIUS, color="tab:red", alpha=0.2))
        top.plot(*goal, "*", color="tab:red", ms=10)
        top.set_title(f"episode 1 {'finds' if found else 'misses'} the goal (star)")
        top.set_xlim(-1.4, 1.4)
        top.set_ylim(-0.3, 1.4)
        top.set_aspect("equal")
        beliefs = arc_beliefs(model, episode)
        bins = len(beliefs["prior"])
        low, high = np.degrees(model.vae.bin_range)
        width = (high - low) / bins
        centres = low + (np.arange(bins) + 0.5) * width
        bottom.bar(centres - width / 4, beliefs["learned"], width / 2, color="tab:blue", label="learned, after ep. 1")
        bottom.bar(centres + width / 4, beliefs["exact"], width / 2, color="tab:orange", label="exact, after ep. 1")
        bottom.step(np.append(centres - width / 2, high), np.append(beliefs["prior"], beliefs["prior"][-1]),
                    where="post", color="black", lw=1, label="learned prior")
        bottom.axvline(np.degrees(np.arctan2(goal[1], goal[0])), color="tab:red", ls="--", lw=1, label="true goal")
        bottom.set_xlim(low, high)
        bottom.set_xlabel("goal angle (degrees)")
        bottom.set_ylabel("p(goal in bin)")
        bottom.legend(fontsize=7)
    fig.suptitle("belief over the goal arc before and after the first episode (sparse PointRobot)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def search_episode(family, task: dict, horizon: int = 15) -> dict[str, np.ndarray]:
    """A hand-made GridNavi search episode: sweep the grid row by row (a snake) until the goal, then stay on it.

    The belief figure uses it so that the goal is found whatever the trained policy does; the rewards are the
    family's own.
    """
    snake = [(x if y % 2 == 0 else 4 - x, y) for y in range(5) for x in range(5)]
    goal = tuple(task["goal"])
    cells, actions = [(0, 0)], []
    moves = {(0, 0): 0, (0, 1): 1, (1, 0): 2, (0, -1): 3, (-1, 0): 4}
    for nxt in snake[1:]:
        if len(actions) == horizon or cells[-1] == goal:
            break
        actions.append(moves[(nxt[0] - cells[-1][0], nxt[1] - cells[-1][1])])
        cells.append(nxt)
    while len(actions) < horizon:
        actions.append(0)
        cells.append(cells[-1])
    obs = np.asarray(cells, np.float32)
    acts = np.asarray(actions, np.int64)
    rewards = family.reward(task, obs[:-1], acts, obs[1:]).astype(np.float32)
    return {"observations": obs, "actions": acts, "rewards": rewards}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="OfflineVariBAD checkpoint (.ckpt)")
    parser.add_argument("--out", default="docs/figures", help="folder for the PNGs")
    parser.add_argument("--tasks", default="test", help="'test' (held-out split), 'all', or comma-separated indices")
    parser.add_argument("--split", default=None, help="task split (default: the family's)")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per trial (default: the family's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = OfflineVariBAD.load_from_checkpoint(args.ckpt, map_location="cpu", weights_only=True)
    family = model.family
    all_tasks = family.default_tasks()
    if args.tasks == "test":
        index = list(family.split(args.split).test)
    elif args.tasks == "all":
        index = list(range(len(all_tasks)))
    else:
        index = [int(i) for i in args.tasks.split(",")]
    tasks = [all_tasks[i] for i in index]
    args.episodes = args.episodes or getattr(family, "episodes_per_trial", 2)
    model.eval()
    bayes = rollout(model.belief_policy(), family, tasks, episodes=args.episodes, seed=args.seed, record=True)
    thompson = rollout(model.thompson_policy(args.seed), family, tasks, episodes=args.episodes, seed=args.seed)
    report = {"tasks": index, "bayes_adaptive": trial_summary(bayes), "thompson": trial_summary(thompson)}
    if family.name == "grid_navi":
        report["bayes_adaptive_distinct_cells_per_episode"] = distinct_cells(bayes)
    print(json.dumps(report, indent=1))
    if family.name == "grid_navi":
        goals = [t["goal"] for t in tasks]
        print(plot_visits(bayes, goals, Path(args.out) / "borel_grid_visits.png"))
        trial = [search_episode(family, tasks[0])]
        print(plot_belief(model, trial, goals[0], Path(args.out) / "borel_grid_belief.png"))
    elif family.name == "point_robot_sparse":
        goals = [t["goal"] for t in tasks]
        print(plot_point_paths(bayes, goals, GOAL_RADIUS, Path(args.out) / "borel_point_paths.png"))
        if model.vae.decoder_kind == "task_bins":  # the first trial whose episode 1 finds its goal, and one that misses
            found = bayes.success[:, 0].astype(bool)
            picks = [int(np.flatnonzero(found == f)[0]) for f in (True, False) if (found == f).any()]
            print(plot_arc_belief(model, [bayes.episodes[i][0] for i in picks], [goals[i] for i in picks],
                                  Path(args.out) / "borel_point_arc_belief.png"))


if __name__ == "__main__":
    main()
