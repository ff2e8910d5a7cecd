"""On-disk task datasets: one Minari dataset per task, grouped by family, with a fast packed cache.

Layout under a data root ``ROOT`` (a valid ``MINARI_DATASETS_PATH``; the family is a Minari namespace)::

    ROOT/<family>/namespace_metadata.json             Minari namespace file
    ROOT/<family>/task_0007-v0/data/metadata.json     Minari metadata; our fields under "lit_offmeta"
    ROOT/<family>/task_0007-v0/data/main_data.hdf5    Minari episodes (observations [T+1], actions, ...)
    ROOT/<family>/task_0007-v0/packed.npy             lit-offmeta cache: all transitions as one float32 block
    ROOT/<family>/task_0007-v0/packed.json            cache index: source checksums, episode offsets

so ``MINARI_DATASETS_PATH=ROOT python -c "import minari; minari.load_dataset('point_robot/task_0007-v0')"``
opens a task's data with plain Minari. Writing never touches ``~/.minari``: the Minari root is pointed at
a temporary folder inside ``ROOT/<family>`` for the duration of one write, then the finished dataset is
renamed into place, so a killed run leaves at most a hidden ``.tmp-*`` folder that nothing ever loads.

Reading goes through Minari's storage once per source version and packs the task into one ``.npy`` block
(``allow_pickle=False``; a plain ``.npy`` read ~20x faster than an ``.npz`` here) plus a JSON index keyed
by the size and CRC-32 of the source files' contents; later loads read those files directly (Minari's
episode iteration is too slow for tens of millions of steps, see docs/DATASETS.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import shutil
import socket
import tempfile
import threading
import uuid
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer
from minari.dataset.minari_storage import MinariStorage
from minari.namespace import NAMESPACE_METADATA_FILENAME

from lit_offmeta.data.buffer import TaskBuffer, check_episode, check_value_range
from lit_offmeta.tasks import get_family
from lit_offmeta.tasks.base import TaskFamily

FORMAT_VERSION = 1
"""Version of the ``lit_offmeta`` metadata block of a dataset."""
CACHE_FORMAT_VERSION = 2
"""Version of the packed cache (``packed.npy`` + ``packed.json``); a cache of another version is rebuilt."""
METADATA_KEY = "lit_offmeta"
CACHE_NAME = "packed.npy"
CACHE_INDEX = "packed.json"
_DIR_RE = re.compile(r"^task_(\d{4,})-v0$")
_WRITE_LOCK = threading.Lock()  # MINARI_DATASETS_PATH is process-global: one write at a time per process


class MissingDatasetError(FileNotFoundError, ValueError):
    """A task dataset the user asked for is not on disk (also a ``ValueError``: it is bad input)."""


class CorruptDatasetError(ValueError):
    """A task folder is on disk but its ``data/metadata.json`` is not valid JSON or lacks the ``lit_offmeta``
    block; the message names the file and the command that rebuilds the task."""


def collect_command(family: str, root: str | os.PathLike, tasks: Sequence[int] | None = None) -> str:
    """The ``lit-offmeta collect`` command that produces ``family``'s data under ``root``, for error messages.

    When ``root``'s collect manifest has an entry for ``family``, the command repeats the arguments recorded
    there (preset, ``--set`` for each setting that differs from the preset, seed): collect refuses to add data
    made with other settings to that folder. Otherwise it names the ``small`` preset. ``tasks`` adds ``--tasks``.
    """
    arguments = _recorded_collect_arguments(family, root) or f"--family {family} --preset small"
    command = f"lit-offmeta collect {arguments} --out {shlex.quote(str(root))}"
    return command + (f" --tasks {','.join(str(int(i)) for i in tasks)}" if tasks else "")


def _recorded_collect_arguments(family: str, root: str | os.PathLike) -> str | None:
    """The collect arguments (all but ``--out``) of ``root``'s manifest entry for ``family``; ``None`` without."""
    try:
        arguments = json.loads((Path(root) / COLLECT_MANIFEST).read_text(encoding="utf-8"))[family]["arguments"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return arguments if isinstance(arguments, str) and arguments.startswith(f"--family {family} ") else None


def dataset_id(family: str, task_index: int) -> str:
    """Minari dataset id of a task: ``"<family>/task_<index:04d>-v0"`` (namespace = family)."""
    return f"{family}/{_dir_name(task_index)}"


def dataset_path(root: str | os.PathLike, family: str, task_index: int) -> Path:
    """Folder of one task's Minari dataset: ``ROOT/<family>/task_<index:04d>-v0``."""
    return Path(root) / _family_name(family) / _dir_name(task_index)


def _dir_name(task_index: int) -> str:
    if int(task_index) < 0:
        raise ValueError(f"task_index must be >= 0, got {task_index}")
    return f"task_{int(task_index):04d}-v0"


def _family_name(family: str | TaskFamily) -> str:
    return family.name if isinstance(family, TaskFamily) else str(family)


@contextlib.contextmanager
def minari_root(path: str | os.PathLike) -> Iterator[Path]:
    """Point Minari's dataset root (``MINARI_DATASETS_PATH``) at ``path`` inside the block, then restore it."""
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield Path(path)
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous


# --- writing -----------------------------------------------------------------------------------------------


def write_task_dataset(
    root: str | os.PathLike,
    family: str | TaskFamily,
    task_index: int,
    task: dict[str, Any],
    episodes: Sequence[dict[str, Any]],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write one task's episodes as a Minari dataset, atomically; replace an existing one.

    Args:
        root: the data root (``--out`` of ``lit-offmeta collect``); a relative path is taken from the current
            folder.
        family: the task family (registry name or instance); fixes the observation and action spaces.
        task_index: the task's index in the family's ``default_tasks()`` (or the imported dataset's index).
        task: the task's parameters; validated by the family and stored in the metadata and the env spec.
        episodes: Minari-style dicts in recording order: ``observations [T+1, obs_dim]``, ``actions [T, ...]``,
            ``rewards [T]``, ``terminations [T]``, ``truncations [T]``, optionally the scalars
            ``behaviour_step`` (the behaviour agent's env-step count when the episode began), ``trial_index``
            and ``episode_in_trial``.
        metadata: extra JSON-serialisable facts (behaviour agent, preset, seed...), stored verbatim.

    Returns:
        The dataset folder, ``dataset_path(root, family, task_index)`` with ``root`` made absolute.

    Raises:
        ValueError: on an unknown family, an invalid task, malformed episodes, values that are NaN, inf or
            beyond :data:`~lit_offmeta.data.buffer.MAX_ABS_VALUE`, observation or action sizes that differ from
            the family's, or metadata that is not JSON-serialisable.
    """
    # Absolute: Minari resolves a relative MINARI_DATASETS_PATH against its own folders while writing.
    root = Path(root).expanduser().resolve()
    fam = get_family(family)
    task = fam.validate_task(task)
    episodes = list(episodes)
    final = dataset_path(root, fam.name, task_index)
    _check_episodes(fam, episodes, task_index, final)
    extra = dict(metadata or {})
    try:
        json.dumps(extra)
    except TypeError as err:
        raise ValueError(f"metadata for task {task_index} must be JSON-serialisable: {err}") from None

    def per_episode(key: str) -> list[int] | None:
        present = [key in ep for ep in episodes]
        if not any(present):
            return None
        if not all(present):
            raise ValueError(f"task {task_index}: {key!r} is given for some episodes but not all")
        return [int(ep[key]) for ep in episodes]

    behaviour_steps = per_episode("behaviour_step")
    block = {
        "format_version": FORMAT_VERSION,
        "family": fam.name,
        "task_index": int(task_index),
        "task": task,
        "num_episodes": len(episodes),
        "total_steps": int(sum(len(ep["rewards"]) for ep in episodes)),
        "behaviour_steps": behaviour_steps if behaviour_steps is not None else [-1] * len(episodes),
        "trial_index": per_episode("trial_index"),
        "episode_in_trial": per_episode("episode_in_trial"),
        "metadata": extra,
    }

    family_dir = final.parent
    created = [d for d in (family_dir, *family_dir.parents) if not d.exists()]  # deepest first
    family_dir.mkdir(parents=True, exist_ok=True)
    tmp_root = family_dir / f".tmp-{final.name}-{owner_tag()}-{uuid.uuid4().hex[:8]}"
    try:
        with _WRITE_LOCK, minari_root(tmp_root):
            _create_minari_dataset(fam, task_index, task, episodes, extra, block)
        _publish(tmp_root / fam.name / final.name, final)
        _ensure_namespace_file(tmp_root / fam.name, family_dir)
    except BaseException:
        shutil.rmtree(tmp_root, ignore_errors=True)
        for folder in created:  # a failed first write leaves no empty folders behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    shutil.rmtree(tmp_root, ignore_errors=True)
    _prime_cache(final, episodes, block)
    return final


def _prime_cache(final: Path, episodes: list[dict[str, Any]], block: dict[str, Any]) -> None:
    """Write the packed cache from the episodes in hand, so even the first load skips Minari's reader.

    The checksums are taken from the published files, so the cache is valid exactly as if a first load had
    built it. Data too small to train on gets no cache; loading it raises.
    """
    try:
        buffer = TaskBuffer.from_episodes(
            episodes,
            task=block["task"],
            task_index=block["task_index"],
            family=block["family"],
            behaviour_steps=block["behaviour_steps"],
            trial_index=block["trial_index"],
            episode_in_trial=block["episode_in_trial"],
            source=str(final),
        )
    except ValueError:
        return
    data_dir = final / "data"
    _write_cache(final, buffer, source_checksums(data_dir / "metadata.json", data_dir / "main_data.hdf5"))


def _check_episodes(fam: TaskFamily, episodes: list[dict[str, Any]], task_index: int, final: Path) -> None:
    if not episodes:
        raise ValueError(
            f"task {task_index}: no episodes to write; a task dataset needs at least one episode"
        )
    for e, ep in enumerate(episodes):
        where = f"writing {final}: task {task_index}, episode {e}"
        check_episode(ep, where)
        obs = np.asarray(ep["observations"])
        if obs.shape[1] != fam.obs_dim:
            raise ValueError(
                f"{where}: observations have {obs.shape[1]} columns, family {fam.name!r} has {fam.obs_dim}"
            )
        actions = np.asarray(ep["actions"])
        if fam.discrete_actions:
            if actions.ndim != 1 or not np.issubdtype(actions.dtype, np.integer):
                raise ValueError(
                    f"{where}: family {fam.name!r} has discrete actions; pass 'actions' as [T] integers"
                )
            if actions.min() < 0 or actions.max() >= fam.action_dim:
                raise ValueError(
                    f"{where}: discrete actions must lie in [0, {fam.action_dim}), got {actions.min()}..{actions.max()}"
                )
        elif actions.ndim != 2 or actions.shape[1] != fam.action_dim:
            raise ValueError(
                f"{where}: 'actions' must be [T, {fam.action_dim}] for family {fam.name!r}, got {actions.shape}"
            )
        for key in ("observations", "actions", "rewards"):
            check_value_range(np.asarray(ep[key]), key, where, rows="step")  # in its own dtype: before the cast


def _create_minari_dataset(
    fam: TaskFamily,
    task_index: int,
    task: dict[str, Any],
    episodes: list[dict[str, Any]],
    extra: dict[str, Any],
    block: dict[str, Any],
) -> None:
    """Write the dataset through Minari under the current ``MINARI_DATASETS_PATH`` (a private temp root)."""
    action_dtype = np.int64 if fam.discrete_actions else np.float32
    buffers = [
        EpisodeBuffer(
            id=e,
            observations=np.asarray(ep["observations"], dtype=np.float32),
            actions=np.asarray(ep["actions"], dtype=action_dtype),
            rewards=np.asarray(ep["rewards"], dtype=np.float32).reshape(-1),
            terminations=np.asarray(ep["terminations"], dtype=bool).reshape(-1),
            truncations=np.asarray(ep["truncations"], dtype=bool).reshape(-1),
        )
        for e, ep in enumerate(episodes)
    ]
    # The env spec carries the task, so ``dataset.recover_environment()`` rebuilds this task's environment.
    base_spec = gym.spec(fam.env_id)
    spec = dataclasses.replace(base_spec, kwargs={**base_spec.kwargs, "task": task})
    with warnings.catch_warnings():
        # Minari nags about unset author e-mail / permalink; they have no meaning for generated data.
        warnings.filterwarnings("ignore", message=r".*is set to None.*")
        dataset = minari.create_dataset_from_buffers(
            dataset_id=dataset_id(fam.name, task_index),
            buffer=buffers,
            env=spec,
            algorithm_name=str(extra.get("behaviour_agent", extra.get("algorithm", "unknown"))),
            author="lit-offmeta",
            description=f"lit-offmeta offline data for {fam.name} task {task_index}: {json.dumps(task)}",
            observation_space=fam.observation_space,
            action_space=fam.action_space,
        )
    # Our block goes in last: a dataset whose metadata lacks it was never finished and is never listed.
    dataset.storage.update_metadata({METADATA_KEY: block})


def _publish(built: Path, final: Path) -> None:
    """Move a finished dataset folder into place with renames only (atomic on one file system)."""
    if not (built / "data" / "metadata.json").is_file():
        raise RuntimeError(f"Minari wrote no dataset at {built}; nothing was published")
    if final.exists():
        retired = final.parent / f".old-{final.name}-{owner_tag()}-{uuid.uuid4().hex[:8]}"
        os.replace(final, retired)
        os.replace(built, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(built, final)


def write_json_atomic(path: str | os.PathLike, payload: Any, **dump_kwargs: Any) -> Path:
    """Write ``payload`` as JSON to ``path`` atomically (a temporary file in the same folder, then a rename), creating
    the folder; a failed write leaves nothing behind. ``dump_kwargs`` go to ``json.dump`` (e.g. ``indent``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, **dump_kwargs)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def owner_tag() -> str:
    """``<host>-<pid>`` of this process, in temporary names so stale ones can be told from live ones."""
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
    return f"{host}-{os.getpid()}"


def remove_stale_temporaries(root: str | os.PathLike, family: str | TaskFamily) -> list[Path]:
    """Delete hidden ``.tmp-*`` / ``.old-*`` folders left by killed writers on THIS host; return them.

    A folder is stale when its name carries this host's name and the id of a process that no longer runs.
    Folders from other hosts (a data root shared over a network) are left alone: their writers may be alive.
    Nothing ever loads these folders, so removing them only frees disk space.
    """
    family_dir = Path(root) / _family_name(family)
    host = owner_tag().rsplit("-", 1)[0]
    removed = []
    if not family_dir.is_dir():
        return removed
    for child in family_dir.iterdir():
        match = re.match(
            r"^\.(?:tmp|old)-task_\d{4,}-v0-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[0-9a-f]{8}$", child.name
        )
        if not match or match.group("host") != host or process_alive(int(match.group("pid"))):
            continue
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child)
    return removed


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (its temporary files may still be in use)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _ensure_namespace_file(built_namespace: Path, family_dir: Path) -> None:
    """Copy Minari's namespace file next to the datasets once, so ``minari.load_dataset`` sees the namespace."""
    target = family_dir / NAMESPACE_METADATA_FILENAME
    source = built_namespace / NAMESPACE_METADATA_FILENAME
    if target.exists() or not source.exists():
        return
    tmp = family_dir / f".{NAMESPACE_METADATA_FILENAME}.{uuid.uuid4().hex[:8]}"
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


# --- listing and reading -----------------------------------------------------------------------------------


def list_task_datasets(root: str | os.PathLike, family: str | TaskFamily) -> dict[int, Path]:
    """Finished task datasets of a family under ``root``: ``{task_index: folder}``, sorted by index.

    Hidden folders (unfinished writes) and datasets whose metadata lacks the ``lit_offmeta`` block are skipped.
    """
    family_dir = Path(root) / _family_name(family)
    found: dict[int, Path] = {}
    if not family_dir.is_dir():
        return found
    for child in family_dir.iterdir():
        match = _DIR_RE.match(child.name)
        if match and child.is_dir() and _is_finished(child):
            found[int(match.group(1))] = child
    return dict(sorted(found.items()))


COLLECT_MANIFEST = "collect_manifest.json"
"""The file in a data root where ``lit-offmeta collect`` records each family's settings (preset, seed)."""


def raise_if_corrupt(folder: Path, family: str, root: str | os.PathLike) -> None:
    """A task folder whose ``metadata.json`` exists but cannot be read is corrupt, not missing: say so, and give
    the command that rebuilds it (the collect settings recorded in the root's manifest, when there are some).

    Raises:
        CorruptDatasetError: the file is not valid JSON or lacks the ``lit_offmeta`` block.
    """
    meta_file = folder / "data" / "metadata.json"
    if not meta_file.is_file():
        return
    try:
        block = json.loads(meta_file.read_text(encoding="utf-8"))
        if isinstance(block, dict) and METADATA_KEY in block:
            return
        reason = f"no {METADATA_KEY!r} block"
    except (OSError, ValueError) as err:
        reason = f"not valid JSON: {err}"
    match = _DIR_RE.match(folder.name)
    if _recorded_collect_arguments(family, root) is not None and match:
        command = collect_command(family, root, tasks=[int(match.group(1))])
        fix = f"then `{command}` (the settings recorded in {Path(root) / COLLECT_MANIFEST}; finished tasks are kept)"
    else:
        fix = "then re-collect or re-import that task"
    raise CorruptDatasetError(f"{meta_file} is corrupt ({reason}): delete {folder}, {fix}")


def _is_finished(folder: Path) -> bool:
    try:
        with open(folder / "data" / "metadata.json") as f:
            return METADATA_KEY in json.load(f)
    except (OSError, ValueError):
        return False


def load_task_buffers(
    root: str | os.PathLike,
    family: str | TaskFamily,
    task_indices: Sequence[int] | None = None,
    use_cache: bool = True,
    memory_map: bool = False,
) -> list[TaskBuffer]:
    """Load task datasets as :class:`TaskBuffer` objects, through the packed cache.

    Args:
        root: the data root.
        family: the family's name (or instance).
        task_indices: which tasks, in this order; ``None`` loads every finished dataset of the family (and
            raises if a task folder is corrupt rather than leave it out).
        use_cache: read and refresh the packed cache (off: always read through Minari).
        memory_map: memory-map the packed caches rather than read them (:func:`read_task_dataset`).

    Returns:
        One buffer per requested task.

    Raises:
        MissingDatasetError: when a requested task (or the whole family) has no dataset; the message gives
            the ``lit-offmeta collect`` command that produces it.
        CorruptDatasetError: when a requested task's ``metadata.json`` is not valid JSON or lacks the
            ``lit_offmeta`` block; the message names the file and the command that rebuilds it.
        ValueError: when a dataset is truncated or corrupt, belongs to another family or task, or holds
            NaN/inf or fewer than two transitions.
    """
    name = _family_name(family)
    available = list_task_datasets(root, name)
    if task_indices is None:
        family_dir = Path(root) / name
        unlisted = sorted(family_dir.iterdir()) if family_dir.is_dir() else []
        for folder in unlisted:  # "every dataset" must not silently shrink by a corrupt one
            if _DIR_RE.match(folder.name) and folder.is_dir() and folder not in available.values():
                raise_if_corrupt(folder, name, root)
        if not available:
            raise MissingDatasetError(
                f"no {name!r} datasets under {Path(root) / name}; create them with `{collect_command(name, root)}`"
            )
        task_indices = list(available)
    missing = [int(i) for i in task_indices if int(i) not in available]
    for index in missing:
        raise_if_corrupt(dataset_path(root, name, index), name, root)
    if missing:
        have = sorted(available) if available else "none"
        raise MissingDatasetError(
            f"no dataset for {name!r} task(s) {missing} under {Path(root) / name} (found task indices: {have}); "
            f"create them with `{collect_command(name, root)}`"
        )
    return [
        read_task_dataset(available[int(i)], expected_family=name, use_cache=use_cache, memory_map=memory_map)
        for i in task_indices
    ]


def read_task_dataset(
    folder: str | os.PathLike, expected_family: str | None = None, use_cache: bool = True,
    memory_map: bool = False,
) -> TaskBuffer:
    """Read one task dataset folder (``dataset_path(...)``) into a :class:`TaskBuffer`.

    With ``memory_map`` the packed cache is memory-mapped instead of read (built first if it is missing or stale):
    observations and actions stay on disk until sampled, so datasets larger than RAM train (docs/DATASETS.md).
    """
    if memory_map and not use_cache:
        raise ValueError("read_task_dataset: memory_map=True maps the packed cache, so it needs use_cache=True")
    folder = Path(folder)
    data_dir = folder / "data"
    meta_file, main_file = data_dir / "metadata.json", data_dir / "main_data.hdf5"
    for f in (meta_file, main_file):
        if not f.is_file():
            raise ValueError(
                f"{folder} is not a complete task dataset: {f.name} is missing; delete the folder and re-collect"
            )
    try:
        with open(meta_file) as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{meta_file} is unreadable or truncated ({err}); delete {folder} and re-collect"
        ) from None
    block = meta.get(METADATA_KEY)
    if not isinstance(block, dict) or block.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_file}: no '{METADATA_KEY}' block of format version {FORMAT_VERSION}; "
            "this is not a finished lit-offmeta task dataset (re-collect or re-import it)"
        )
    if expected_family is not None and block["family"] != expected_family:
        raise ValueError(f"{folder} holds family {block['family']!r}, expected {expected_family!r}")
    if _DIR_RE.match(folder.name) and int(_DIR_RE.match(folder.name).group(1)) != block["task_index"]:
        raise ValueError(
            f"{folder}: folder name disagrees with task_index {block['task_index']} in its metadata"
        )

    if not use_cache:
        return _read_minari(data_dir, block, str(folder))
    checksums = source_checksums(meta_file, main_file)
    buffer = _read_cache(folder, checksums, block, str(folder), memory_map)
    if buffer is None:
        buffer = _read_minari(data_dir, block, str(folder))
        _write_cache(folder, buffer, checksums)
        if memory_map:  # map the cache just written; the in-memory copy is dropped
            buffer = _read_cache(folder, checksums, block, str(folder), memory_map) or buffer
    return buffer


