"""A paper-scale dataset, larger than it is comfortable to hold in RAM, sampled from memory-mapped packed caches.

Writes (once; reused when present) a synthetic Cheetah-Vel-shaped set: ``--tasks`` x ``--transitions`` rows of
the packed-cache layout (obs 20, action 6: 49 float32 columns, 200-step episodes), by default 40 x 2.5M, the
paper's size (19.6 GB). Each task's block is memory-mapped as ``load_task_buffers(..., memory_map=True)`` maps a
``packed.npy`` and turned into a ``TaskBuffer`` with ``TaskBuffer.from_block`` (the same call the loader makes);
MACAW's TaskBatches (K=5, 256 support + 256 query) are drawn by the datamodule's ``TaskBatchDataset``, then
``--train_steps`` MACAW meta-updates run on freshly drawn batches.

Prints ``name: value unit`` lines: the data size, setup time, sampling time per TaskBatch (median and 90th
percentile), and the resident memory after setup, after sampling and after training: ``rss`` (all resident
pages), ``rss_anon`` (the process's own memory) and ``rss_file`` (pages of the mapped files, which the OS can
drop at any time), plus the peak (``VmHWM``).

Usage::

    python benchmarks/memory_mapped_sampling.py [--dir /tmp/paper_scale] [--tasks 40] [--transitions 2500000]
        [--draws 500] [--train_steps 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lit_offmeta.algorithms import MACAW
from lit_offmeta.data.buffer import TaskBuffer, block_columns
from lit_offmeta.datamodules.offline_meta import TaskBatchDataset

sys.path.insert(0, str(Path(__file__).parent))
from meta_update_throughput import meta_update  # noqa: E402

OBS, ACT, HORIZON = 20, 6, 200
CHUNK_ROWS = 262_144


def memory_mb() -> dict[str, float]:
    """VmRSS, RssAnon, RssFile and VmHWM of this process, in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def write_synthetic(path: Path, rows: int, seed: int) -> None:
    """One task's block: random observations and actions, 200-step episodes cut by the time limit."""
    cols = block_columns(OBS, ACT)
    width = cols["truncations"].stop
    tmp = path.with_suffix(".tmp.npy")
    block = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, width))
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((CHUNK_ROWS, width), dtype=np.float32)
    base[:, cols["actions"]] = np.tanh(base[:, cols["actions"]])
    base[:, cols["terminals"]] = 0.0
    for start in range(0, rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, rows - start)
        part = base[:n].copy()
        part[:, 0] += np.float32(start % 1000)  # rows differ from chunk to chunk
        steps = np.arange(start, start + n)
        part[:, cols["truncations"].start] = ((steps + 1) % HORIZON == 0).astype(np.float32)
        block[start:start + n] = part
    block.flush()
    del block
    tmp.rename(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="/tmp/paper_scale_cheetah_vel")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--transitions", type=int, default=2_500_000, help="per task (a multiple of 200)")
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--train_steps", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    rows = args.transitions - args.transitions % HORIZON
    started = time.perf_counter()
    for i in range(args.tasks):
        path = root / f"task_{i:04d}.npy"
        if not path.exists() or np.load(path, mmap_mode="r").shape[0] != rows:
            write_synthetic(path, rows, seed=i)
    print(f"data/size: {sum((root / f'task_{i:04d}.npy').stat().st_size for i in range(args.tasks)) / 1e9:.2f} GB")
    print(f"data/write_or_check_seconds: {time.perf_counter() - started:.1f} s", flush=True)

    started = time.perf_counter()
    starts = np.arange(0, rows + 1, HORIZON, dtype=np.int64)
    buffers = [
        TaskBuffer.from_block(np.load(root / f"task_{i:04d}.npy", mmap_mode="r", allow_pickle=False), obs_dim=OBS,
                              discrete_actions=False, episode_starts=starts,
                              behaviour_steps=starts[:-1].copy(), task={"velocity": 0.075 * (i + 1)}, task_index=i,
                              family="cheetah_vel", source=str(root / f"task_{i:04d}.npy"))
        for i in range(args.tasks)
    ]
    dataset = TaskBatchDataset(buffers, "train", tasks_per_batch=5, support_size=256, query_size=256, gamma=0.99)
    print(f"setup/seconds: {time.perf_counter() - started:.1f} s", flush=True)
    for key, value in memory_mb().items():
        print(f"setup/{key}: {value:.0f} MB")

    dataset[0]  # warm-up
    times = []
    for key in range(1, args.draws + 1):
        t = time.perf_counter()
        dataset[key]
        times.append(time.perf_counter() - t)
    print(f"sample/task_batch_median: {1e3 * np.median(times):.3f} ms")
    print(f"sample/task_batch_p90: {1e3 * np.quantile(times, 0.9):.3f} ms")
    for key, value in memory_mb().items():
        print(f"sample/{key}: {value:.0f} MB", flush=True)

    model = MACAW(obs_dim=OBS, action_dim=ACT)
    optimizer = model.configure_optimizers()
    started = time.perf_counter()
    for step in range(args.train_steps):
        meta_update(model, optimizer, dataset[10_000 + step])
    print(f"train/meta_updates_per_s: {args.train_steps / (time.perf_counter() - started):.2f} updates/s")
    for key, value in memory_mb().items():
        print(f"train/{key}: {value:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
