"""Meta-update throughput of MACAW at the reference's Cheetah-Vel shapes.

obs 20, action 6, width 100, depth 3, weight-transform latent 100, K=5 tasks, 256 support + 256 query
transitions per task, 1 inner step, second-order meta-gradients; one meta-update = Algorithm 1, lines 6-10
(inner value and policy steps, outer losses, backward, three Adam steps), exactly ``MACAW.training_step``.

Usage::

    python benchmarks/meta_update_throughput.py [--mode closed_form|vmap|loop] [--updates 30] [--device cpu]

Prints the parameter counts, peak memory (CUDA: max allocated; CPU: max RSS of the process) and, last,
``meta_updates_per_s: X``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import time

import torch
from lightning.pytorch import Callback, Trainer
from torch.utils.data import DataLoader, IterableDataset

from lit_offmeta.algorithms import MACAW
from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.nn import num_parameters


def random_batch(k: int, b_in: int, b_out: int, obs_dim: int, act_dim: int, device: str) -> TaskBatch:
    def part(b: int) -> dict[str, torch.Tensor]:
        return {
            "obs": torch.randn(k, b, obs_dim), "actions": torch.rand(k, b, act_dim) * 2 - 1,
            "rewards": torch.randn(k, b), "next_obs": torch.randn(k, b, obs_dim), "terminals": torch.zeros(k, b),
            "mc_returns": torch.randn(k, b) * 10, "bootstrap_obs": torch.randn(k, b, obs_dim),
            "bootstrap_discounts": torch.rand(k, b) * 0.5,
        }
    return TaskBatch(part(b_in), part(b_out), torch.arange(k)).to(device)


class _Cycle(IterableDataset):
    def __init__(self, batches: list[TaskBatch]) -> None:
        self.batches = batches

    def __iter__(self):
        return itertools.cycle(self.batches)


class _Timer(Callback):
    """Wall time from the end of the warm-up updates to the end of the last one."""

    def __init__(self, warmup: int, cuda: bool) -> None:
        self.warmup, self.cuda, self.start, self.elapsed = warmup, cuda, 0.0, 0.0
        self.cpu_start, self.cpu_elapsed = 0.0, 0.0

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync()
        if batch_idx + 1 == self.warmup:
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
            self.start, self.cpu_start = time.perf_counter(), time.process_time()
        self.elapsed = time.perf_counter() - self.start
        self.cpu_elapsed = time.process_time() - self.cpu_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="closed_form", choices=["closed_form", "vmap", "loop"])
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave default)")
    parser.add_argument("--first_order", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MACAW(obs_dim=20, action_dim=6, width=100, depth=3, latent_size=100, inner_steps=1,
                  first_order=args.first_order, adaptation_mode=args.mode)
    batches = [random_batch(5, 256, 256, 20, 6, args.device) for _ in range(4)]
    print(f"policy parameters: {num_parameters(model.policy):,}; value parameters: {num_parameters(model.value):,}")
    timer = _Timer(args.warmup, args.device.startswith("cuda"))
    # The real fit loop, so each meta-update is exactly MACAW.training_step with Lightning's manual optimisation.
    trainer = Trainer(accelerator="gpu" if args.device.startswith("cuda") else "cpu", devices=1,
                      max_steps=args.warmup + args.updates, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    trainer.fit(model, DataLoader(_Cycle(batches), batch_size=None, collate_fn=lambda b: b))
    elapsed = timer.elapsed
    if args.device.startswith("cuda"):
        print(f"peak_gpu_memory_mib: {torch.cuda.max_memory_allocated() / 2**20:.0f}")
    print(f"peak_rss_mib: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")
    print(f"mode: {args.mode}; device: {args.device}; threads: {torch.get_num_threads()}; updates: {args.updates}")
    # On a shared machine wall time depends on the other processes; CPU time of this process (all its threads)
    # is what one update costs, so with --threads 1 updates / cpu_s estimates the rate on an idle core.
    print(f"cpu_s_per_update: {timer.cpu_elapsed / args.updates:.4f}; load average: {os.getloadavg()[0]:.2f}")
    print(f"meta_updates_per_cpu_s: {args.updates / timer.cpu_elapsed:.2f}")
    print(f"meta_updates_per_s: {args.updates / elapsed:.2f}")


if __name__ == "__main__":
    main()
