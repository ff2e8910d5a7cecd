"""Time of one BOReL VAE update on 2-episode Cheetah-Vel trials, full ELBO against the subsampled one, side by side.
Prints ``name: value unit`` lines.

Usage (one core, as the Cheetah-Vel config trains)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/borel_vae_step.py

Batches have the config's shape: 4 tasks x 8 trials of 2 x 200 steps (time-major ``[400, 32, ...]``), random values
of Cheetah-Vel's sizes (obs 20, action 6). The full ELBO decodes every transition from every belief (401 x 400 pairs
per trial); ``--subsample 50`` decodes 50 transitions from 50 beliefs (``vae.elbo_subsample`` /
``vae.decode_subsample``).
"""

from __future__ import annotations

import argparse
import time

import torch

from lit_offmeta.algorithms.borel.vae import BeliefVAE

STEPS, TRIALS, OBS_DIM, ACTION_DIM = 400, 32, 20, 6


def seconds_per_update(subsample: int | None, repeats: int) -> float:
    g = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randn(STEPS, TRIALS, OBS_DIM, generator=g),
             "next_obs": torch.randn(STEPS, TRIALS, OBS_DIM, generator=g),
             "actions": torch.rand(STEPS, TRIALS, ACTION_DIM, generator=g) * 2 - 1,
             "rewards": torch.randn(STEPS, TRIALS, generator=g), "valid": torch.ones(STEPS, TRIALS, dtype=torch.bool)}
    vae = BeliefVAE("cheetah_vel", decoder="transition", elbo_subsample=subsample, decode_subsample=subsample)
    optimizer = vae.configure_optimizers()

    def update() -> None:
        loss, _ = vae.compute_loss(batch, subsample=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    update()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        update()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subsample", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    full = seconds_per_update(None, max(1, args.repeats // 3))
    sub = seconds_per_update(args.subsample, args.repeats * 5)
    print(f"borel/vae_update_full_elbo: {full:.3f} s")
    print(f"borel/vae_update_subsampled_{args.subsample}: {sub:.3f} s")
    print(f"borel/vae_update_speedup: {full / sub:.1f} x")


if __name__ == "__main__":
    main()