def source_checksums(*files: Path, chunk_bytes: int = 1 << 20) -> list[list[Any]]:
    """``[name, size, CRC-32]`` of each file's contents, read in 1 MB chunks.

    The cache is keyed by content, not by inode and modification time: an in-place edit that keeps the mtime
    (``touch -r``, a restore from backup, some editors and sync tools) still changes the checksum. CRC-32 is
    not a cryptographic hash, but the question is "did the file change", not "was it forged", and zlib's
    CRC-32 is about as fast as reading the packed block (``benchmarks/cache_checksum.py``, docs/DATASETS.md).
    """
    result: list[list[Any]] = []
    chunk = bytearray(chunk_bytes)
    view = memoryview(chunk)
    for path in files:
        crc, size = 0, 0
        with open(path, "rb") as handle:
            while n := handle.readinto(chunk):
                crc = zlib.crc32(view[:n], crc)
                size += n
        result.append([path.name, size, crc])
    return result


def _read_minari(data_dir: Path, block: dict[str, Any], source: str) -> TaskBuffer:
    try:
        storage = MinariStorage.read(data_dir)
        episodes = list(storage.get_episodes(range(storage.total_episodes)))
    except (OSError, KeyError, ValueError, AssertionError) as err:
        raise ValueError(
            f"{data_dir / 'main_data.hdf5'} is truncated or corrupt ({type(err).__name__}: {err}); "
            f"delete {Path(source)} and re-collect that task"
        ) from None
    if len(episodes) != block["num_episodes"]:
        raise ValueError(
            f"{source}: holds {len(episodes)} episodes but its metadata says {block['num_episodes']}; "
            "the file is incomplete: delete it and re-collect"
        )
    steps = sum(len(ep["rewards"]) for ep in episodes)
    if steps != block["total_steps"]:
        raise ValueError(
            f"{source}: main_data.hdf5 holds {steps} transitions but its metadata says total_steps "
            f"{block['total_steps']}; the file is incomplete or was edited: delete {Path(source)} and re-collect "
            "(or re-import) that task"
        )
    return TaskBuffer.from_episodes(
        episodes,
        task=block["task"],
        task_index=block["task_index"],
        family=block["family"],
        behaviour_steps=block["behaviour_steps"],
        trial_index=block.get("trial_index"),
        episode_in_trial=block.get("episode_in_trial"),
        source=source,
    )


