"""Data-path throughput: TaskBatch sampling, dataset writing and loading. Prints ``name: value unit`` lines.

Usage (small machine: keep it niced)::

    nice -n 10 .venv/bin/python benchmarks/sample_task_batch.py                 # sampling only, in memory
    nice -n 10 .venv/bin/python benchmarks/sample_task_batch.py --disk --tasks 40 --transitions 100000

Sampling uses Cheetah-Vel sizes (obs 20, action 6) and MACAW's batch (K=5, B_in=B_out=256). ``--disk`` also
writes ``--tasks`` Minari datasets of ``--transitions`` steps (horizon 200) to a temporary folder and times
writing, one cold read through Minari (no cache), loading every task through the packed cache, and
``OfflineMetaDataModule.setup``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from unittest import mock

import numpy as np

from lit_offmeta.data.buffer import TaskBuffer
from lit_offmeta.data.synthetic import synthetic_episodes
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule, TaskBatchDataset

OBS_DIM, ACTION_DIM, HORIZON = 20, 6, 200


def _episodes(task: int, transitions: int) -> list[dict]:
    return synthetic_episodes(task, transitions // HORIZON, HORIZON, OBS_DIM, ACTION_DIM, seed=task)


def bench_sampling(num_tasks: int, transitions: int, repeats: int) -> None:
    buffers = [TaskBuffer.from_episodes(_episodes(i, transitions), {}, i, "bench") for i in range(num_tasks)]
    dataset = TaskBatchDataset(
        buffers, "train", tasks_per_batch=5, support_size=256, query_size=256, gamma=0.99
    )
    for key in range(20):  # warm-up
        dataset[key]
    times = []
    for key in range(repeats):
        start = time.perf_counter()
        dataset[key]
        times.append(time.perf_counter() - start)
    times_ms = np.asarray(times) * 1e3
    print(f"sample_task_batch_median: {np.median(times_ms):.3f} ms")
    print(f"sample_task_batch_p90: {np.percentile(times_ms, 90):.3f} ms")
    print(f"sample_task_batch_setup: {num_tasks} tasks x {transitions} transitions, K=5, B_in=B_out=256")


def bench_disk(num_tasks: int, transitions: int) -> None:
    from lit_offmeta.data import storage
    from lit_offmeta.tasks import get_family

    root = tempfile.mkdtemp(prefix="lit_offmeta_bench_")
    # Any registered family works for storage; point_robot's spaces are swapped for Cheetah-Vel sizes.
    import gymnasium as gym

    family = get_family("point_robot")
    obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
    patches = [
        mock.patch.object(type(family), "observation_space", property(lambda self: obs_space)),
        mock.patch.object(type(family), "action_space", property(lambda self: act_space)),
    ]
    try:
        for p in patches:
            p.start()
        tasks = family.default_tasks()
        start = time.perf_counter()
        for i in range(num_tasks):
            storage.write_task_dataset(root, family.name, i, tasks[i], _episodes(i, transitions))
        write_s = time.perf_counter() - start
        print(f"write_task_dataset: {write_s / num_tasks:.2f} s/task ({transitions} transitions)")

        start = time.perf_counter()
        storage.load_task_buffers(root, family.name, [0], use_cache=False)
        cold = time.perf_counter() - start
        print(f"load_minari_uncached: {transitions / cold / 1e3:.0f} k transitions/s")

        start = time.perf_counter()
        storage.load_task_buffers(root, family.name)
        print(f"load_cached_all_tasks: {time.perf_counter() - start:.2f} s ({num_tasks} x {transitions})")

        n_test = max(1, num_tasks // 8)
        start = time.perf_counter()
        dm = OfflineMetaDataModule(
            family.name,
            root,
            train_ids=list(range(num_tasks - n_test)),
            test_ids=list(range(num_tasks - n_test, num_tasks)),
        )
        dm.setup("fit")
        print(f"datamodule_setup: {time.perf_counter() - start:.2f} s ({num_tasks} x {transitions})")
    finally:
        for p in patches:
            p.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--disk", action="store_true", help="also time writing and loading datasets")
    args = parser.parse_args()
    import torch

    print(f"torch_threads: {torch.get_num_threads()} threads")
    bench_sampling(args.tasks, args.transitions, args.repeats)
    if args.disk:
        bench_disk(args.tasks, args.transitions)
    print(f"config: {json.dumps(vars(args))}")


if __name__ == "__main__":
    main()
