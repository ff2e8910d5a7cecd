"""Episode-2 success of trained sparse-PointRobot pipelines when the agent acts by its critics' choice among its mean
action and N draws from its policy (``rl_action_samples``), against the mean action alone.

Training is unchanged by ``rl_action_samples``, so this evaluates existing checkpoints: one trial of two episodes per
held-out goal, for each N in ``--samples`` (0: the mean action, SAC's usual evaluation), each of the action
streams' seeds in ``--action-seeds`` (the draws' generator; the rollout seed stays the model's), and the moving
averages the run kept (``rl_eval_ema``) with ``--ema``. Prints one JSON line per evaluation; ``--plot`` draws
episode 2's success per checkpoint and N (the lowest over the action seeds) with the 80% target. docs/BOREL.md
("Results", sparse PointRobot) reports it::

    OMP_NUM_THREADS=1 python benchmarks/borel_action_samples.py --ckpt <run 0>/.../last.ckpt <run 1>/.../last.ckpt \\
        --labels "seed 0" "seed 1" --samples 0 32 --action-seeds 0 1 2 \\
        --plot docs/figures/borel_point_action_samples.png
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD, evaluate_trials
from lit_offmeta.algorithms.borel.policy import BeliefPolicy


def evaluate(model, samples: int, action_seed: int, ema: float | None) -> dict:
    family = model.family
    tasks = [family.default_tasks()[i] for i in family.split().test]
    policy: BeliefPolicy = model.belief_policy(ema, samples)
    policy.seed = action_seed
    result = evaluate_trials(policy, family, tasks, 2, seed=model.hparams.seed)
    return {"ep1": round(float(result.success[:, 0].mean()), 3), "ep2": round(float(result.success[:, 1].mean()), 3)}


def plot(rows: list[dict], labels: list[str], samples: list[int], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(labels), 3.2))
    width = 0.8 / len(samples)
    for k, n in enumerate(samples):
        lows = [min(r["ep2"] for r in rows if r["label"] == label and r["samples"] == n and r["ema"] is None)
                for label in labels]
        ax.bar(np.arange(len(labels)) + (k - (len(samples) - 1) / 2) * width, lows, width,
               label="mean action" if n == 0 else f"best of mean + {n} draws (lowest over action seeds)")
    ax.axhline(0.8, color="k", lw=0.8, ls="--", label="target 80%")
    ax.set_xticks(np.arange(len(labels)), labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("episode-2 success (20 goals)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=Path(out).parent)  # written whole or not at all
    os.close(fd)
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", nargs="+", required=True, help="OfflineVariBAD checkpoints (SAC)")
    parser.add_argument("--labels", nargs="+", default=None, help="one per checkpoint (default: 0, 1, ...)")
    parser.add_argument("--samples", nargs="+", type=int, default=[0, 32])
    parser.add_argument("--action-seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--ema", action="store_true", help="also evaluate the run's moving averages")
    parser.add_argument("--plot", default=None, help="PNG of episode 2's success per checkpoint and N")
    args = parser.parse_args(argv)
    labels = args.labels or [str(i) for i in range(len(args.ckpt))]
    if len(labels) != len(args.ckpt):
        parser.error(f"--labels: {len(labels)} given for {len(args.ckpt)} checkpoints")
    rows = []
    for label, path in zip(labels, args.ckpt):
        model = OfflineVariBAD.load_from_checkpoint(path, map_location="cpu", weights_only=True)
        emas = [None] + ([float(d) for d in model.hparams.rl_eval_ema] if args.ema else [])
        for n in args.samples:
            for seed in args.action_seeds if n else [0]:  # the mean action draws nothing
                for ema in emas:
                    row = {"label": label, "samples": n, "action_seed": seed, "ema": ema}
                    rows.append(row | evaluate(model, n, seed, ema))
                    row = rows[-1]
                    print(json.dumps(row), flush=True)
    if args.plot:
        plot(rows, labels, args.samples, args.plot)


if __name__ == "__main__":
    main()
