"""Behaviour-data throughput: SAC updates per second, and transitions per second recorded from actor snapshots.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/collect_throughput.py [--family cheetah_vel] [--tasks 40]
        [--steps_per_task 2000] [--updates 300]

Prints ``sac_updates_per_s_<hidden>_<threads>t: X updates/s`` for the ``small`` (128x128) and ``paper``
(256x256) behaviour SAC, batch 256, with 1 and 2 threads, then ``recorded_transitions_per_s: X transitions/s``
for :func:`lit_offmeta.collect.recorder.record_snapshots` on ``--tasks`` tasks of ``--family`` (two snapshots of
an untrained 128x128 actor; recording costs the same whatever the weights), one thread.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lit_offmeta.collect.recorder import Snapshots, record_snapshots
from lit_offmeta.collect.sac import SAC, SACConfig
from lit_offmeta.collect.sac_collect import task_features
from lit_offmeta.tasks import get_family


def sac_updates_per_second(obs_dim: int, action_dim: int, hidden: list[int], updates: int) -> float:
    torch.manual_seed(0)
    agent = SAC(obs_dim, action_dim, [-1.0] * action_dim, [1.0] * action_dim, SACConfig(hidden=hidden))
    batch = {"obs": torch.randn(256, obs_dim), "actions": torch.rand(256, action_dim) * 2 - 1,
             "rewards": torch.randn(256), "next_obs": torch.randn(256, obs_dim), "terminals": torch.zeros(256)}
    for _ in range(20):
        agent.update(batch)
    start = time.perf_counter()
    for _ in range(updates):
        agent.update(batch)
    return updates / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="cheetah_vel")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--steps_per_task", type=int, default=2000)
    parser.add_argument("--updates", type=int, default=300)
    args = parser.parse_args()
    family = get_family(args.family)
    tasks = dict(enumerate(family.default_tasks()[: args.tasks]))
    action_dim = int(np.prod(family.action_space.shape))
    input_dim = family.obs_dim + len(task_features(tasks[0]))
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for hidden in ([128, 128], [256, 256]):
            rate = sac_updates_per_second(input_dim, action_dim, hidden, args.updates)
            print(f"sac_updates_per_s_{hidden[0]}x{hidden[1]}_{threads}t: {rate:.0f} updates/s")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    actor = SAC(input_dim, action_dim, family.action_space.low, family.action_space.high,
                SACConfig(hidden=[128, 128])).actor
    snapshots = Snapshots(steps=[0, 1], actors=[actor.state_dict()] * 2, hidden=[128, 128],
                          keep=list(range(family.obs_dim)), features={i: task_features(t).tolist()
                                                                      for i, t in tasks.items()},
                          action_low=family.action_space.low.tolist(), action_high=family.action_space.high.tolist())
    recorded = {}
    start = time.perf_counter()
    record_snapshots(family, tasks, snapshots, args.steps_per_task, 0, recorded.__setitem__, progress=False)
    elapsed = time.perf_counter() - start
    total = sum(len(ep["rewards"]) for episodes in recorded.values() for ep in episodes)
    print(f"recorded_transitions: {total} transitions")
    print(f"recorded_transitions_per_s: {total / elapsed:.0f} transitions/s")


if __name__ == "__main__":
    main()
