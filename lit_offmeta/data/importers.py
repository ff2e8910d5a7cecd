"""Importers for the offline meta-RL datasets other code bases publish, into lit-offmeta task datasets.

Two layouts (described in full in ``docs/DATASETS.md``):

* **MACAW hdf5 buffers** (eric-mitchell/macaw, ``ReplayBuffer.save``): one file per task holding datasets
  ``obs [N, obs_dim]``, ``actions [N, act_dim]``, ``rewards [N, 1]``, ``mc_rewards [N, 1]``,
  ``terminals [N, 1]`` (bool), ``terminal_obs [N, obs_dim]``, ``terminal_discounts [N, 1]``,
  ``next_obs [N, obs_dim]`` and the scalar ``discount_factor``. Trajectories are appended one after the other,
  but each trajectory's steps are written LAST STEP FIRST (the buffer fills while walking the trajectory
  backwards to accumulate Monte-Carlo returns), so ``terminal_discounts`` runs ``gamma, gamma^2, ..., gamma^T``
  inside a stored block. The importer splits blocks where ``terminal_discounts == gamma`` and reverses each
  block into time order. The authors' task specifications are pickles: they are never opened here; task
  parameters come from a JSON or YAML file the user writes.
* **BOReL / UNICORN-style ``.npy`` folders** (Rondorf/BOReL ``save_transitions``): one folder per task
  holding ``obs.npy``, ``actions.npy``, ``rewards.npy``, ``next_obs.npy``, ``terminals.npy``, either flat
  ``[N, dim]`` (trajectories of fixed length ``trajectory_len`` one after the other) or time-major
  ``[trajectory_len, n_trajectories, dim]``. BOReL names each folder ``..._goal_<g1>_<g2>...``; task
  parameters come from a user file or, for goal-parameterised families, from that name (numbers only).

All ``.npy`` files are read with ``allow_pickle=False`` and hdf5 files with h5py (which never unpickles).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from lit_offmeta.data.buffer import check_value_range
from lit_offmeta.data.storage import write_task_dataset
from lit_offmeta.tasks import get_family

_NPY_FIELDS = ("obs", "actions", "rewards", "next_obs", "terminals")
_MACAW_FIELDS = (
    "obs",
    "actions",
    "rewards",
    "next_obs",
    "terminals",
    "terminal_discounts",
    "discount_factor",
)


# --- task specifications -----------------------------------------------------------------------------------


def load_task_specs(path: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """Task parameters from a JSON or YAML file: ``{task_index: task_dict}``.

    Accepted shapes: a list of task dicts (index = position), or a mapping whose keys are task indices
    (ints or digit strings) and whose values are task dicts, e.g. ``{"0": {"velocity": 0.075}, ...}``.

    Raises:
        ValueError: on an unreadable file or any other shape, naming the file.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"cannot read the task file {path}: {err}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            raw = yaml.safe_load(text)  # safe_load builds plain data only, never Python objects
        except yaml.YAMLError as err:
            raise ValueError(f"task file {path} is not valid YAML: {err}") from None
    else:
        try:
            raw = json.loads(text)
        except ValueError as err:
            raise ValueError(f"task file {path} is not valid JSON: {err}") from None
    if isinstance(raw, list):
        items = list(enumerate(raw))
    elif isinstance(raw, dict):
        items = []
        for key, value in raw.items():
            if not re.fullmatch(r"\d+", str(key)):
                raise ValueError(f"task file {path}: key {key!r} is not a task index (expected 0, 1, ...)")
            items.append((int(key), value))
    else:
        raise ValueError(f"task file {path} must hold a list of task dicts or a mapping index -> task dict")
    bad = [i for i, task in items if not isinstance(task, dict)]
    if bad:
        raise ValueError(f"task file {path}: entries {bad} are not dicts of task parameters")
    return dict(items)


def _task_specs(tasks: str | os.PathLike | Mapping[int, dict] | Sequence[dict]) -> dict[int, dict[str, Any]]:
    if isinstance(tasks, (str, os.PathLike)):
        return load_task_specs(tasks)
    if isinstance(tasks, Mapping):
        return {int(k): dict(v) for k, v in tasks.items()}
    return {i: dict(t) for i, t in enumerate(tasks)}


# --- MACAW hdf5 ------------------------------------------------------------------------------------------