def _write_cache(folder: Path, buffer: TaskBuffer, checksums: list[list[Any]]) -> None:
    """Write ``packed.npy`` (the transition block) then ``packed.json`` (source checksums, per-episode arrays).

    Each file goes to a temporary name first and is renamed into place; the index, which carries the source
    checksums, is renamed last, so a reader never pairs fresh checksums with a stale block.
    """
    block = buffer.transition_block()
    index = {
        "format_version": CACHE_FORMAT_VERSION,
        "source_checksums": checksums,
        "rows": int(block.shape[0]),
        "width": int(block.shape[1]),
        "obs_dim": buffer.obs_dim,
        "discrete_actions": bool(buffer.actions.ndim == 1),
        "episode_starts": buffer.episode_starts.tolist(),
        "behaviour_steps": buffer.behaviour_steps.tolist(),
        "trial_index": buffer.trial_index.tolist(),
        "episode_in_trial": buffer.episode_in_trial.tolist(),
    }
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp_block, tmp_index = folder / f".{CACHE_NAME}.{tag}.npy", folder / f".{CACHE_INDEX}.{tag}"
    try:
        np.save(tmp_block, block, allow_pickle=False)
        tmp_index.write_text(json.dumps(index))
        os.replace(tmp_block, folder / CACHE_NAME)
        os.replace(tmp_index, folder / CACHE_INDEX)
    except OSError as err:  # a read-only data folder still loads, just without the speed-up
        warnings.warn(f"could not write the packed cache in {folder}: {err}", RuntimeWarning, stacklevel=3)
        tmp_block.unlink(missing_ok=True)
        tmp_index.unlink(missing_ok=True)


