"""Does a belief VAE trained with fruitless sweeps of the goal arc learn what a failed search implies? (PointRobot)

With the reference's belief model (reward decoder on ``(z, s')``, GRU), after a first episode that sweeps ~140 of the
goal arc's 180 degrees and finds nothing, the learned belief decodes no more reward on the unsearched ends than the
prior (``diagnostics goal-found``), and few logged episodes sweep the arc (``diagnostics coverage --family
point_robot_sparse``). This probe retrains only the VAE stage (the checkpoint's VAE settings and the PointRobot
config's batches: 8 tasks x 2 shared paths, every episode relabelled), ``--steps`` updates, on the logged trials plus
``--repeats`` copies of the checkpoint's own two-episode trials on the 80 training goals (its episode 1 is the sweep;
relabelled for other goals it is a fruitless one). ``--repeats 0`` is the control: the same procedure on the logged
trials alone. It then runs ``goal_found_report`` with the new belief reading the checkpoint's policy's trials on the 20
held-out goals and prints it as JSON. Look at ``ep1_missed_decoded_searched_unsearched`` against
``prior_decoded_searched_unsearched``: a belief that learned from the sweep decodes less on the searched span and
more on the rest.

``--vae`` overrides the VAE's settings (other belief models, e.g. the arc belief below, with ``--repeats 0``); for a
``goal_arc`` decoder it also prints ``diagnostics.point.arc_nll_report`` (the goal-bin NLL against the exact
posterior's). docs/BOREL.md ("Diagnostics and benchmarks") lists it::

    OMP_NUM_THREADS=1 python benchmarks/borel_own_sweeps_vae.py --ckpt <run>/checkpoints/epoch=85-step=83000.ckpt \\
        --data data --repeats 10     # and --repeats 0
    OMP_NUM_THREADS=1 python benchmarks/borel_own_sweeps_vae.py --ckpt <run>/checkpoints/epoch=85-step=83000.ckpt \\
        --data data --repeats 0 --steps 24000 --vae '{"decoder": "goal_arc", "goal_bins": 20, "latent_dim": 20,
        "decoder_hidden": [], "kl_weight": 0.0, "lr": 0.003, "aggregator": "max"}'
"""

from __future__ import annotations

import argparse
import json

import torch

from lit_offmeta.algorithms.borel.diagnostics.common import fit_vae, load_pipeline, policy_trials
from lit_offmeta.algorithms.borel.diagnostics.point import arc_nll_report, goal_found_report, point_robot_vae_batches
from lit_offmeta.algorithms.borel.vae import BeliefVAE
from lit_offmeta.data.relabel import TrialArrays


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="an OfflineVariBAD point_robot_sparse checkpoint")
    parser.add_argument("--data", default="data", help="folder written by `lit-offmeta collect` (point_robot_sparse)")
    parser.add_argument("--repeats", type=int, default=10, help="copies of the policy's own trials added (0: none)")
    parser.add_argument("--steps", type=int, default=3000, help="VAE updates (the config's vae_steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vae", default="{}",
                        help="JSON overrides of the checkpoint's BeliefVAE settings, e.g. a goal_arc decoder")
    args = parser.parse_args(argv)
    if args.repeats < 0 or args.steps < 1:
        parser.error(f"need --repeats >= 0 and --steps >= 1, got {args.repeats} and {args.steps}")
    torch.set_num_threads(1)
    policy_model = load_pipeline(args.ckpt)
    if policy_model.family.name != "point_robot_sparse":
        parser.error(f"--ckpt: needs a point_robot_sparse checkpoint, got {policy_model.family.name!r}")
    dm = point_robot_vae_batches(args.data, args.seed)  # the config's VAE batches
    if args.repeats:
        own = policy_trials(policy_model, policy_model.family.split().train, seed=0)  # a trial per training goal
        found = (own.rewards[:, 0] > 0).any(-1)  # episode 1 was paid at least once
        print(json.dumps({"own_trials_success_ep1": round(float(found.mean()), 4)}), flush=True)
        dm.train_trials = TrialArrays.concatenate([dm.train_trials] + [own] * args.repeats)
    torch.manual_seed(args.seed)
    try:
        overrides = json.loads(args.vae)
    except json.JSONDecodeError as err:
        parser.error(f"--vae: not JSON ({err})")
    vae = BeliefVAE("point_robot_sparse", **{**dict(policy_model.hparams.vae), **overrides})
    fit_vae(vae, dm, args.steps, args.seed)
    belief_model = load_pipeline(args.ckpt)
    belief_model.vae = vae
    print(json.dumps(goal_found_report(belief_model, paths=policy_model)))
    if vae.decoder_kind == "goal_arc":  # how far from the exact posterior, on the VAE's own kind of batches
        print(json.dumps({"arc_nll": arc_nll_report(vae, dm, seed=args.seed)}))


if __name__ == "__main__":
    main()