def read_macaw_hdf5(path: str | os.PathLike, time_limit: int | None = None) -> list[dict[str, Any]]:
    """Episodes (time order, Minari layout) of one MACAW per-task hdf5 buffer.

    Args:
        path: the ``.hdf5`` file.
        time_limit: if given, a trajectory of exactly this length whose last ``terminals`` flag is set is
            treated as cut by the time limit (old gym set ``done`` there too); otherwise flags are trusted.

    Returns:
        Episode dicts with ``observations [T+1]``, ``actions``, ``rewards``, ``terminations``,
        ``truncations`` and ``behaviour_step`` (steps stored before the episode: the buffer is the lifetime
        record, assuming it never wrapped around).

    Raises:
        ValueError: on a missing dataset, mismatched lengths, or blocks that do not follow the layout.
    """
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in _MACAW_FIELDS if k not in f]
            if missing:
                raise ValueError(
                    f"{path} lacks dataset(s) {missing}; a MACAW buffer holds {list(_MACAW_FIELDS)} "
                    "(plus mc_rewards and terminal_obs)"
                )
            groups = [k for k in _MACAW_FIELDS if not isinstance(f[k], h5py.Dataset)]
            if groups:
                raise ValueError(f"{path}: {groups} are hdf5 groups; a MACAW buffer stores them as datasets")
            data = {k: _numeric(np.asarray(f[k][()]), path, f"dataset {k!r}") for k in _MACAW_FIELDS}
    except OSError as err:
        raise ValueError(f"{path} is not a readable hdf5 file ({err}); is it truncated?") from None
    factor = data.pop("discount_factor")
    if factor.size != 1:
        raise ValueError(f"{path}: dataset 'discount_factor' must be one number, got shape {factor.shape}")
    gamma = float(factor.reshape(()))
    n = len(data["obs"]) if data["obs"].ndim else 0
    if n == 0:
        raise ValueError(f"{path} holds no transitions")
    for key, value in data.items():
        if value.ndim == 0 or len(value) != n:
            raise ValueError(f"{path}: dataset {key!r} has shape {value.shape}, 'obs' has {n} rows")
    for key in ("obs", "next_obs", "actions", "rewards"):  # in the file's dtype: before the float32 cast
        check_value_range(data[key], key, str(path), rows="row")
    obs = data["obs"].astype(np.float32).reshape(n, -1)
    columns = {k: v.reshape(n, -1) for k, v in data.items()}
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"{path}: discount_factor {gamma} must lie in (0, 1) to locate trajectory ends")
    discounts = columns["terminal_discounts"][:, 0].astype(np.float64)
    # Each stored block starts at its trajectory's LAST step, whose discount is gamma^1.
    block_starts = np.flatnonzero(np.isclose(discounts, gamma, rtol=1e-5, atol=0.0))
    if len(block_starts) == 0 or block_starts[0] != 0:
        raise ValueError(
            f"{path}: row 0 has terminal_discount {discounts[0]}, expected discount_factor {gamma}; this is "
            "not the MACAW layout (trajectories written last step first)"
        )
    bounds = np.append(block_starts, n)
    episodes, steps = [], 0
    for b0, b1 in zip(bounds[:-1], bounds[1:]):
        length = int(b1 - b0)
        expected = gamma ** np.arange(1, length + 1)
        if not np.allclose(discounts[b0:b1], expected, rtol=1e-4):
            raise ValueError(
                f"{path}: rows {b0}..{b1 - 1} do not form one reversed trajectory (terminal_discounts should run "
                f"gamma^1..gamma^{length}); the file does not follow the MACAW layout"
            )
        order = np.arange(b1 - 1, b0 - 1, -1)  # back to time order
        ep_obs, ep_next = obs[order], columns["next_obs"][order].astype(np.float32)
        terminal = bool(columns["terminals"][order[-1], 0])
        if time_limit is not None and length == time_limit:
            terminal = False
        ends = np.zeros(length, dtype=bool)
        ends[-1] = True
        episodes.append(
            {
                "observations": np.concatenate([ep_obs, ep_next[-1:]], axis=0),
                "actions": columns["actions"][order].astype(np.float32),
                "rewards": columns["rewards"][order, 0].astype(np.float32),
                "terminations": ends if terminal else np.zeros(length, dtype=bool),
                "truncations": np.zeros(length, dtype=bool) if terminal else ends,
                "behaviour_step": steps,
            }
        )
        _check_continuity(ep_obs, ep_next, f"{path}: trajectory at rows {b0}..{b1 - 1}")
        steps += length
    return episodes


