"""Collection presets: wall-clock time and the quality of the recorded buffers.

Runs ``lit-offmeta collect`` for each requested (family, preset) into a fresh directory (or an existing one
with ``--out``; finished tasks are then only measured), then prints ``name: value unit`` lines:

* ``collect/<family>/<preset>/seconds``: wall-clock time of the collection;
* ``.../return_first_10pct`` and ``.../return_last_10pct``: mean undiscounted episode return over the first and
  the last 10% of each task's episodes, averaged over tasks (late above early: the data shows learning);
* for velocity-tracking families (Cheetah-Vel): ``.../velocity_error_first_10pct`` / ``_last_10pct``, the
  mean per-step |v_x - v_goal| over those episodes.

Examples::

    python benchmarks/collect_presets.py point_robot:small grid_navi:small
    nice -n 10 python benchmarks/collect_presets.py cheetah_vel:small --out data/
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from lit_offmeta.collect.presets import get_preset
from lit_offmeta.collect.runner import collect
from lit_offmeta.data.storage import load_task_buffers
from lit_offmeta.tasks import get_family


def buffer_quality(family_name: str, root: Path, task_indices: list[int], fraction: float = 0.1) -> dict[str, float]:
    """Early/late returns (and velocity errors where the task has a target velocity), averaged over tasks."""
    family = get_family(family_name)
    early_r, late_r, early_v, late_v = [], [], [], []
    for buffer in load_task_buffers(root, family_name, task_indices):
        starts = np.asarray(buffer.episode_starts)
        n_ep = len(starts) - 1
        n = max(1, int(round(fraction * n_ep)))
        returns = buffer.episode_returns()
        early_r.append(returns[:n].mean())
        late_r.append(returns[-n:].mean())
        if "velocity" in buffer.task and hasattr(family, "forward_velocity"):
            error = np.abs(family.forward_velocity(buffer.obs, buffer.next_obs) - buffer.task["velocity"])
            early_v.append(error[: starts[n]].mean())
            late_v.append(error[starts[n_ep - n]:].mean())
    result = {"return_first_10pct": float(np.mean(early_r)), "return_last_10pct": float(np.mean(late_r))}
    if early_v:
        result["velocity_error_first_10pct"] = float(np.mean(early_v))
        result["velocity_error_last_10pct"] = float(np.mean(late_v))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="family:preset pairs, e.g. point_robot:small")
    parser.add_argument("--out", help="data root to (re)use; default: a temporary directory per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args()
    for run in args.runs:
        family, _, preset = run.partition(":")
        config = get_preset(family, preset or "small")
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(args.out or tmp)
            started = time.perf_counter()
            summary = collect(config, root, seed=args.seed, progress=args.progress, log=print)
            seconds = time.perf_counter() - started
            prefix = f"collect/{family}/{config.preset}"
            print(f"{prefix}/seconds: {seconds:.1f} s", flush=True)
            print(f"{prefix}/tasks_written: {len(summary.written)} tasks", flush=True)
            indices = sorted(summary.written) + sorted(summary.skipped)
            for name, value in buffer_quality(family, root, indices).items():
                unit = "m/s" if name.startswith("velocity") else "return"
                print(f"{prefix}/{name}: {value:.3f} {unit}", flush=True)


if __name__ == "__main__":
    main()
