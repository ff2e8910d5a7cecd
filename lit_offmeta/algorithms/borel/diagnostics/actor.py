"""Does a SAC agent's mean action take what its critics value most? (``mean-action``, any continuous family.)

A Gaussian actor trained against a Q-function with several good actions at a state (search left or right along a
goal arc) can put its mean between them, on an action the critics rank below both: deterministic evaluation then
takes that action and, with a small one, parks the agent (docs/BOREL.md, eighteenth session). Along the agent's own
trials on the held-out tasks, this compares at every step the critics' value of the mean action with the best of
``samples`` draws from the policy.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from lit_offmeta.algorithms.borel.pipeline import evaluate_trials
from lit_offmeta.algorithms.borel.sac import HyperStateSAC


@torch.no_grad()
def mean_action_gaps(agent, hyper: torch.Tensor, samples: int, generator: torch.Generator) -> dict[str, np.ndarray]:
    """Per hyper-state ``[N, d]`` of a :class:`HyperStateSAC`: ``q_mean``, the smaller critic's value of the mean
    action; ``gap``, the best such value among ``samples`` policy draws minus ``q_mean`` (0 when none is better);
    ``mean_norm``, the mean action's largest coordinate in absolute value (small: the agent barely moves)."""
    candidates, q = agent.scored_actions(hyper, samples, generator)
    gap = (q[:, 1:].max(dim=1).values - q[:, 0]).clamp(min=0.0)
    return {"q_mean": q[:, 0].cpu().numpy(), "gap": gap.cpu().numpy(),
            "mean_norm": candidates[:, 0].abs().max(dim=-1).values.cpu().numpy()}


def mean_action_report(model, samples: int = 32, action_samples: int | None = None, threshold: float = 0.1,
                       seed: int | None = None) -> dict:
    """``mean-action``: one trial per held-out task of ``model``'s agent (acting with ``action_samples``, default
    the model's ``rl_action_samples``), recording the hyper-state of every step; per episode of the trial, the
    median of :func:`mean_action_gaps`' ``gap``, the fraction of steps whose gap exceeds ``threshold`` (a draw the
    critics value that much more than the mean action), and the fraction of "parked" steps (the mean action below
    0.1 in every coordinate) with the fraction of those whose gap exceeds ``threshold``."""
    if not isinstance(model.agent, HyperStateSAC):
        raise SystemExit(f"mean-action: needs a SAC agent, got {type(model.agent).__name__}")
    if samples < 1:
        raise SystemExit(f"mean-action: --samples must be >= 1, got {samples}")
    family = model.family
    tasks = [family.default_tasks()[i] for i in family.split().test]
    episodes = int(getattr(family, "episodes_per_trial", 2))
    policy = model.belief_policy(None, action_samples)
    recorded: list[torch.Tensor] = []
    act = policy.agent.act

    def recording_act(hyper, *args, **kwargs):
        recorded.append(hyper.clone())
        return act(hyper, *args, **kwargs)

    policy.agent.act = recording_act
    try:
        result = evaluate_trials(policy, family, tasks, episodes, seed=model.hparams.seed if seed is None else seed)
    finally:
        del policy.agent.act  # back to the class's method
    # the rollout steps every task's environment in lockstep, episode after episode of ``horizon`` steps
    if len(recorded) != episodes * family.horizon:
        raise RuntimeError(f"mean-action: recorded {len(recorded)} steps, expected {episodes} x {family.horizon}")
    gaps = mean_action_gaps(policy.agent, torch.cat(recorded), samples, torch.Generator().manual_seed(0))
    per_step = {k: v.reshape(episodes, family.horizon, len(tasks)) for k, v in gaps.items()}
    report = {"tasks": len(tasks), "samples": samples, "threshold": threshold,
              "success": [round(float(s), 3) for s in result.success.mean(0)]}
    for e in range(episodes):
        gap, parked = per_step["gap"][e], per_step["mean_norm"][e] < 0.1
        report[f"ep{e + 1}"] = {
            "gap_median": round(float(np.median(gap)), 4),
            "steps_gap_over_threshold": round(float((gap > threshold).mean()), 3),
            "steps_parked": round(float(parked.mean()), 3),
            "parked_gap_over_threshold": round(float((gap[parked] > threshold).mean()), 3) if parked.any() else None,
        }
    return report


def mean_action(args) -> None:
    """``mean-action``: :func:`mean_action_report` of a pipeline checkpoint, as JSON."""
    from lit_offmeta.algorithms.borel.diagnostics.common import load_pipeline

    report = mean_action_report(load_pipeline(args.ckpt), args.samples, args.action_samples, args.threshold)
    print(json.dumps(report))