def import_macaw_buffers(
    root: str | os.PathLike,
    family: str,
    buffers: Mapping[int, str | os.PathLike],
    tasks: str | os.PathLike | Mapping[int, dict] | Sequence[dict],
    time_limit: int | None = None,
) -> dict[int, Path]:
    """Import MACAW per-task hdf5 buffers as task datasets under ``root``.

    Args:
        root: lit-offmeta data root; a relative path is taken from the current folder.
        family: the family the data belongs to (e.g. ``"cheetah_vel"``).
        buffers: ``{task_index: hdf5 path}``, e.g. ``{i: f"buffers_cheetah_vel_train_{i}_sub_task_0.hdf5"}``;
            relative paths are taken from the current folder.
        tasks: task parameters: a JSON/YAML file (see :func:`load_task_specs`), a mapping or a list.
        time_limit: see :func:`read_macaw_hdf5`.

    Returns:
        ``{task_index: dataset folder}`` (absolute paths).

    Raises:
        ValueError: a buffer file does not exist (checked for all of them before anything is written), a task
            has no parameters, or a file does not follow the MACAW layout.
    """
    specs = _task_specs(tasks)
    missing = sorted(set(buffers) - set(specs))
    if missing:
        raise ValueError(f"no task parameters for task(s) {missing}; add them to the task file")
    # Absolute from the start: the messages and the stored source_file then name the file the user meant, and
    # a missing file stops the import before any task is written (not after the ones sorted before it).
    buffers = {int(i): Path(p).expanduser().resolve() for i, p in buffers.items()}
    absent = {i: str(p) for i, p in sorted(buffers.items()) if not p.is_file()}
    if absent:
        raise ValueError(
            f"MACAW buffer file(s) not found: {absent} (task index: path, relative paths taken from "
            f"{Path.cwd()}); fix the paths, nothing was imported"
        )
    written = {}
    for index, path in sorted(buffers.items()):
        episodes = _fit_actions(read_macaw_hdf5(path, time_limit=time_limit), family)
        meta = {
            "source": "macaw_hdf5",
            "source_file": str(path),
            "behaviour_step_reconstructed": True,
        }
        written[int(index)] = write_task_dataset(root, family, int(index), specs[int(index)], episodes, meta)
    return written


# --- BOReL / UNICORN .npy folders ----------------------------------------------------------------------


