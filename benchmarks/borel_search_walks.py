"""How fast search walks are made and what they hold (sparse PointRobot, lit_offmeta/data/search_walks.py).

Draws ``--per-task`` walks for each training goal of a collected sparse-PointRobot dataset, as
``OfflineVariBAD(rl_search_walks_per_task=...)`` does, and prints as JSON: the time, walks per second, the steps that
found no logged step within the radius (``jumps``), how far episode 1 sweeps the goal arc (``diagnostics coverage``'s
span percentiles) and how often episode 2 pays after a fruitless episode 1 (``diagnostics second-search``'s
rates), next to the same figures for the RL stage's reward-relabelled trials (``--relabelled`` per goal, the
PointRobot configs' 200). docs/BOREL.md ("Diagnostics and benchmarks") lists it::

    lit-offmeta collect --config configs/collect/point_robot_sparse_small.yaml
    OMP_NUM_THREADS=1 python benchmarks/borel_search_walks.py --data data --per-task 10
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from lit_offmeta.algorithms.borel.diagnostics.point import arc_spans, logged_training_trials, second_search_rates
from lit_offmeta.data.relabel import mix_trials
from lit_offmeta.data.search_walks import search_walk_trials
from lit_offmeta.tasks import get_family


def describe(trials) -> dict:
    spans = np.nan_to_num(arc_spans(trials)).reshape(trials.num_trials, -1)[:, 0]
    return {"ep1_arc_span_p25_p50_p75_p90": np.round(np.percentile(spans, [25, 50, 75, 90]), 1).tolist(),
            "second_search": second_search_rates(trials)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder written by `lit-offmeta collect` (point_robot_sparse)")
    parser.add_argument("--per-task", type=int, default=10, help="walks per training goal")
    parser.add_argument("--radius", type=float, default=0.05)
    parser.add_argument("--relabelled", type=int, default=200, help="relabelled trials per goal, for comparison")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    family = get_family("point_robot_sparse")
    logged = logged_training_trials(args.data)
    targets = np.repeat(np.unique(logged.task_index), args.per_task)
    start = time.perf_counter()
    walks, jumps = search_walk_trials(family, logged, targets, np.random.default_rng(args.seed), args.radius)
    seconds = time.perf_counter() - start
    relabelled = mix_trials(family, logged, np.repeat(np.unique(logged.task_index), args.relabelled),
                            np.random.default_rng([args.seed, 1]), mix_prob=1.0)
    print(json.dumps({"walk_trials": walks.num_trials, "seconds": round(seconds, 1),
                      "walks_per_second": round(walks.num_trials / seconds, 1), "jumps": jumps,
                      "jumps_per_step": round(jumps / walks.valid.sum(), 5),
                      "walks": describe(walks), "relabelled": describe(relabelled)}))


if __name__ == "__main__":
    main()
