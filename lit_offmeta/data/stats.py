"""What a data root holds: per task, its size and how the behaviour data improves along the lifetime.

:func:`dataset_stats` reads every finished task dataset of a family (through the packed cache) and returns one
:class:`TaskStats` per task: the figures ``minari show`` prints (dataset id, episodes, steps, spaces, algorithm,
Minari version) plus the lifetime's return quantiles in its first, middle and last thirds, so a user sees at a
glance whether the late data is better than the early data (what MACAW's data-quality windows rely on).
``lit-offmeta data stats DIR`` prints them and draws the behaviour curves (:mod:`lit_offmeta.data_cli`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lit_offmeta.data.storage import list_task_datasets, read_task_dataset

LIFETIME_WINDOWS = ("first", "middle", "last")
"""The thirds of a task's lifetime (its episodes in recording order) whose returns are summarised."""
QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class TaskStats:
    """One task dataset at a glance.

    Attributes:
        task_index, task: the task's index in the family and its parameters.
        dataset_id: the Minari id (``<family>/task_NNNN-v0``).
        transitions, episodes: sizes.
        behaviour_agent, minari_version: from the dataset's metadata (``""`` when not recorded).
        observation_space, action_space: Minari's JSON descriptions of the spaces.
        behaviour_steps: the behaviour agent's step count at the first and the last episode (``-1``: unknown).
        return_quantiles: window (``first``/``middle``/``last`` third of the episodes) -> episode-return quantiles
            at :data:`QUANTILES` (min, 25%, median, 75%, max).
        returns: every episode's return in recording order (for the behaviour curve; left out of :meth:`row`).
    """

    task_index: int
    task: dict[str, Any]
    dataset_id: str
    transitions: int
    episodes: int
    behaviour_agent: str
    minari_version: str
    observation_space: str
    action_space: str
    behaviour_steps: tuple[int, int]
    return_quantiles: dict[str, list[float]]
    returns: list[float]

    def row(self) -> dict[str, Any]:
        """Everything but the per-episode returns, JSON-ready."""
        out = asdict(self)
        out.pop("returns")
        return out


def lifetime_windows(num_episodes: int) -> dict[str, slice]:
    """The first, middle and last third of ``num_episodes`` episodes (the middle one takes the remainder)."""
    third = max(1, num_episodes // 3)
    return {"first": slice(0, third), "middle": slice(third, max(third, num_episodes - third)),
            "last": slice(num_episodes - third, num_episodes)}


def return_quantiles(returns: np.ndarray) -> dict[str, list[float]]:
    """Window -> quantiles of ``returns`` (episode returns in recording order) in that third of the lifetime;
    an empty window (fewer than three episodes) gets NaNs."""
    out = {}
    for name, window in lifetime_windows(len(returns)).items():
        part = np.asarray(returns[window], dtype=np.float64)
        out[name] = np.quantile(part, QUANTILES).tolist() if len(part) else [float("nan")] * len(QUANTILES)
    return out


def dataset_stats(root: str | os.PathLike, family: str) -> list[TaskStats]:
    """One :class:`TaskStats` per finished dataset of ``family`` under ``root``, by task index.

    Raises:
        ValueError: ``root`` holds no finished dataset of ``family``.
    """
    folders = list_task_datasets(root, family)
    if not folders:
        raise ValueError(f"data stats: no finished {family!r} datasets under {Path(root) / family}")
    stats = []
    for index, folder in folders.items():
        buffer = read_task_dataset(folder, expected_family=family)
        minari_meta = json.loads((folder / "data" / "metadata.json").read_text())
        ours = minari_meta.get("lit_offmeta", {})
        returns = buffer.episode_returns()
        steps = np.asarray(buffer.behaviour_steps, dtype=np.int64)
        stats.append(TaskStats(
            task_index=index, task=dict(buffer.task), dataset_id=str(minari_meta.get("dataset_id", "")),
            transitions=len(buffer), episodes=buffer.num_episodes,
            behaviour_agent=str(ours.get("metadata", {}).get("behaviour_agent", minari_meta.get("algorithm_name", ""))),
            minari_version=str(minari_meta.get("minari_version", "")),
            observation_space=str(minari_meta.get("observation_space", "")),
            action_space=str(minari_meta.get("action_space", "")),
            behaviour_steps=(int(steps[0]), int(steps[-1])), return_quantiles=return_quantiles(returns),
            returns=returns.tolist(),
        ))
    return stats


def families_in(root: str | os.PathLike) -> list[str]:
    """The families under ``root`` that have at least one finished dataset."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"data stats: {root} is not a directory")
    return sorted(child.name for child in root.iterdir()
                  if child.is_dir() and not child.name.startswith(".") and list_task_datasets(root, child.name))


def format_table(family: str, stats: list[TaskStats]) -> str:
    """A plain-text table: one line per task, the median return of each lifetime third, and a summary line."""
    header = f"{'task':>5} {'transitions':>12} {'episodes':>9} " + " ".join(
        f"{'median ' + w:>14}" for w in LIFETIME_WINDOWS) + "  parameters"
    lines = [f"{family}: {len(stats)} task(s), {sum(s.transitions for s in stats)} transitions, "
             f"{sum(s.episodes for s in stats)} episodes; agent {stats[0].behaviour_agent or 'unknown'}", header]
    for s in stats:
        medians = " ".join(f"{s.return_quantiles[w][2]:>14.3f}" for w in LIFETIME_WINDOWS)
        task = {k: np.round(np.asarray(v, dtype=np.float64), 3).tolist() for k, v in s.task.items()}
        lines.append(f"{s.task_index:>5} {s.transitions:>12} {s.episodes:>9} {medians}  {json.dumps(task)}")
    means = " ".join(f"{np.mean([s.return_quantiles[w][2] for s in stats]):>14.3f}" for w in LIFETIME_WINDOWS)
    lines.append(f"{'mean':>5} {'':>12} {'':>9} {means}")
    return "\n".join(lines)
