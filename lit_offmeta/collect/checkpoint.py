"""Mid-run checkpoints of the task-conditioned SAC collector, so a killed run resumes where it stopped.

A checkpoint is taken only when no episode is in progress (the collector lets its environments finish their
episodes first), so it needs no simulator state: the agent's networks and optimisers, the replay buffer, the
episodes recorded so far for tasks not yet written, the step counters and the random generators' states.
Everything is stored as tensors (``torch.load(weights_only=True)``), ``.npz`` arrays (``allow_pickle=False``)
and JSON, never pickles. The folder is replaced atomically (write a temporary folder, then rename).

A kill during a save leaves hidden siblings named ``.tmp-<name>-<host>-<pid>-<hex>`` (the new checkpoint being
written) or ``.old-<name>-<host>-<pid>-<hex>`` (the previous one, moved aside for the swap). A kill between the
two renames of the swap leaves no ``<name>`` folder at all, only the ``.old-`` one; :func:`load_checkpoint`
restores it and removes the leftovers of dead writers, so neither a checkpoint nor disk space is lost.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_offmeta.collect.episodes import Episode
from lit_offmeta.data.storage import owner_tag, process_alive

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
    tmp = folder.parent / f".tmp-{folder.name}-{owner_tag()}-{uuid.uuid4().hex[:8]}"
    retired = folder.parent / f".old-{folder.name}-{owner_tag()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        torch.save(tensors, tmp / "agent.pt")
        np.savez(tmp / "replay.npz", **replay)
        np.savez(tmp / "episodes.npz", **pack_episodes(episodes))
        (tmp / "state.json").write_text(json.dumps(state, sort_keys=True))  # last: marks a complete folder
        if folder.exists():
            os.replace(folder, retired)
            os.replace(tmp, folder)  # a SIGKILL before this line leaves only `retired`: see recover_checkpoint
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        if retired.exists() and not folder.exists():  # interrupted between the renames: put the old one back
            os.replace(retired, folder)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recover_checkpoint(folder: Path, log: Callable[[str], None] | None = None) -> None:
    """Undo what a killed :func:`save_checkpoint` left next to ``folder``.

    If ``folder`` holds no complete checkpoint (no ``state.json``) but a leftover ``.old-<name>-*`` does, that
    one is renamed back to ``folder`` (the newest by ``global_step`` if there are several). Then the
    ``.tmp-<name>-*`` and ``.old-<name>-*`` folders of dead writers are deleted. A leftover whose owner tag
    names another host, or another process of this host that still runs, is left alone: its writer may be
    alive (a data root shared over a network). Sibling checkpoints with other names are never touched. Call it
    only while this process is not saving this checkpoint (its own leftovers count as stale).

    Args:
        folder: the checkpoint folder, as given to :func:`save_checkpoint`.
        log: where one-line messages about restored and removed folders go (``None``: silent).

    Raises:
        OSError: a rename or a deletion fails (permissions); nothing is half-restored, a rename is atomic.
    """
    folder = Path(folder)
    say = log or (lambda _msg: None)
    if not folder.parent.is_dir():
        return
    stale = [p for p in folder.parent.iterdir() if p.is_dir() and _is_stale_leftover(p.name, folder.name)]
    if not (folder / "state.json").is_file():
        retired = [p for p in stale if p.name.startswith(".old-") and (p / "state.json").is_file()]
        if retired:
            newest = max(retired, key=_global_step)
            if folder.exists():  # an incomplete folder (no state.json) holds nothing to resume from
                shutil.rmtree(folder)
            os.replace(newest, folder)
            stale.remove(newest)
            say(f"collect: restored the SAC checkpoint {folder} from {newest.name}, left by a run killed while "
                "replacing it")
    for leftover in stale:
        shutil.rmtree(leftover, ignore_errors=True)
        say(f"collect: removed {leftover}, a leftover of a killed SAC checkpoint write")


def _is_stale_leftover(name: str, checkpoint_name: str) -> bool:
    """Whether ``name`` is a ``.tmp-``/``.old-`` leftover of checkpoint ``checkpoint_name`` with no live writer."""
    match = re.fullmatch(rf"\.(?:tmp|old)-{re.escape(checkpoint_name)}-(?P<rest>.+)", name)
    if match is None:
        return False
    owner = re.fullmatch(r"(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[0-9a-f]{8}", match.group("rest"))
    if owner is None:
        # The untagged forms .tmp-<name>-<pid>-<hex> and .old-<name>-<hex> name no host, so no writer can be
        # asked; save_checkpoint never writes them, so no live writer owns one.
        return re.fullmatch(r"(?:\d+-)?[0-9a-f]{8}", match.group("rest")) is not None
    host, pid = owner_tag().rsplit("-", 1)[0], int(owner.group("pid"))
    # This process's own leftovers are stale too: it is loading, not inside save_checkpoint.
    return owner.group("host") == host and (pid == os.getpid() or not process_alive(pid))


def _global_step(folder: Path) -> int:
    """The ``global_step`` a checkpoint folder was taken at (-1 if its state cannot be read: restored last)."""
    try:
        return int(json.loads((folder / "state.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def load_checkpoint(
    folder: Path, log: Callable[[str], None] | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray], Any] | None:
    """``(state, tensors, replay arrays, episode arrays)`` from ``folder``, or ``None`` if there is none.

    First repairs what a killed save left behind (:func:`recover_checkpoint`, messages to ``log``).

    Raises:
        ValueError: the folder exists but is unreadable (names the file and suggests deleting it).
    """
    folder = Path(folder)
    recover_checkpoint(folder, log)
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
