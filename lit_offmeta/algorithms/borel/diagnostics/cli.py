"""``python -m lit_offmeta.algorithms.borel.diagnostics``: the subcommands (the package docstring lists them)."""

from __future__ import annotations

import argparse
import json

import torch

from lit_offmeta.algorithms.borel.diagnostics.actor import mean_action
from lit_offmeta.algorithms.borel.diagnostics.grid import (
    belief,
    belief_error,
    belief_probe,
    exact_eval,
    exact_rl,
    logged_trials,
    search_coverage,
    train_vae,
)
from lit_offmeta.algorithms.borel.diagnostics.point import (
    arc_coverage,
    arc_nll,
    belief_support,
    goal_found,
    logged_training_trials,
    second_search,
    touches,
)


def coverage(args: argparse.Namespace) -> None:
    """``coverage``: :func:`search_coverage` of the logged GridNavi trials in ``args.data``, or with ``--family
    point_robot_sparse`` :func:`arc_coverage` of the logged training tasks' trials, as JSON."""
    if args.family == "point_robot_sparse":
        print(json.dumps(arc_coverage(logged_training_trials(args.data))))
        return
    print(json.dumps(search_coverage(logged_trials(args.data))))


def main(argv: list[str] | None = None) -> None:
    from lit_offmeta.algorithms.borel import diagnostics  # the package, whose docstring lists the checks

    parser = argparse.ArgumentParser(
        prog="python -m lit_offmeta.algorithms.borel.diagnostics",
        description=diagnostics.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("train-vae", help="the pipeline's VAE stage alone")
    v.add_argument("--data", required=True, help="folder written by `lit-offmeta collect` (grid_navi)")
    v.add_argument("--mix-prob", type=float, default=0.5, help="reward relabelling's mix_prob (0: relabelling off)")
    v.add_argument("--steps", type=int, default=2000)
    v.add_argument("--lr", type=float, default=3e-3)
    v.add_argument(
        "--vae", default="{}", help="BeliefVAE keyword arguments as JSON, over the config's (GRID_VAE, --lr)"
    )
    v.add_argument(
        "--batch", default="{}", help='batch shape as JSON, e.g. {"tasks_per_batch": 8, "trials_per_task": 8}'
    )
    v.add_argument("--out", required=True)
    v.add_argument("--seed", type=int, default=0)
    b = sub.add_parser("belief", help="decoded belief after hand-made paths")
    which = b.add_mutually_exclusive_group(required=True)
    which.add_argument("--ckpt", help="an OfflineVariBAD checkpoint")
    which.add_argument("--vae", help="a state_dict written by train-vae")
    r = sub.add_parser("exact-rl", help="the pipeline's DQN on the exact posterior")
    r.add_argument("--data", required=True, help="folder written by `lit-offmeta collect` (grid_navi)")
    r.add_argument("--steps", type=int, default=4000)
    r.add_argument("--every", type=int, default=1000)
    r.add_argument("--episode-time", action="store_true")
    r.add_argument("--rl-data", choices=("own", "relabelled"), default="own",
                   help="own: each task's logged trials; relabelled: mix_trials(mix_prob=1) trials (task independent "
                        "of the behaviour)")
    r.add_argument("--rl-trials", type=int, default=400, help="relabelled trials per task (--rl-data relabelled)")
    r.add_argument("--rl", default='{"lr": 0.001, "tau": 0.01, "double_q": true, "cql_alpha": 3.0}',
                   help="HyperStateDQN keyword arguments as JSON")
    r.add_argument("--lr-decay", action="store_true", help="cosine learning-rate decay to 0 (rl_lr_decay)")
    r.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("belief-error", help="decoded belief vs the exact posterior on a model's RL trials")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--ckpt", help="an OfflineVariBAD checkpoint (grid_navi, decoder 'cells'): its RL trials")
    which.add_argument(
        "--vae", help="a file written by train-vae: the config's RL trials (relabelled, 400/task, seed 0)"
    )
    e.add_argument("--data", required=True, help="folder written by `lit-offmeta collect` (grid_navi)")
    e.add_argument("--every", type=int, default=7, help="use every this-many-th RL trial")
    e.add_argument("--on-policy", action="store_true",
                   help="with --ckpt: score the belief along the checkpoint's own policy's trials (one per goal)")
    e.add_argument("--sweeps", type=int, default=0,
                   help="instead score N fresh search sweeps per goal (stitched walks with novelty 1, seed 12345)")
    x = sub.add_parser("exact-eval", help="a checkpoint's agent with its learned belief vs the exact posterior")
    x.add_argument("--ckpt", required=True, help="an OfflineVariBAD checkpoint (grid_navi, cell_targets 'goal')")
    p = sub.add_parser("belief-probe", help="how much of the exact posterior a VAE's belief (or hidden state) holds")
    p.add_argument("--vae", required=True, help="a file written by train-vae")
    p.add_argument("--data", required=True, help="folder written by `lit-offmeta collect` (grid_navi)")
    p.add_argument("--hidden", action="store_true", help="probe the encoder's hidden state instead of (mu, logvar)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--every", type=int, default=7, help="use every this-many-th RL trial")
    c = sub.add_parser("coverage", help="distinct cells each logged episode and trial enters")
    c.add_argument("--data", required=True, help="folder written by `lit-offmeta collect`")
    c.add_argument("--family", choices=("grid_navi", "point_robot_sparse"), default="grid_navi",
                   help="grid_navi: distinct cells per episode; point_robot_sparse: span of the goal arc swept")
    g = sub.add_parser("goal-found", help="PointRobot: does the belief after episode 1 locate the goal it found?")
    g.add_argument("--ckpt", required=True, help="an OfflineVariBAD checkpoint (point_robot_sparse)")
    g.add_argument("--seed", type=int, default=None, help="rollout seed (default: the policy's)")
    g.add_argument("--paths", default=None,
                   help="another checkpoint whose policy drives the trials (--ckpt's belief reads its episodes)")
    g.add_argument("--ema", type=float, default=None,
                   help="drive the trials with the moving-average agent of this decay (the run's rl_eval_ema)")
    g.add_argument("--action-samples", type=int, default=None,
                   help="act by the critics' choice among the mean and this many policy draws (rl_action_samples)")
    a = sub.add_parser("arc-nll", help="PointRobot goal_arc belief: its goal-bin NLL against the exact posterior's")
    a.add_argument("--ckpt", required=True, help="an OfflineVariBAD checkpoint (point_robot_sparse, goal_arc decoder)")
    a.add_argument("--data", required=True, help="folder written by `lit-offmeta collect` (point_robot_sparse)")
    a.add_argument("--batches", type=int, default=20, help="VAE batches (16 trials each) to score")
    a.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("touches", help="PointRobot: how often logged paths touch another training goal briefly")
    t.add_argument("--data", required=True, help="folder written by `lit-offmeta collect` (point_robot_sparse)")
    t.add_argument("--brief", type=int, default=3, help="at most this many rewarded steps")
    t.add_argument("--far", type=float, default=0.4, help="and the episode ends more than this far from the goal")
    q = sub.add_parser("second-search", help="PointRobot: how often the RL trials pay in episode 2 after a miss")
    q.add_argument("--ckpt", required=True, help="an OfflineVariBAD checkpoint (point_robot_sparse)")
    q.add_argument("--data", required=True, help="folder written by `lit-offmeta collect` (point_robot_sparse)")
    q.add_argument("--end-degrees", type=float, default=15.0, help="goals this close to an end of the arc")
    n = sub.add_parser("belief-support", help="PointRobot: do the RL trials hold the beliefs the agent meets?")
    n.add_argument("--ckpt", required=True, help="an OfflineVariBAD checkpoint (point_robot_sparse, goal_arc decoder)")
    n.add_argument("--data", required=True, help="folder written by `lit-offmeta collect` (point_robot_sparse)")
    n.add_argument("--radius", type=float, default=0.3, help="total-variation distance that counts as a neighbour")
    n.add_argument("--seed", type=int, default=None, help="rollout seed (default: the policy's)")
    n.add_argument("--ema", type=float, default=None, help="drive the trials with this moving-average agent")
    n.add_argument("--walks-per-task", type=int, default=None,
                   help="RL trials with this many search walks per goal (rl_search_walks_per_task; default: the run's)")
    m = sub.add_parser("mean-action", help="SAC: does the mean action take what the critics value most?")
    m.add_argument("--ckpt", required=True, help="an OfflineVariBAD checkpoint with a SAC agent")
    m.add_argument("--samples", type=int, default=32, help="policy draws the mean action is compared with")
    m.add_argument("--action-samples", type=int, default=None,
                   help="how the agent acts along the trials (rl_action_samples; default: the checkpoint's)")
    m.add_argument("--threshold", type=float, default=0.1, help="a Q-value gap that counts")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    {"train-vae": train_vae, "belief": belief, "exact-rl": exact_rl, "belief-error": belief_error,
     "belief-probe": belief_probe, "exact-eval": exact_eval, "coverage": coverage, "goal-found": goal_found,
     "arc-nll": arc_nll, "touches": touches, "second-search": second_search,
     "belief-support": belief_support, "mean-action": mean_action}[args.cmd](args)
