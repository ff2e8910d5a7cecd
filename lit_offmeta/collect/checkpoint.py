"""Mid-run checkpoints of the task-conditioned SAC collector, so a killed run resumes where it stopped.

A checkpoint is taken only when no episode is in progress (the collector lets its environments finish their
episodes first), so it needs no simulator state: the agent's networks and optimisers, the replay buffer, the
episodes recorded so far for tasks not yet written, the step counters and the random generators' states.
Everything is stored as tensors (``torch.load(weights_only=True)``), ``.npz`` arrays (``allow_pickle=False``)
and JSON, never pickles. The folder is replaced atomically (write a temporary folder, then rename).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_offmeta.collect.episodes import Episode

EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")


def pack_episodes(episodes: dict[int, list[Episode]]) -> dict[str, np.ndarray]:
    """Per-task episode lists -> flat arrays keyed ``t<task>_<field>`` plus lengths and behaviour steps."""
    arrays: dict[str, np.ndarray] = {}
    for task_index, eps in episodes.items():
        prefix = f"t{task_index}_"
        arrays[prefix + "lengths"] = np.asarray([len(ep["rewards"]) for ep in eps], dtype=np.int64)
        arrays[prefix + "behaviour_step"] = np.asarray([ep["behaviour_step"] for ep in eps], dtype=np.int64)
        for key in EPISODE_KEYS:
            if eps:
                arrays[prefix + key] = np.concatenate([ep[key] for ep in eps])
    return arrays


def unpack_episodes(arrays: Any, task_ids: list[int]) -> dict[int, list[Episode]]:
    """Inverse of :func:`pack_episodes` (``arrays``: an open ``np.load`` file or a dict)."""
    episodes: dict[int, list[Episode]] = {}
    for task_index in task_ids:
        prefix = f"t{task_index}_"
        lengths = arrays[prefix + "lengths"]
        steps = arrays[prefix + "behaviour_step"]
        eps: list[Episode] = []
        offset = obs_offset = 0
        for length, step in zip(lengths.tolist(), steps.tolist()):
            ep: Episode = {"observations": arrays[prefix + "observations"][obs_offset:obs_offset + length + 1]}
            for key in EPISODE_KEYS[1:]:
                ep[key] = arrays[prefix + key][offset:offset + length]
            ep["behaviour_step"] = int(step)
            eps.append(ep)
            offset, obs_offset = offset + length, obs_offset + length + 1
        episodes[task_index] = eps
    return episodes


def save_checkpoint(
    folder: Path,
    state: dict[str, Any],
    tensors: dict[str, Any],
    replay: dict[str, np.ndarray],
    episodes: dict[int, list[Episode]],
) -> None:
    """Write a checkpoint to ``folder`` atomically (replacing an older one)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        torch.save(tensors, tmp / "agent.pt")
        np.savez(tmp / "replay.npz", **replay)
        np.savez(tmp / "episodes.npz", **pack_episodes(episodes))
        (tmp / "state.json").write_text(json.dumps(state, sort_keys=True))  # last: marks a complete folder
        if folder.exists():
            retired = folder.parent / f".old-{folder.name}-{uuid.uuid4().hex[:8]}"
            os.replace(folder, retired)
            os.replace(tmp, folder)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray], Any] | None:
    """``(state, tensors, replay arrays, episode arrays)`` from ``folder``, or ``None`` if there is none.

    Raises:
        ValueError: the folder exists but is unreadable (names the file and suggests deleting it).
    """
    folder = Path(folder)
    if not (folder / "state.json").is_file():
        return None
    try:
        state = json.loads((folder / "state.json").read_text())
        tensors = torch.load(folder / "agent.pt", weights_only=True)
        with np.load(folder / "replay.npz", allow_pickle=False) as data:
            replay = {key: data[key] for key in data.files}
        with np.load(folder / "episodes.npz", allow_pickle=False) as data:
            episodes = {key: data[key] for key in data.files}
    except (OSError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"collect: the SAC checkpoint in {folder} cannot be read ({err}); delete that folder to start over"
        ) from None
    return state, tensors, replay, episodes