def _read_cache(
    folder: Path, checksums: list[list[Any]], block: dict[str, Any], source: str, memory_map: bool = False
) -> TaskBuffer | None:
    """The cached buffer if the cache matches the source files' contents and counts, else ``None``."""
    try:
        index = json.loads((folder / CACHE_INDEX).read_text())
        if index.get("format_version") != CACHE_FORMAT_VERSION or index.get("source_checksums") != checksums:
            return None
        if index["rows"] != block["total_steps"] or len(index["episode_starts"]) != block["num_episodes"] + 1:
            return None  # rebuilt from the source, whose reader reports the mismatch
        data = np.load(folder / CACHE_NAME, allow_pickle=False, mmap_mode="r" if memory_map else None)
        if data.dtype != np.float32 or data.shape != (index["rows"], index["width"]):
            return None
        return TaskBuffer.from_block(
            data if memory_map else np.ascontiguousarray(data),
            obs_dim=index["obs_dim"],
            discrete_actions=index["discrete_actions"],
            episode_starts=np.asarray(index["episode_starts"], dtype=np.int64),
            behaviour_steps=np.asarray(index["behaviour_steps"], dtype=np.int64),
            trial_index=np.asarray(index["trial_index"], dtype=np.int64),
            episode_in_trial=np.asarray(index["episode_in_trial"], dtype=np.int64),
            task=block["task"],
            task_index=block["task_index"],
            family=block["family"],
            source=source,
        )
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None  # a missing or broken cache is rebuilt from the source, never trusted
