"""The engine of ``lit-offmeta collect``: choose tasks, skip finished ones, run agents, write datasets.

Every task's dataset is written through :func:`lit_offmeta.data.storage.write_task_dataset`, which writes to a
temporary name and renames, so a killed run never leaves a half dataset that later loads. A rerun with the same
``--out`` skips the tasks whose datasets exist (resumability). A small manifest in ``DIR`` records the settings
of each family's collection so that a rerun cannot silently mix data from different settings.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from lit_offmeta.collect.distributed import Ranks
from lit_offmeta.collect.episodes import Episode, early_late_returns
from lit_offmeta.collect.lifetime import make_lifetime_agent, run_lifetime
from lit_offmeta.collect.presets import CollectConfig, get_preset
from lit_offmeta.collect.sac_collect import collect_sac
from lit_offmeta.data import storage
from lit_offmeta.data.storage import COLLECT_MANIFEST
from lit_offmeta.tasks import TaskFamily, get_family

MANIFEST_NAME = COLLECT_MANIFEST
"""File in the output directory: family name -> the settings its datasets were collected with."""
SAC_CHECKPOINT_NAME = ".sac-checkpoint"
"""Folder under ``DIR/<family>/`` holding the SAC collector's mid-run checkpoint (hidden: never loaded)."""


@dataclass
class CollectSummary:
    """What one ``collect`` call did.

    Attributes:
        written: task index -> path of each dataset written by this call.
        skipped: task indices whose datasets already existed.
        early_late: task index -> (mean return of the first 10% of episodes, of the last 10%).
        seconds: wall-clock time of the call.
    """

    written: dict[int, Path] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    early_late: dict[int, tuple[float, float]] = field(default_factory=dict)
    seconds: float = 0.0


def task_seed(seed: int, task_index: int) -> int:
    """An independent 32-bit seed per (run seed, task), stable across runs and task subsets."""
    return int(np.random.SeedSequence([seed, task_index]).generate_state(1)[0])


def resolve_tasks(family: TaskFamily, config: CollectConfig, task_indices: Sequence[int] | None) -> list[int]:
    """The task indices to collect: ``task_indices`` if given (checked), else ``range(config.num_tasks)``."""
    num_default = len(family.default_tasks())
    if task_indices is None:
        if config.num_tasks > num_default:
            raise ValueError(
                f"collect: num_tasks={config.num_tasks} but family {family.name!r} has only {num_default} "
                f"default tasks"
            )
        return list(range(config.num_tasks))
    indices = [int(i) for i in task_indices]
    bad = [i for i in indices if not 0 <= i < num_default]
    if bad:
        raise ValueError(
            f"--tasks: indices {bad} are outside the {num_default} default tasks of {family.name!r} "
            f"(valid: 0..{num_default - 1})"
        )
    if len(set(indices)) != len(indices):
        raise ValueError(f"--tasks: duplicate task indices in {indices}")
    return sorted(indices)


def _read_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST_NAME
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(
            f"--out: {path} is not a valid collect manifest ({err}); remove it or use a new --out"
        ) from None
    if not isinstance(manifest, dict):
        raise ValueError(f"--out: {path} is not a valid collect manifest (expected a JSON object)")
    return manifest


def collect_arguments(config: CollectConfig, seed: int) -> str | None:
    """The ``lit-offmeta collect`` arguments (all but ``--out``) that reproduce ``config`` and ``seed``: the
    preset, a ``--set`` for each setting that differs from it, the seed. ``None`` if a value cannot be written
    as a ``--set`` that reads back equal. The manifest keeps them, so error messages can repeat them."""
    try:
        defaults = json.loads(json.dumps(get_preset(config.family, config.preset).to_dict()))
    except ValueError:  # a preset collect does not know (a config built in Python): no command repeats it
        return None
    recorded = json.loads(json.dumps(config.to_dict()))
    parts = [f"--family {config.family} --preset {config.preset}"]
    for key, value in sorted(recorded.items()):
        if key in ("family", "preset") or defaults.get(key) == value:
            continue
        # collect parses a --set value as YAML, so dump YAML: JSON's 1e-05 would read back as a string.
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip().removesuffix("...").strip()
        if yaml.safe_load(text) != value:
            return None
        parts.append(f"--set {shlex.quote(f'{key}={text}')}")
    parts.append(f"--seed {seed}")
    return " ".join(parts)


