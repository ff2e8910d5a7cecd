"""Where a sparse-PointRobot agent stops after a fruitless search, and what its actor and critics say there.

For the first held-out goal whose episode 1 finds nothing (the checkpoint's own trials, SAC's mean action), prints
as JSON: both episodes' paths as (angle in degrees, distance from the origin) every 4 steps, and at steps ``--steps``
of episode 1 the position, the decoded belief over the goal arc's bins (percent), the actor's mean action and
standard deviation, the critics' value (the smaller Q) of a full step in each of 8 compass directions and of
standing still, and the mean action's value against the best of 2000 draws from the actor's Gaussian.
docs/BOREL.md ("Where we differ from the reference, and why", ``rl_action_samples``) cites it for the arc-belief
config's seed 1::

    OMP_NUM_THREADS=1 python benchmarks/borel_parked_agent.py --ckpt <run>/.../epoch=127-step=104000.ckpt
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from lit_offmeta.algorithms.borel.diagnostics.common import episodes_batch, load_pipeline
from lit_offmeta.algorithms.borel.pipeline import evaluate_trials

COMPASS = ("E", "NE", "N", "NW", "W", "SW", "S", "SE")


def polar(positions: np.ndarray, every: int = 4) -> list[list[float]]:
    p = positions[::every]
    return [[round(float(a), 0), round(float(r), 2)]
            for a, r in zip(np.degrees(np.arctan2(p[:, 1], p[:, 0])), np.linalg.norm(p, axis=1))]


@torch.no_grad()
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True,
                        help="an OfflineVariBAD checkpoint (point_robot_sparse, goal_arc decoder, SAC)")
    parser.add_argument("--steps", nargs="+", type=int, default=[0, 10, 20, 30, 59])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_pipeline(args.ckpt)
    family, agent = model.family, model.agent
    if family.name != "point_robot_sparse" or model.vae.decoder_kind != "goal_arc":
        raise SystemExit("borel_parked_agent: needs a point_robot_sparse checkpoint with the goal_arc decoder")
    tasks = [family.default_tasks()[i] for i in family.split().test]
    result = evaluate_trials(model.belief_policy(None, 0), family, tasks, 2, seed=model.hparams.seed, record=True)
    missed = np.flatnonzero(~result.success[:, 0].astype(bool))
    if len(missed) == 0:
        raise SystemExit("borel_parked_agent: episode 1 finds every goal; nothing to show")
    i = int(missed[0])
    episode = result.episodes[i][0]
    batch = episodes_batch(family, [episode])
    mu, _ = model.vae.encoder(*(batch[k] for k in ("actions", "next_obs", "rewards", "valid")))
    beliefs = model.vae.goal_map(mu[:, 0])  # [H + 1, bins]: index t is the belief the agent acts on at step t
    angles = np.radians(np.arange(0, 360, 45))
    moves = torch.tensor(np.concatenate([np.stack([np.cos(angles), np.sin(angles)], -1), [[0.0, 0.0]]]),
                         dtype=torch.float32)
    moves[:8] = moves[:8] / moves[:8].abs().max(-1, keepdim=True).values  # a full step in each direction
    generator = torch.Generator().manual_seed(0)

    def value(x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.minimum(*(agent._q(net, x.expand(len(actions), -1), actions) for net in agent.critics))

    steps = []
    for t in args.steps:
        position = torch.as_tensor(episode["observations"][t], dtype=torch.float32)
        x = torch.cat([position, beliefs[t]])[None]
        mean, log_std = agent.actor.net(x).chunk(2, -1)
        std = log_std.exp()
        _, q = agent.scored_actions(x, 2000, generator)  # the mean action's value, then 2000 draws'
        steps.append({
            "step": t, "at": polar(position.numpy()[None])[0],
            "belief_percent": np.round(beliefs[t].numpy() * 100).astype(int).tolist(),
            "mean_action": np.round(torch.tanh(mean)[0].numpy(), 2).tolist(),
            "std": np.round(std[0].numpy(), 2).tolist(),
            "q_moves": dict(zip([*COMPASS, "stay"], np.round(value(x, moves).numpy(), 2).tolist())),
            "q_mean_action": round(float(q[0, 0]), 2),
            "q_best_of_2000_draws": round(float(q[0, 1:].max()), 2),
        })
    goal = tasks[i]["goal"]
    print(json.dumps({"goal_degrees": round(float(np.degrees(np.arctan2(goal[1], goal[0]))), 1),
                      "ep1_path": polar(result.episodes[i][0]["observations"]),
                      "ep2_path": polar(result.episodes[i][1]["observations"]), "ep1_steps": steps}))


if __name__ == "__main__":
    main()
