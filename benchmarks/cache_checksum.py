"""What validating the packed cache by content costs: ``source_checksums`` (size + CRC-32 of a task's source
files) against reading the packed block it guards. Prints ``name: value unit`` lines.

Usage::

    nice -n 10 .venv/bin/python benchmarks/cache_checksum.py                     # a 2.5M-step Cheetah-Vel task
    nice -n 10 .venv/bin/python benchmarks/cache_checksum.py --transitions 100000

The source file stands in for ``main_data.hdf5`` at the size Minari writes for Cheetah-Vel (float32 obs [T+1, 20],
actions [T, 6], rewards, terminations, truncations: about 116 bytes a step); the packed block is the cache's
``[N, 2 * 20 + 6 + 3]`` float32. Both are read warm (page cache), best of three, as a repeated load reads them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from lit_offmeta.data.storage import source_checksums

OBS_DIM, ACTION_DIM = 20, 6


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=2_500_000)
    args = parser.parse_args()
    n = args.transitions
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "main_data.hdf5"
        source_bytes = n * (OBS_DIM + ACTION_DIM + 1) * 4 + n * 2  # float32 fields + two bool flags
        with open(source, "wb") as f:
            for offset in range(0, source_bytes, 1 << 26):
                f.write(rng.bytes(min(1 << 26, source_bytes - offset)))
        block = Path(tmp) / "packed.npy"
        np.save(block, rng.standard_normal((n, 2 * OBS_DIM + ACTION_DIM + 3), dtype=np.float32))
        checksum = best_of(lambda: source_checksums(source))
        load = best_of(lambda: np.load(block, allow_pickle=False))
    print(f"source_mb: {source_bytes / 1e6:.1f} MB")
    print(f"checksum_seconds: {checksum:.3f} s")
    print(f"checksum_throughput: {source_bytes / checksum / 1e9:.2f} GB/s")
    print(f"packed_load_seconds: {load:.3f} s")
    print(f"checksum_over_load: {checksum / load:.2f} x")


if __name__ == "__main__":
    main()
