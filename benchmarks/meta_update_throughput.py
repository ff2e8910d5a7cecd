"""Meta-update throughput of MACAW at the reference's Cheetah-Vel shapes.

obs 20, action 6, width 100, depth 3, weight-transform latent 100, K=5 tasks, 256 support + 256 query
transitions per task, 1 inner step, second-order meta-gradients; one meta-update = Algorithm 1, lines 6-10
(inner value and policy steps, outer losses, backward, three Adam steps), exactly ``MACAW.training_step``.

Usage::

    python benchmarks/meta_update_throughput.py [--mode closed_form|vmap|loop] [--updates 30] [--device cpu]
        [--threads N] [--first_order] [--layer weight_transform|bias_transform|linear] [--phases] [--count_ops]

Prints the parameter counts, peak memory (CUDA: max allocated; CPU: max RSS of the process) and, last,
``meta_updates_per_s: X``.

``--phases`` instead times the phases of ``training_step`` outside Lightning (CPU time of this process, ms per
meta-update): inner value step, inner policy step, outer losses, backward, Adam step, slow-target update.
``--count_ops`` instead counts the aten operations and the matrix-product FLOPs of one meta-update (forward,
double backward, Adam).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import resource
import time

import torch
from lightning.pytorch import Callback, Trainer
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, IterableDataset
from torch.utils.flop_counter import FlopCounterMode

from lit_offmeta.algorithms import MACAW
from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.meta import InnerLoopConfig
from lit_offmeta.nn import NetConfig, num_parameters


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


class _OpCounter(TorchDispatchMode):
    """Counts every aten operation dispatched while active (autograd's backward ones included)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def meta_update(model: MACAW, optimizer: torch.optim.Optimizer, batch: TaskBatch, tick=lambda name: None) -> None:
    """The calls of ``MACAW.training_step`` outside Lightning; ``tick(phase)`` is called after each phase."""
    inner = model.inner
    value_trajectory, _ = model.adapt_value(batch.support, inner.steps, inner.first_order)
    tick("inner_value")
    policy_weights, _ = model.adapt_policy(batch.support, value_trajectory, inner.steps, inner.first_order)
    tick("inner_policy")
    loss_value, loss_policy, _ = model.outer_losses(policy_weights, value_trajectory[-1], batch.query)
    tick("outer_losses")
    optimizer.zero_grad()
    (loss_value + loss_policy).backward()
    tick("backward")
    optimizer.step()
    tick("adam")
    model.update_value_target()
    tick("target_update")


def time_phases(model: MACAW, batches: list[TaskBatch], warmup: int, updates: int) -> dict[str, float]:
    """CPU ms per meta-update of each phase of ``MACAW.training_step`` (same calls, timed one by one)."""
    optimizer = model.configure_optimizers()
    totals: dict[str, float] = {}
    clock = time.process_time()

    def tick(name: str) -> None:
        nonlocal clock
        now = time.process_time()
        totals[name] = totals.get(name, 0.0) + now - clock
        clock = now

    for i in range(warmup + updates):
        if i == warmup:
            totals.clear()
        clock = time.process_time()
        meta_update(model, optimizer, batches[i % len(batches)], tick)
    return {name: 1e3 * t / updates for name, t in totals.items()}


def count_ops(model: MACAW, batches: list[TaskBatch]) -> int:
    """The aten operations of one meta-update after one warm-up update; prints the most frequent ones and the
    matrix-product FLOPs."""
    optimizer = model.configure_optimizers()
    meta_update(model, optimizer, batches[0])
    with _OpCounter() as counter, FlopCounterMode(display=False) as flops:
        meta_update(model, optimizer, batches[1])
    print("most frequent:", ", ".join(f"{name} {n}" for name, n in counter.counts.most_common(8)))
    by_op = {str(k): round(v / 1e9, 3) for k, v in flops.get_flop_counts()["Global"].items()}
    print(f"matrix-product GFLOP per update: {flops.get_total_flops() / 1e9:.3f} {by_op}")
    return sum(counter.counts.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="closed_form", choices=["closed_form", "vmap", "loop"])
    parser.add_argument("--updates", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave default)")
    parser.add_argument("--first_order", action="store_true")
    parser.add_argument("--phases", action="store_true", help="time the phases of one meta-update (CPU ms)")
    parser.add_argument("--count_ops", action="store_true", help="count the aten operations of one meta-update")
    parser.add_argument("--layer", default="weight_transform", choices=["weight_transform", "bias_transform", "linear"],
                        help="layer type (linear: what the same update costs without generators)")
    args = parser.parse_args()
    if args.phases and args.device != "cpu":
        parser.error("--phases measures CPU time; use it with --device cpu")

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MACAW(obs_dim=20, action_dim=6, net=NetConfig(width=100, depth=3, latent_size=100, layer=args.layer),
                  inner=InnerLoopConfig(steps=1, first_order=args.first_order, mode=args.mode))
    batches = [random_batch(5, 256, 256, 20, 6, args.device) for _ in range(4)]
    print(f"policy parameters: {num_parameters(model.policy):,}; value parameters: {num_parameters(model.value):,}")
    if args.count_ops:
        print(f"aten_ops_per_update: {count_ops(model, batches)}")
        return
    if args.phases:
        phases = time_phases(model, batches, args.warmup, args.updates)
        print(" ".join(f"{k}: {v:.1f}" for k, v in phases.items()), f"total: {sum(phases.values()):.1f} (CPU ms)")
        return
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