def read_npy_task_dir(
    path: str | os.PathLike,
    trajectory_len: int,
    episodes_per_trial: int = 1,
    terminals_are_terminations: bool = False,
    reward_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
    keep_obs_columns: int | None = None,
) -> list[dict[str, Any]]:
    """Episodes of one BOReL-style task folder of ``.npy`` arrays.

    Args:
        path: folder with ``obs.npy``, ``actions.npy``, ``rewards.npy``, ``next_obs.npy``, ``terminals.npy``.
        trajectory_len: steps per stored trajectory (BOReL: ``horizon * episodes_per_trial``, one trial).
        episodes_per_trial: episodes inside each trajectory (BOReL: 2 for PointRobot/Cheetah, 4 for GridNavi);
            each becomes its own episode with ``trial_index`` / ``episode_in_trial``.
        terminals_are_terminations: trust ``terminals`` as true terminations. BOReL's tasks never terminate
            and its flags mark trial ends (time limits), hence the default ``False``.
        reward_fn: ``(obs, actions, next_obs) -> rewards``; when given, rewards are recomputed with it
            (``rewards.npy`` may then be absent, as BOReL also allows).
        keep_obs_columns: keep only the first this-many observation columns (BOReL appends an
            episode-boundary flag to multi-episode observations; the task family's state has no such column).

    Returns:
        Episode dicts in stored order (Minari layout).

    Raises:
        ValueError: on missing files, pickled (object) arrays, mismatched shapes, or a ``trajectory_len`` that
            does not divide the data or breaks state continuity inside an episode.
    """
    path = Path(path)
    arrays = {}
    for name in _NPY_FIELDS:
        file = path / f"{name}.npy"
        if name == "rewards" and reward_fn is not None and not file.is_file():
            continue
        if not file.is_file():
            raise ValueError(
                f"{path} lacks {name}.npy; a task folder holds {[f + '.npy' for f in _NPY_FIELDS]}"
            )
        try:
            loaded = np.load(file, allow_pickle=False)
        except ValueError as err:
            raise ValueError(
                f"{file} cannot be read without unpickling ({err}); refusing to load it"
            ) from None
        except (OSError, EOFError) as err:
            raise ValueError(f"{file} is truncated or not a .npy file ({err})") from None
        if not isinstance(loaded, np.ndarray):  # np.load opens any zip (an .npz) whatever the file is called
            keys = list(loaded.files)
            loaded.close()
            raise ValueError(
                f"{file} is an .npz archive (arrays {keys}), not a .npy array; save the {name} array alone "
                f"with np.save('{name}.npy', array)"
            )
        arrays[name] = _numeric(loaded, file, "the array")
        if name != "terminals":  # in the file's dtype: before the float32 cast
            check_value_range(loaded, name, str(file), rows="row")
    if trajectory_len < 1 or episodes_per_trial < 1 or trajectory_len % episodes_per_trial:
        raise ValueError(
            f"trajectory_len ({trajectory_len}) must be a positive multiple of "
            f"episodes_per_trial ({episodes_per_trial})"
        )
    if arrays["obs"].ndim == 3:  # time-major [trajectory_len, n_trajectories, dim] -> flat, trajectory-major
        if arrays["obs"].shape[0] != trajectory_len:
            raise ValueError(
                f"{path}: 3-d arrays are [trajectory_len, n_trajectories, dim]; obs.npy has {arrays['obs'].shape[0]} "
                f"steps per trajectory, trajectory_len is {trajectory_len}"
            )
        arrays = {k: np.swapaxes(v, 0, 1).reshape(-1, *v.shape[2:]) for k, v in arrays.items()}
    n = len(arrays["obs"])
    for name, value in arrays.items():
        if len(value) != n:
            raise ValueError(f"{path}: {name}.npy has {len(value)} rows, obs.npy has {n}")
    if n == 0 or n % trajectory_len:
        raise ValueError(
            f"{path}: {n} transitions are not a whole number of trajectories of length {trajectory_len}"
        )
    obs = arrays["obs"].astype(np.float32).reshape(n, -1)
    next_obs = arrays["next_obs"].astype(np.float32).reshape(n, -1)
    if keep_obs_columns is not None:
        if not 1 <= keep_obs_columns <= obs.shape[1]:
            raise ValueError(
                f"keep_obs_columns={keep_obs_columns} must lie in [1, {obs.shape[1]}] for {path}"
            )
        obs, next_obs = obs[:, :keep_obs_columns].copy(), next_obs[:, :keep_obs_columns].copy()
    actions = arrays["actions"].reshape(n, -1)
    if reward_fn is not None:  # the family's reward function: one source of truth for every reward
        rewards = np.asarray(reward_fn(obs, actions, next_obs), dtype=np.float32).reshape(n)
    else:
        rewards = arrays["rewards"].reshape(n).astype(np.float32)
    terminals = arrays["terminals"].reshape(n).astype(bool)
    horizon = trajectory_len // episodes_per_trial
    episodes, steps = [], 0
    for start in range(0, n, horizon):
        rows = slice(start, start + horizon)
        trial, in_trial = divmod(start // horizon, episodes_per_trial)
        terminal = terminals_are_terminations and bool(terminals[start + horizon - 1])
        ends = np.zeros(horizon, dtype=bool)
        ends[-1] = True
        _check_continuity(
            obs[rows], next_obs[rows], f"{path}: episode at rows {start}..{start + horizon - 1}"
        )
        episodes.append(
            {
                "observations": np.concatenate([obs[rows], next_obs[start + horizon - 1][None]], axis=0),
                "actions": actions[rows],
                "rewards": rewards[rows],
                "terminations": ends if terminal else np.zeros(horizon, dtype=bool),
                "truncations": np.zeros(horizon, dtype=bool) if terminal else ends,
                "behaviour_step": steps,
                "trial_index": trial,
                "episode_in_trial": in_trial,
            }
        )
        steps += horizon
    return episodes


def goal_from_folder_name(name: str) -> list[float]:
    """BOReL's folder naming ``..._goal_<g1>_<g2>...`` -> ``[g1, g2, ...]`` (numbers only, nothing evaluated)."""
    match = re.search(r"goal((?:_-?\d+(?:\.\d*)?(?:e-?\d+)?)+)$", name)
    if not match:
        raise ValueError(
            f"folder name {name!r} does not end in goal_<number>[_<number>...]; give a task file"
        )
    return [float(part) for part in match.group(1).strip("_").split("_")]


def import_npy_task_dirs(
    root: str | os.PathLike,
    family: str,
    source: str | os.PathLike,
    trajectory_len: int,
    episodes_per_trial: int = 1,
    tasks: str | os.PathLike | Mapping[int, dict] | Sequence[dict] | None = None,
    goal_key: str = "goal",
    terminals_are_terminations: bool = False,
    recompute_rewards: bool = False,
    keep_obs_columns: int | None = None,
) -> dict[int, Path]:
    """Import a folder of BOReL-style task folders; task index = position in the sorted folder names.

    Args:
        root: lit-offmeta data root; a relative path is taken from the current folder.
        family: the family the data belongs to.
        source: folder whose subfolders are task folders (see :func:`read_npy_task_dir`); a relative path is
            taken from the current folder.
        trajectory_len: steps per stored trajectory.
        episodes_per_trial: episodes per trajectory.
        tasks: task parameters by index (file, mapping or list); ``None``: parse each folder's
            ``goal_...`` suffix into ``{goal_key: [g1, g2, ...]}`` (a single number stays a scalar).
        goal_key: the task parameter the folder goals fill.
        terminals_are_terminations: see :func:`read_npy_task_dir`.
        recompute_rewards: recompute every reward with the family's reward function for the task (also done
            for a folder without ``rewards.npy``); the metadata records it.
        keep_obs_columns: see :func:`read_npy_task_dir`.

    Returns:
        ``{task_index: dataset folder}`` (absolute paths).

    Raises:
        ValueError: ``source`` is not a folder or holds no task folders, a task has no parameters, or a task
            folder does not follow the layout.
    """
    fam = get_family(family)
    source = Path(source).expanduser().resolve()  # absolute: error messages name the folder that was read
    if not source.is_dir():
        raise ValueError(
            f"{source} is not a folder (relative paths are taken from {Path.cwd()}); pass the folder that holds "
            "one subfolder of .npy files per task"
        )
    folders = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"{source} holds no task folders")
    specs = _task_specs(tasks) if tasks is not None else None
    written = {}
    for index, folder in enumerate(folders):
        if specs is not None:
            if index not in specs:
                raise ValueError(
                    f"no task parameters for task {index} ({folder.name}); add it to the task file"
                )
            task = specs[index]
        else:
            goal = goal_from_folder_name(folder.name)
            task = {goal_key: goal[0] if len(goal) == 1 else goal}
        task = fam.validate_task(task)
        recompute = recompute_rewards or not (folder / "rewards.npy").is_file()

        def reward_fn(obs, actions, next_obs, task=task):
            if fam.discrete_actions:
                actions = np.round(actions.reshape(len(actions))).astype(np.int64)
            return fam.reward(task, obs, actions, next_obs)

        episodes = read_npy_task_dir(
            folder,
            trajectory_len,
            episodes_per_trial,
            terminals_are_terminations,
            reward_fn=reward_fn if recompute else None,
            keep_obs_columns=keep_obs_columns,
        )
        episodes = _fit_actions(episodes, family)
        meta = {
            "source": "npy_folder",
            "source_dir": str(folder.resolve()),
            "behaviour_step_reconstructed": True,
            "rewards_recomputed": recompute,
        }
        written[index] = write_task_dataset(root, family, index, task, episodes, meta)
    return written