def prepare_output(out: Path, config: CollectConfig, seed: int) -> None:
    """Create ``out`` or check that it holds collect output made with the same settings.

    Raises:
        ValueError: ``out`` is a file, a non-empty directory that is not collect output, or holds data of
            this family collected with other settings (mixing them would corrupt the buffers' meaning).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a directory")
    settings = {"config": config.to_dict(), "seed": seed}
    manifest = _read_manifest(out) if out.exists() else {}
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST_NAME).exists():
        raise ValueError(
            f"--out: {out} is a non-empty directory that was not written by `lit-offmeta collect` "
            f"(no {MANIFEST_NAME}); choose an empty or new directory"
        )
    previous = manifest.get(config.family)
    if previous is not None and {k: previous.get(k) for k in settings} != json.loads(json.dumps(settings)):
        raise ValueError(
            f"--out: {out} already holds {config.family!r} data collected with other settings "
            f"({previous}); resuming needs the same preset, settings and --seed, or use a new --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    manifest[config.family] = {**settings, "arguments": collect_arguments(config, seed)}
    storage.write_json_atomic(out / MANIFEST_NAME, manifest, indent=2, sort_keys=True)


def dataset_metadata(config: CollectConfig, seed: int, task_index: int, episodes: list[Episode]) -> dict[str, Any]:
    """Per-dataset metadata: how the data was made, and the early/late returns that show learning."""
    early, late = early_late_returns(episodes)
    return {
        "behaviour_agent": config.agent,
        "collect_preset": config.preset,
        "collect_config": config.to_dict(),
        "collect_seed": seed,
        "task_seed": task_seed(seed, task_index),
        "num_episodes": len(episodes),
        "num_steps": int(sum(len(ep["rewards"]) for ep in episodes)),
        "return_first_10pct": early,
        "return_last_10pct": late,
    }


def collect(
    config: CollectConfig,
    out: str | Path,
    seed: int = 0,
    task_indices: Sequence[int] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    ranks: Ranks = Ranks(),
) -> CollectSummary:
    """Collect one offline dataset per task of ``config.family`` into ``out``; resumable.

    Args:
        config: the preset (possibly with overrides).
        out: dataset root directory (created if missing).
        seed: run seed; each task's agent gets ``task_seed(seed, task_index)``.
        task_indices: indices into ``family.default_tasks()``; default ``range(config.num_tasks)``.
        progress: show tqdm progress bars.
        log: where one-line status messages go (``None``: silent).
        ranks: this process's share when several collect together (:mod:`lit_offmeta.collect.distributed`);
            every rank makes the same call.

    Returns:
        A :class:`CollectSummary` of this rank's work.

    Raises:
        ValueError: bad task indices, an unusable output directory, or settings that do not fit the family.
    """
    started = time.perf_counter()
    family = get_family(config.family)
    indices = resolve_tasks(family, config, task_indices)
    # Absolute: Minari resolves a relative MINARI_DATASETS_PATH against the wrong folder while writing.
    out = Path(out).expanduser().resolve()
    say = log or (lambda _msg: None)
    if ranks.rank == 0:
        prepare_output(out, config, seed)
        for stale in storage.remove_stale_temporaries(out, family.name):
            say(f"collect: removed {stale}, an unfinished write of a killed run")
    ranks.barrier()
    finished = storage.list_task_datasets(out, family.name)
    summary = CollectSummary(skipped=[i for i in indices if i in finished])
    todo = [i for i in indices if i not in finished]
    mine = ranks.share(todo)
    if config.agent == "sac" and ranks.world_size > 1 and config.learn_steps_per_task < 1:
        raise ValueError("collect: several processes share the SAC agent's work only when it learns apart from "
                         "recording; set learn_steps_per_task > 0 and num_snapshots >= 2 (as the medium presets do)")
    if summary.skipped:
        say(f"collect: {len(summary.skipped)} task(s) already collected in {out}, skipping {summary.skipped}")
    tasks = family.default_tasks()

    def write(task_index: int, episodes: list[Episode]) -> None:
        metadata = dataset_metadata(config, seed, task_index, episodes)
        path = storage.write_task_dataset(out, family.name, task_index, tasks[task_index], episodes, metadata)
        summary.written[task_index] = Path(path)
        summary.early_late[task_index] = (metadata["return_first_10pct"], metadata["return_last_10pct"])

    if config.agent == "sac":
        checkpoint_dir = out / family.name / SAC_CHECKPOINT_NAME
        if todo and ranks.rank == 0:  # rank 0 learns for every task, then records its own share
            collect_sac(family, config, {i: tasks[i] for i in todo}, seed, write, progress=progress,
                        checkpoint_dir=checkpoint_dir, already_written=set(finished), log=say,
                        record_only=set(mine), after_learning=ranks.barrier)
        elif todo:  # the other ranks record theirs from rank 0's snapshots
            ranks.barrier()
            if mine:
                collect_sac(family, config, {i: tasks[i] for i in mine}, seed, write, progress=False,
                            checkpoint_dir=checkpoint_dir, already_written=set(finished), log=say)
    else:
        outer = tqdm(mine, desc=f"{family.name} tasks", unit="task", disable=not progress)
        for task_index in outer:
            rng = np.random.default_rng(task_seed(seed, task_index))
            agent = make_lifetime_agent(config, family, tasks[task_index], rng)
            bar = tqdm(total=config.episodes_per_task, desc=f"task {task_index}", unit="ep", leave=False,
                       disable=not progress)
            episodes = run_lifetime(
                family, tasks[task_index], agent, config.episodes_per_task, config.episodes_per_trial,
                config.env_kwargs, seed=task_seed(seed, task_index), on_episode=lambda _i, _ep, bar=bar: bar.update(1),
            )
            bar.close()
            write(task_index, episodes)
            early, late = summary.early_late[task_index]
            outer.set_postfix(first10=f"{early:.2f}", last10=f"{late:.2f}")
    ranks.barrier()
    summary.seconds = time.perf_counter() - started
    if summary.written:
        early = np.mean([e for e, _ in summary.early_late.values()])
        late = np.mean([lt for _, lt in summary.early_late.values()])
        say(
            f"collect: wrote {len(summary.written)} {family.name} dataset(s) to {out} in {summary.seconds:.1f} s; "
            f"mean return first 10% of episodes {early:.3f}, last 10% {late:.3f}"
        )
    return summary