def _numeric(values: np.ndarray, file: Path, what: str) -> np.ndarray:
    """``values`` if it holds plain numbers (bool, int, float); else a ``ValueError`` naming file and field.

    Strings, bytes, compound records and complex numbers would otherwise fail deep inside numpy (or, for
    strings like ``"1.0"``, be parsed silently) with no file name in the message.
    """
    if values.dtype.kind not in "biuf":
        raise ValueError(
            f"{file}: {what} has dtype {values.dtype}, not numbers; store it as a float (or int/bool) array"
        )
    return values


def _fit_actions(episodes: list[dict[str, Any]], family: str) -> list[dict[str, Any]]:
    """Discrete families store ``[T]`` integer actions; the published layouts keep them as ``[T, 1]`` floats."""
    if not get_family(family).discrete_actions:
        return episodes
    for ep in episodes:
        actions = np.asarray(ep["actions"]).reshape(len(ep["rewards"]), -1)
        if actions.shape[1] != 1 or not np.allclose(actions, np.round(actions)):
            raise ValueError(
                f"family {family!r} has discrete actions but the file holds actions {actions.shape}"
            )
        ep["actions"] = np.round(actions[:, 0]).astype(np.int64)
    return episodes


def _check_continuity(obs: np.ndarray, next_obs: np.ndarray, where: str) -> None:
    """Inside one episode ``next_obs[t] == obs[t + 1]``; a break means wrong boundaries (or a wrong length)."""
    if len(obs) > 1 and not np.allclose(next_obs[:-1], obs[1:], rtol=1e-5, atol=1e-6):
        t = int(np.flatnonzero(~np.isclose(next_obs[:-1], obs[1:], rtol=1e-5, atol=1e-6).all(axis=1))[0])
        raise ValueError(
            f"{where}: next_obs[{t}] != obs[{t + 1}] inside one episode; the episode boundaries (trajectory_len "
            "/ episodes_per_trial, or the file layout) do not match the data"
        )
