"""Diagnostics of offline VariBAD (GridNavi, and ``goal-found`` for sparse PointRobot): is the belief or the RL
stage the weak link?

The checks (``docs/BOREL.md`` reports what they measured):

``belief``: the decoded ``p(goal at cell)`` of a trained model's belief after hand-made paths (the prior, a failed
sweep of the bottom row, a failed sweep of the bottom row and the right column, a walk onto a goal). A
calibrated belief gives ~1/21 everywhere at the prior and ~0 on searched cells.

``exact-rl``: the SAME DQN as the pipeline trained on hyper-states whose belief part is the EXACT posterior over
the 21 goals (uniform over the goal cells not yet searched; one-hot once the goal paid), computed from each
logged trial. It bounds what the RL stage can reach on this data with a perfect belief.

``belief-error``: the total variation between a trained model's decoded belief and the exact posterior, on the
trials its RL stage trains on (``--ckpt``), or a ``train-vae`` VAE's on the config's RL trials (``--vae``), or along
the checkpoint's own policy's trials (``--ckpt --on-policy``).

``exact-eval``: a checkpoint's agent evaluated with its learned belief and with the exact posterior in its place
(agents that see a normalised goal map): how much the belief at evaluation costs.

``belief-probe``: a supervised readout (MLP) fitted to the exact posterior from a VAE's belief or its encoder's
hidden state: how much of the posterior the representation holds at all.

``coverage``: how far the behaviour data searches: the distinct cells each logged episode (and trial) enters,
against the ~10 cells the Bayes-adaptive policy enters in its first episode; with ``--family point_robot_sparse``
how many degrees of the goal arc each logged episode sweeps.

``goal-found`` (sparse PointRobot): a checkpoint's trials on the held-out goals, split by whether its belief at
the start of episode 2 locates the goal (the decoded reward's peak on the goal arc lies within the goal radius):
episode 2's success with and without a located goal, and how many rewarded steps episode 1 had. With ``--paths``
another checkpoint's policy drives the trials: does this belief keep what that policy's episode 1 found?

``arc-nll`` (sparse PointRobot, ``goal_arc`` decoder): how close a belief is to the exact posterior. On the
PointRobot config's VAE batches, the negative log-probability of the trial's goal bin summed over the trial's
beliefs (the VAE's loss, at the belief mean) next to the exact posterior's (uniform over the training goals whose
rewards agree with every step so far, :func:`exact_task_posterior`) and the uniform one's.

``touches`` (sparse PointRobot): how often a logged path, relabelled for another training task, passes through
that task's goal disc for a few steps and moves on: the evidence a belief needs to keep a goal touched once.

``train-vae``: stage 1 of the pipeline alone (the GridNavi config's BeliefVAE with ``--vae`` JSON overrides,
Adam, the datamodule's batches), a few times faster than ``lit-offmeta fit`` on a loaded machine; writes the VAE's
settings and ``state_dict``.

    python -m lit_offmeta.algorithms.borel.diagnostics train-vae --data data --mix-prob 1.0 --steps 6000 --out vae.pt \
        [--vae '{"kl_weight": 0.01}'] [--batch '{"tasks_per_batch": 16}']
    python -m lit_offmeta.algorithms.borel.diagnostics belief-error --vae vae.pt --data data
    python -m lit_offmeta.algorithms.borel.diagnostics belief-probe --vae vae.pt --data data [--hidden]
    python -m lit_offmeta.algorithms.borel.diagnostics belief --vae vae.pt     # or --ckpt <run>/checkpoints/<x>.ckpt
    python -m lit_offmeta.algorithms.borel.diagnostics exact-rl --data data --steps 4000 [--rl-data relabelled]
    python -m lit_offmeta.algorithms.borel.diagnostics belief-error --ckpt <run>/checkpoints/<x>.ckpt --data data \
        [--on-policy]
    python -m lit_offmeta.algorithms.borel.diagnostics exact-eval --ckpt <run>/checkpoints/<x>.ckpt
    python -m lit_offmeta.algorithms.borel.diagnostics coverage --data data [--family point_robot_sparse]
    python -m lit_offmeta.algorithms.borel.diagnostics goal-found --ckpt <run>/checkpoints/<x>.ckpt   # PointRobot
    python -m lit_offmeta.algorithms.borel.diagnostics arc-nll --ckpt <run>/checkpoints/<x>.ckpt --data data
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from torch.nn import functional as F

from lit_offmeta.algorithms.borel.dqn import HyperStateDQN
from lit_offmeta.algorithms.borel.hyperstates import (
    HyperStateTransitions,
    relabel_states,
    relabelled_row_trials,
)
from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD, cosine_lr_decay_, evaluate_trials, summarise
from lit_offmeta.algorithms.borel.vae import arc_bin
from lit_offmeta.data.relabel import TrialArrays, mix_trials, relabel_rewards, trials_from_episodes
from lit_offmeta.tasks import get_family
from lit_offmeta.tasks.grid_navi import GOAL_CELLS, GRID_SIZE

CELLS = GRID_SIZE * GRID_SIZE
GOAL = (2, 3)
# name -> (cells entered from the start (0, 0), whether the last one is the goal GOAL and pays 1)
PATHS = {
    "prior": ([], False),
    "bottom row searched": ([(1, 0), (2, 0), (3, 0), (4, 0)], False),
    "bottom row + right column searched": ([(1, 0), (2, 0), (3, 0), (4, 0), (4, 1), (4, 2), (4, 3), (4, 4)], False),
    "walked onto the goal (2, 3)": ([(1, 0), (2, 0), (2, 1), (2, 2), GOAL], True),
}


def exact_posterior_update(belief: np.ndarray, cell: int, reward: float) -> np.ndarray:
    """Posterior over goal cells ``[..., 25]`` after entering ``cell`` and receiving ``reward`` (GridNavi)."""
    out = np.zeros_like(belief)
    if reward > 0:
        out[..., cell] = 1.0
        return out
    out[...] = belief
    out[..., cell] = 0.0
    total = out.sum(-1, keepdims=True)
    return np.divide(out, total, out=np.zeros_like(out), where=total > 0)


def exact_prior() -> np.ndarray:
    prior = np.zeros(CELLS, np.float32)
    for x, y in GOAL_CELLS:
        prior[x * GRID_SIZE + y] = 1.0
    return prior / prior.sum()


class ExactBeliefEncoder(torch.nn.Module):
    """The exact GridNavi posterior in the shape of a belief encoder, so that ``relabel_states`` (the pipeline's own
    BAMDP transitions and successors) builds the exact-belief hyper-states: ``forward`` returns the posterior over
    the 25 cells as ``mu`` ``[L + 1, B, 25]`` (``mu[0]`` the prior) and an empty ``logvar`` ``[L + 1, B, 0]``."""

    def forward(self, actions, next_obs, rewards, valid):
        cells = (next_obs[..., 0] * GRID_SIZE + next_obs[..., 1]).long()  # [L, B] the cell entered
        paid = (rewards > 0) & valid
        miss = F.one_hot(cells, CELLS).bool() & (~paid & valid)[..., None]
        searched = torch.cummax(miss.to(torch.uint8), dim=0).values.bool()  # [L, B, 25] ruled out so far
        found = torch.cummax(paid.to(torch.uint8), dim=0).values.bool()  # [L, B]
        goal = cells.gather(0, paid.to(torch.uint8).argmax(0, keepdim=True))[0]  # [B] first paying cell
        prior = torch.as_tensor(exact_prior())
        rest = prior * ~searched
        post = torch.where(found[..., None], F.one_hot(goal, CELLS).float()[None], rest / rest.sum(-1, keepdim=True))
        mu = torch.cat([prior.expand(1, *post.shape[1:]), post])
        return mu, mu.new_zeros(*mu.shape[:-1], 0)


def exact_hyperstates(trials: TrialArrays, episode_time: bool) -> HyperStateTransitions:
    """Hyper-state transitions ``(s, exact posterior[, t / H])``: :func:`relabel_states` with the exact belief."""
    return relabel_states(ExactBeliefEncoder(), trials, episode_time=episode_time)  # same row order as the VAE


class ExactBeliefPolicy:
    """Rollout policy of the exact-belief DQN: tracks the exact posterior (and the step within the episode)."""

    def __init__(self, agent: HyperStateDQN, horizon: int, episode_time: bool) -> None:
        self.agent, self.horizon, self.episode_time = agent, horizon, episode_time

    def reset(self, num_envs: int) -> None:
        self.belief = np.tile(exact_prior(), (num_envs, 1))
        self.t = np.zeros(num_envs)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        parts = [np.asarray(obs, np.float32), self.belief]
        if self.episode_time:
            parts.append(self.t[:, None] / self.horizon)
        return self.agent.act(torch.as_tensor(np.concatenate(parts, 1), dtype=torch.float32)).numpy()

    def observe(self, obs, actions, rewards, next_obs, dones) -> None:
        for i, (nxt, r) in enumerate(zip(np.asarray(next_obs), np.asarray(rewards), strict=True)):
            self.belief[i] = exact_posterior_update(self.belief[i], int(nxt[0]) * GRID_SIZE + int(nxt[1]), r)
        self.t = np.where(np.asarray(dones, bool), 0, self.t + 1)


def exact_rl(args: argparse.Namespace) -> None:
    from lit_offmeta.datamodules.trajectory import load_trials_from_storage

    family = get_family("grid_navi")
    trials = load_trials_from_storage(family, args.data, list(range(len(GOAL_CELLS))), family.episodes_per_trial)
    if args.rl_data == "relabelled":
        # every episode from any agent at any stage of its life, rewards recomputed for a task drawn per trial
        targets = np.repeat(np.arange(len(GOAL_CELLS)), args.rl_trials)
        trials = mix_trials(family, trials, targets, np.random.default_rng([args.seed, 1]), mix_prob=1.0)
    start = time.time()
    hyper = exact_hyperstates(trials, args.episode_time)
    print(json.dumps({"rl_data": args.rl_data, "trials": trials.num_trials, "transitions": len(hyper),
                      "goal_fraction": round(float((hyper.rewards > 0).float().mean()), 3),
                      "s": round(time.time() - start, 1)}), flush=True)
    torch.manual_seed(args.seed)
    rl = json.loads(args.rl)
    agent = HyperStateDQN(hyper.obs.shape[1], family.action_dim, **rl)
    opt = agent.configure_optimizers()
    generator = torch.Generator().manual_seed(args.seed)
    start = time.time()
    for step in range(1, args.steps + 1):
        if args.lr_decay:
            cosine_lr_decay_([opt], (step - 1) / args.steps)
        agent.update(hyper.sample(16, 256, generator), [opt], lambda loss: loss.backward())
        if step % args.every == 0 or step == args.steps:
            policy = ExactBeliefPolicy(agent.eval(), family.horizon, args.episode_time)
            result = summarise(evaluate_trials(policy, family, family.default_tasks(), family.episodes_per_trial))
            agent.train()
            print(
                json.dumps(
                    {"rl_updates": step, "s": round(time.time() - start), **{k: round(v, 3) for k, v in result.items()}}
                ),
                flush=True,
            )


def load_pipeline(path: str) -> OfflineVariBAD:
    """A pipeline checkpoint on the CPU (tensors only: ``weights_only=True``)."""
    return OfflineVariBAD.load_from_checkpoint(path, map_location="cpu", weights_only=True)


def exact_eval(args: argparse.Namespace) -> None:
    """``exact-eval``: :func:`exact_eval_report` of a pipeline checkpoint, as JSON."""
    print(json.dumps(exact_eval_report(load_pipeline(args.ckpt))))


def exact_eval_report(model) -> dict[str, dict[str, float]]:
    """A pipeline model's agent evaluated twice on the 21 goals: with its learned belief (the evaluation protocol)
    and with the EXACT posterior in the belief's place. Needs an agent whose belief input is a goal map that sums
    to 1 (``rl_belief_input: decoded`` with ``cell_targets: goal``), the form of the exact posterior."""
    if model.hparams.rl_belief_input != "decoded" or model.vae.cfg.cell_targets != "goal":
        raise SystemExit(
            "exact-eval: the agent must see a normalised goal map (rl_belief_input 'decoded' with "
            f"cell_targets 'goal'), got {model.hparams.rl_belief_input!r} / {model.vae.cfg.cell_targets!r}"
        )
    family, tasks = model.family, model.family.default_tasks()
    exact_policy = ExactBeliefPolicy(model.agent.eval(), family.horizon, model.hparams.episode_time)
    return {
        name: summarise(evaluate_trials(policy, family, tasks, family.episodes_per_trial, seed=model.hparams.seed))
        for name, policy in (("learned_belief", model.adapt()), ("exact_belief", exact_policy))
    }


@torch.no_grad()
def belief_error(args: argparse.Namespace) -> None:
    """How far a trained decoded belief is from the exact posterior along the trials an RL stage uses.

    ``--ckpt``: an ``OfflineVariBAD`` checkpoint and ITS ``rl_trials``. ``--vae``: a ``train-vae`` file, scored on
    the RL trials the GridNavi config's pipeline builds (``rl_data: relabelled``, ``rl_trials_per_task`` 400,
    seed 0), so that the VAE stage can be measured without an RL stage. ``--on-policy`` (with ``--ckpt``): instead,
    the trials the checkpoint's own Bayes-adaptive policy walks, one per goal (the evaluation protocol): there the
    paths are the policy's, not the data's. See :func:`belief_error_report`.
    """
    from lit_offmeta.datamodules.trajectory import load_trials_from_storage

    if args.on_policy and not args.ckpt:
        raise SystemExit("belief-error: --on-policy needs --ckpt (the policy whose rollouts are scored)")
    if args.on_policy and args.sweeps:
        raise SystemExit("belief-error: choose one of --on-policy and --sweeps")
    model = load_pipeline(args.ckpt) if args.ckpt else None
    if args.on_policy:
        print(json.dumps({"rl_data": "on_policy", **belief_error_report(model.vae, policy_trials(model))}))
        return
    if args.sweeps:
        vae = model.vae if model is not None else load_vae(args.vae)
        print(json.dumps({"rl_data": "sweeps", **belief_error_report(vae, search_sweeps(args.data, args.sweeps))}))
        return
    if model is not None:
        family = model.family
        logged = load_trials_from_storage(family, args.data, list(range(len(GOAL_CELLS))), family.episodes_per_trial)
        vae, trials, rl_data = model.vae, model.rl_trials(logged), model.hparams.rl_data
    else:
        vae, trials, rl_data = load_vae(args.vae), config_rl_trials(args.data), "relabelled"
    trials = trials.select(np.arange(0, trials.num_trials, args.every))
    print(json.dumps({"rl_data": rl_data, **belief_error_report(vae, trials)}))


SWEEP_SEED = 12345  # the sweeps' own stream, apart from every pipeline seed


def search_sweeps(data: str, per_goal: int, seed: int = SWEEP_SEED) -> TrialArrays:
    """``per_goal`` trials per GridNavi goal whose paths are fresh stitched walks over the logged steps in ``data``
    with ``novelty`` 1 (every step enters an unsearched cell when a logged step leads to one): searches like the
    policy's sweeps, drawn from their own seed, so a VAE trained with stitched trials is scored on paths it has not
    seen."""
    from lit_offmeta.data.stitching import stitch_trials
    from lit_offmeta.datamodules.trajectory import load_trials_from_storage

    family = get_family("grid_navi")
    logged = load_trials_from_storage(family, data, list(range(len(GOAL_CELLS))), family.episodes_per_trial)
    targets = np.tile(np.arange(len(GOAL_CELLS)), per_goal)
    return stitch_trials(family, logged, targets, np.random.default_rng(seed), novelty=1.0)


def policy_trials(model, task_indices=None, seed: int | None = None) -> TrialArrays:
    """One recorded trial per task of ``model``'s Bayes-adaptive policy (greedy, from the start state), as trial
    data: the tasks ``task_indices`` of ``family.default_tasks()`` (default: all), rollout seed ``seed`` (default:
    the model's), the family's episodes per trial."""
    family = model.family
    indices = range(len(family.default_tasks())) if task_indices is None else list(task_indices)
    tasks = [family.default_tasks()[i] for i in indices]
    episodes = int(getattr(family, "episodes_per_trial", 2))
    seed = model.hparams.seed if seed is None else seed
    result = evaluate_trials(model.adapt(), family, tasks, episodes, seed=seed, record=True)
    meta = [{"trial_index": 0, "episode_in_trial": e} for e in range(episodes)]
    return TrialArrays.concatenate([
        trials_from_episodes(i, task, result.episodes[k], meta, episodes, family.horizon, "rollout")
        for k, (i, task) in enumerate(zip(indices, tasks))])


CONFIG_RL_TRIALS_PER_TASK = 400  # configs/borel/grid_navi.yaml's rl_trials_per_task
REPORT_STEPS = (0, 5, 14, 29, 44, 59)


def search_coverage(trials: TrialArrays) -> dict[str, float]:
    """Distinct cells entered (``s_{t+1}`` over the valid steps) per episode and per trial of GridNavi ``trials``:
    the mean, and the fraction of episodes entering at least 8 / 10 / 12 cells."""
    cells = (trials.next_obs[..., 0] * GRID_SIZE + trials.next_obs[..., 1]).astype(np.int64)  # [N, E, H]
    entered = np.zeros((*cells.shape[:2], CELLS), bool)
    n, e = np.indices(cells.shape[:2])
    for t in range(cells.shape[2]):
        valid = trials.valid[..., t]
        entered[n[valid], e[valid], cells[..., t][valid]] = True
    per_episode = entered.sum(-1).ravel()
    report = {"episodes": int(per_episode.size), "cells_per_episode": round(float(per_episode.mean()), 2),
              "cells_per_trial": round(float(entered.any(1).sum(-1).mean()), 2)}
    for k in (8, 10, 12):
        report[f"episodes_with_{k}_or_more"] = round(float((per_episode >= k).mean()), 4)
    return report


def arc_spans(trials: TrialArrays) -> np.ndarray:
    """``[episodes]``: the degrees of the upper goal arc each episode of sparse-PointRobot ``trials`` spans
    (:func:`arc_reach` of its positions ``s_{t+1}`` over the valid steps); NaN for one that never comes within the
    goal radius of it."""
    positions = trials.next_obs[..., :2].reshape(-1, trials.horizon, 2)
    valid = trials.valid.reshape(-1, trials.horizon)
    reaches = [arc_reach([{"observations": episode[steps]}]) for episode, steps in zip(positions, valid)]
    return np.array([np.nan if reach is None else reach[1] - reach[0] for reach in reaches])


def arc_coverage(trials: TrialArrays) -> dict[str, float]:
    """How far along the goal arc the episodes of sparse-PointRobot ``trials`` sweep (:func:`arc_spans`): the
    fraction that reach the arc at all and that span at least 45 / 90 / 140 degrees of it, and the median and 90th
    percentile span. A fruitless sweep, relabelled for a goal it missed, is what tells the belief "not here"."""
    spans = arc_spans(trials)
    report = {"episodes": int(spans.size), "reach_the_arc": round(float((~np.isnan(spans)).mean()), 4)}
    spans = np.nan_to_num(spans)  # an episode that never reaches the arc sweeps 0 degrees of it
    for k in (45, 90, 140):
        report[f"span_{k}_or_more"] = round(float((spans >= k).mean()), 4)
    report["span_median"], report["span_p90"] = (round(float(x), 1) for x in np.percentile(spans, [50, 90]))
    return report


def coverage(args: argparse.Namespace) -> None:
    """``coverage``: :func:`search_coverage` of the logged GridNavi trials in ``args.data``, or with ``--family
    point_robot_sparse`` :func:`arc_coverage` of the logged training tasks' trials, as JSON."""
    from lit_offmeta.datamodules.trajectory import load_trials_from_storage

    family = get_family(args.family)
    if args.family == "point_robot_sparse":
        episodes = int(getattr(family, "episodes_per_trial", 2))  # as `touches`
        trials = load_trials_from_storage(family, args.data, list(family.split().train), episodes)
        print(json.dumps(arc_coverage(trials)))
        return
    trials = load_trials_from_storage(family, args.data, list(range(len(GOAL_CELLS))), family.episodes_per_trial)
    print(json.dumps(search_coverage(trials)))


def brief_touches(family, trials: TrialArrays, tasks: list[dict], brief: int = 3, far: float = 0.4) -> dict:
    """How often the logged paths of sparse-PointRobot ``trials`` pass through one of ``tasks``' goal discs and move
    on: what reward relabelling turns into "the goal was touched briefly" for the belief VAE. For every (logged
    episode, task) pair, the steps the family's reward pays under that task (as relabelling computes them); a
    brief touch pays 1 to ``brief`` steps and the episode ends more than ``far`` from the goal."""
    if family.name != "point_robot_sparse":  # a dense reward never "pays" a step: every count would read 0
        raise ValueError(f"brief_touches: needs the point_robot_sparse family, got {family.name!r}")
    if brief < 1 or far < 0:
        raise ValueError(f"brief_touches: need brief >= 1 and far >= 0, got brief={brief}, far={far}")
    obs, act, nxt = (x.reshape(-1, *x.shape[2:]) for x in (trials.obs, trials.actions, trials.next_obs))  # episodes
    valid = trials.valid.reshape(-1, trials.horizon)
    paid = np.stack([(relabel_rewards(family, task, obs, act, nxt) > 0) & valid for task in tasks], -1)  # [N, H, T]
    steps = paid.sum(1)
    last = valid.cumsum(1).argmax(1)  # each episode's last valid step
    goals = np.array([task["goal"] for task in tasks], np.float32)
    end_distance = np.linalg.norm(nxt[np.arange(len(nxt)), last][:, None] - goals[None], axis=-1)  # [N, T]
    touched, is_brief = steps > 0, (steps > 0) & (steps <= brief) & (end_distance > far)
    first = paid.argmax(1)
    return {
        "episodes": int(len(nxt)), "tasks": len(tasks),
        "pairs_touched": round(float(touched.mean()), 4),
        "pairs_touched_briefly": round(float(is_brief.mean()), 4),
        "brief_touches_per_episode": round(float(is_brief.sum(1).mean()), 3),
        "episodes_with_a_brief_touch": round(float(is_brief.any(1).mean()), 4),
        "first_paid_step_of_brief_touches_quartiles": np.percentile(first[is_brief], [25, 50, 75]).tolist()
        if is_brief.any() else None,
    }


def touches(args: argparse.Namespace) -> None:
    """``touches``: :func:`brief_touches` of the logged sparse-PointRobot trials in ``args.data`` against the
    training goals (the goals the VAE's relabelled trials use), as JSON."""
    from lit_offmeta.datamodules.trajectory import load_trials_from_storage

    family = get_family("point_robot_sparse")
    train = list(family.split().train)
    trials = load_trials_from_storage(family, args.data, train, int(getattr(family, "episodes_per_trial", 2)))
    tasks = [family.default_tasks()[i] for i in train]
    print(json.dumps(brief_touches(family, trials, tasks, args.brief, args.far)))


def config_rl_trials(data: str) -> TrialArrays:
    """The RL trials the GridNavi config's pipeline builds from the logged trials in ``data`` (``rl_data:
    relabelled``, ``rl_trials_per_task`` 400, seed 0; as ``OfflineVariBAD.rl_trials``)."""
    from lit_offmeta.datamodules.trajectory import load_trials_from_storage

    family = get_family("grid_navi")
    trials = load_trials_from_storage(family, data, list(range(len(GOAL_CELLS))), family.episodes_per_trial)
    targets = np.repeat(np.arange(len(GOAL_CELLS)), CONFIG_RL_TRIALS_PER_TASK)
    return mix_trials(family, trials, targets, np.random.default_rng([0, 1]), mix_prob=1.0)


@torch.no_grad()
def belief_error_report(vae, trials: TrialArrays) -> dict:
    """Decoded belief of ``vae`` (a ``"cells"`` BeliefVAE) vs the exact posterior at every hyper-state of ``trials``.

    Total variation between the decoded goal map (normalised to sum 1) and the exact posterior, split into "goal
    already found" and "not yet found", and for the latter by step of the trial; the mean decoded ``p`` on
    searched and on unsearched goal cells; and, while not found, the normalised map's mass on searched cells (the
    exact posterior puts none there: this part of the total variation comes from cells not ruled out firmly enough),
    and the belief's mean posterior standard deviation ``exp(logvar / 2)``.
    """
    vae = vae.eval()
    learned = relabel_states(vae.encoder, trials)  # (s, mu, logvar), in the same row order as the exact ones
    exact = exact_hyperstates(trials, episode_time=True)
    latent = vae.encoder.latent_dim
    decoded = vae.goal_probabilities(learned.obs[:, 2 : 2 + latent]).flatten(-2)
    post = exact.obs[:, 2 : 2 + CELLS]
    normalised = decoded / decoded.sum(-1, keepdim=True)
    tv = 0.5 * (normalised - post).abs().sum(-1)
    found = post.max(-1).values > 0.999
    step = (exact.obs[:, -1] * trials.horizon).round().long() + trials.horizon * exact.episode
    goal_cell = torch.as_tensor(exact_prior() > 0)
    searched, unsearched = (post == 0) & goal_cell & ~found[:, None], (post > 0) & ~found[:, None]
    searched_mass = (normalised * searched).sum(-1)

    def at_steps(x: torch.Tensor) -> dict[int, float]:
        return {
            k: round(float(x[(step == k) & ~found].mean()), 3) for k in REPORT_STEPS if ((step == k) & ~found).any()
        }

    return {"hyperstates": len(tv),
            "tv_found": round(float(tv[found].mean()), 3), "tv_not_found": round(float(tv[~found].mean()), 3),
            "p_searched_goal_cells": round(float(decoded[searched].mean()), 3),
            "p_unsearched_goal_cells": round(float(decoded[unsearched].mean()), 3),
            "exact_p_unsearched": round(float(post[unsearched].mean()), 3),
            "tv_not_found_at_step": at_steps(tv), "searched_mass_at_step": at_steps(searched_mass),
            "posterior_std_at_step": at_steps(learned.obs[:, 2 + latent : 2 + 2 * latent].mul(0.5).exp().mean(-1))}


def fit_probe(features: torch.Tensor, post: torch.Tensor, train: torch.Tensor, steps: int = 4000, seed: int = 0):
    """A fresh MLP (128, 128) from standardised ``features [N, F]`` to a softmax over the 25 cells, fitted by
    cross-entropy to the exact posterior ``post [N, 25]`` on the rows ``train``; returns its map ``[N, 25]``. How much
    of the exact posterior a representation holds, read out as well as a supervised probe can."""
    from lit_offmeta.nn.mlp import mlp

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mean, std = features[train].mean(0), features[train].std(0) + 1e-6
    x = (features - mean) / std
    net = mlp(x.shape[1], (128, 128), post.shape[1])
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rows = torch.nonzero(train)[:, 0]
    for _ in range(steps):
        idx = rows[torch.randint(len(rows), (512,), generator=generator)]
        loss = -(post[idx] * torch.log_softmax(net(x[idx]), -1)).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return torch.softmax(net(x), -1)


def belief_probe(args: argparse.Namespace) -> None:
    """``fit_probe`` on a ``train-vae`` VAE's belief ``(mu, logvar)`` or (``--hidden``) its encoder's hidden state,
    along the config's RL trials (as ``belief-error --vae``); total variation on held-out trials (every third)."""
    trials = config_rl_trials(args.data)
    trials = trials.select(np.arange(0, trials.num_trials, args.every))
    encoder = load_vae(args.vae).eval().encoder
    if args.hidden:  # the hidden state itself in the place of (mu, logvar)
        encoder.belief = lambda h: (h, h[..., :0])
    with torch.no_grad():
        learned = relabel_states(encoder, trials)
    exact = exact_hyperstates(trials, episode_time=True)
    post = exact.obs[:, 2 : 2 + CELLS]
    held_out = relabelled_row_trials(trials) % 3 == 0
    probe = fit_probe(learned.obs[:, 2:], post, ~held_out, args.steps)
    tv = 0.5 * (probe - post).abs().sum(-1)
    found = post.max(-1).values > 0.999
    step = (exact.obs[:, -1] * trials.horizon).round().long() + trials.horizon * exact.episode
    rows = held_out & ~found
    print(json.dumps({"input": "hidden" if args.hidden else "belief", "features": learned.obs.shape[1] - 2,
                      "probe_tv_not_found": round(float(tv[rows].mean()), 3),
                      "probe_tv_not_found_at_step": {k: round(float(tv[rows & (step == k)].mean()), 3)
                                                     for k in REPORT_STEPS if (rows & (step == k)).any()}}))


# the BeliefVAE of configs/borel/grid_navi.yaml
GRID_VAE = {"decoder": "cells", "state_embed_dim": 32, "action_embed_dim": 0, "reward_embed_dim": 8, "hidden_dim": 64,
            "latent_dim": 5, "decoder_hidden": (32, 32), "kl_weight": 0.05}


def load_vae(path: str):
    """A BeliefVAE written by ``train-vae`` (``{"settings", "state_dict"}``), or a bare ``state_dict`` of the
    config's VAE (``GRID_VAE``; files of earlier sessions)."""
    from lit_offmeta.algorithms.borel.vae import BeliefVAE

    saved = torch.load(path, weights_only=True)
    settings, state = (saved["settings"], saved["state_dict"]) if "state_dict" in saved else (GRID_VAE, saved)
    vae = BeliefVAE("grid_navi", **settings)
    vae.load_state_dict(state)
    return vae


def train_vae(args: argparse.Namespace) -> None:
    from lit_offmeta.algorithms.borel.vae import BeliefVAE
    from lit_offmeta.datamodules.trajectory import TrialDataModule

    settings = {**GRID_VAE, "lr": args.lr, **json.loads(args.vae)}
    batch = {"tasks_per_batch": 8, "trials_per_task": 8, **json.loads(args.batch)}
    torch.manual_seed(args.seed)
    dm = TrialDataModule("grid_navi", data_root=args.data, split="all", reward_relabelling=args.mix_prob > 0,
                         mix_prob=args.mix_prob, seed=args.seed, steps_per_epoch=500, **batch)
    dm.setup("fit")
    vae = BeliefVAE("grid_navi", **settings)
    fit_vae(vae, dm, args.steps, args.seed)
    torch.save({"settings": settings, "state_dict": vae.state_dict()}, args.out)


def fit_vae(vae, dm, steps: int, seed: int) -> None:
    """The pipeline's VAE stage alone: ``steps`` updates of ``vae``'s own optimizer on the set-up datamodule
    ``dm``'s batch stream (a generator per epoch of ``dm.steps_per_epoch`` batches, seeded ``[seed, epoch]``),
    printing the loss every 500 updates as JSON."""
    opt = vae.configure_optimizers()
    start = time.time()
    for step in range(1, steps + 1):
        if (step - 1) % dm.steps_per_epoch == 0:  # a new epoch
            rng = np.random.default_rng([seed, (step - 1) // dm.steps_per_epoch])
        loss, _ = vae.compute_loss(dm.sample_batch(rng))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 500 == 0:
            print(
                json.dumps({"step": step, "loss": round(float(loss.detach()), 1), "s": round(time.time() - start)}),
                flush=True,
            )


@torch.no_grad()
def belief(args: argparse.Namespace) -> None:
    if args.ckpt:
        vae = load_pipeline(args.ckpt).vae
    else:
        vae = load_vae(args.vae)
    vae.eval()
    enc = vae.encoder
    for name, (path, found) in PATHS.items():
        h = enc.initial_state(1)
        for cell in path:
            reward = 1.0 if found and cell == GOAL else -0.1
            h = enc.step(h, torch.zeros(1, dtype=torch.long), torch.tensor([cell], dtype=torch.float32),
                         torch.tensor([reward]))
        probs = vae.goal_probabilities(enc.belief(h)[0])[0].numpy()
        searched = [] if found else [c for c in path if c in GOAL_CELLS]
        report = {"path": name, "p_max": round(float(probs.max()), 3),
                  "p_mean_goal_cells": round(float(np.mean([probs[c] for c in GOAL_CELLS])), 3)}
        if searched:
            report["p_searched_mean"] = round(float(np.mean([probs[c] for c in searched])), 3)
            rest = [c for c in GOAL_CELLS if c not in searched]
            report["p_unsearched_mean"] = round(float(np.mean([probs[c] for c in rest])), 3)
        if found:
            report["p_at_goal"] = round(float(probs[GOAL]), 3)
        print(json.dumps(report))


def episodes_batch(family, episodes: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Recorded episodes of ``family`` (Minari layout) as one-episode trials in the time-major batch layout
    (:func:`~lit_offmeta.datamodules.trajectory.trials_to_batch`, ``[H, N, ...]``); steps past an episode's end are
    invalid."""
    from lit_offmeta.datamodules.trajectory import trials_to_batch

    meta = [{"trial_index": 0, "episode_in_trial": 0}]
    return trials_to_batch(TrialArrays.concatenate([
        # the task dict is only read by reward relabelling, which this does not do
        trials_from_episodes(i, {}, [ep], meta, 1, family.horizon, "rollout") for i, ep in enumerate(episodes)]))


@torch.no_grad()
def belief_after(encoder, family, episodes: list[dict[str, np.ndarray]]) -> torch.Tensor:
    """The belief mean ``[N, latent]`` of ``encoder`` after each recorded episode of ``family`` (Minari layout,
    from the prior): the belief a trial's next episode starts with."""
    batch = episodes_batch(family, episodes)  # invalid steps leave the belief unchanged
    device = next(encoder.parameters()).device
    mu, _ = encoder(*(batch[k].to(device) for k in ("actions", "next_obs", "rewards", "valid")))
    return mu[-1].cpu()


def goal_arc(points: int = 361) -> torch.Tensor:
    """``[points, 2]`` positions on the upper unit semicircle, where sparse PointRobot's goals lie."""
    angles = torch.linspace(0.0, math.pi, points)
    return torch.stack([torch.cos(angles), torch.sin(angles)], -1)


def arc_reach(episodes: list[dict]) -> list[float] | None:
    """The span of the goal arc a search reaches: ``[min, max]`` angle in degrees of the positions in ``episodes``
    (their ``observations``) that lie within the goal radius of the upper unit semicircle; ``None`` if none does. A
    goal further than the goal radius beyond either end cannot be found by these episodes. Positions below the x
    axis are left out: the goals are not there, and there the angle wraps from -180 to 180 degrees."""
    from lit_offmeta.tasks.point_robot import GOAL_RADIUS

    positions = np.concatenate([np.asarray(ep["observations"])[:, :2] for ep in episodes])
    near = (np.abs(np.linalg.norm(positions, axis=-1) - 1.0) <= GOAL_RADIUS) & (positions[:, 1] >= 0)
    if not near.any():
        return None
    angles = np.degrees(np.arctan2(positions[near, 1], positions[near, 0]))
    return [round(float(angles.min()), 1), round(float(angles.max()), 1)]


def searched_split(decoded: np.ndarray, reach: list[float] | None) -> list[float] | None:
    """``[searched, unsearched]``: the mean of ``decoded`` (a value per point of :func:`goal_arc`, evenly spaced from
    0 to 180 degrees) on the span ``reach`` (``[min, max]`` degrees, :func:`arc_reach`) and on the rest of the arc.
    ``None`` without a reach or when the reach covers the whole arc. A belief that has learned from a fruitless
    search decodes ~0 on the searched span and more than the prior on the rest."""
    if reach is None:
        return None
    angles = np.linspace(0.0, 180.0, len(decoded))
    inside = (angles >= reach[0]) & (angles <= reach[1])
    if inside.all():
        return None
    return [float(decoded[inside].mean()), float(decoded[~inside].mean())]


@torch.no_grad()
def decode_on_arc(vae, mu: torch.Tensor, arc: torch.Tensor) -> torch.Tensor:
    """What beliefs ``mu [N, latent]`` decode at each point of ``arc [A, 2]`` (:func:`goal_arc`) -> ``[N, A]``: the
    decoded reward there (``"next_obs"`` decoder), or the probability of the point's bin (``"goal_arc"``)."""
    device = next(vae.parameters()).device
    if vae.decoder_kind == "goal_arc":
        # |y|: float32 sin(pi) is -9e-8, which would put 180 degrees at -180, in the first bin
        bins = arc_bin(np.arctan2(np.abs(arc[:, 1].numpy()), arc[:, 0].numpy()), vae.cfg.goal_bins)
        return vae.goal_map(mu.to(device)).cpu()[:, torch.as_tensor(bins)]
    return vae.decoder(mu[:, None].to(device), arc[None].to(device)).cpu()


def goal_found_report(model, seed: int | None = None, paths=None, ema: float | None = None) -> dict:
    """``goal-found``: one trial of two episodes per held-out goal of a sparse-PointRobot ``model``. The belief at
    the start of episode 2 "locates" the goal when the decoded reward ``r(mu, x)`` (with the ``"goal_arc"`` decoder:
    the probability of ``x``'s bin, :func:`decode_on_arc`), maximised over ``x`` on the goal arc, peaks within the
    goal radius of the true goal. Splits episode 2's success by that and by whether episode 1
    found the goal, and reports episode 1's rewarded steps, so a failure can be put on the belief (found but not
    located) or on the agent (located but not reached). ``paths``: another checkpoint whose policy drives the
    trials (``model``'s belief then reads that policy's episode 1; episode 2's success is that policy's). Also
    where episode 1 searches: the angles of the goals it misses and the span of the arc it reaches (:func:`arc_reach`,
    over all trials). For the goals episode 1 misses, what the belief made of the fruitless search: the angle where
    its decoded reward peaks, and its mean decoded reward on the span that trial's episode 1 reached against the
    rest of the arc, next to the prior's on the same spans (:func:`searched_split`). ``ema``: the driving policy
    acts with its moving-average agent of that decay (``rl_eval_ema``) instead of the last iterate."""
    from lit_offmeta.tasks.point_robot import GOAL_RADIUS

    family = model.family
    if family.name != "point_robot_sparse" or model.vae.decoder_kind not in ("next_obs", "goal_arc"):
        raise SystemExit(f"goal-found: needs a point_robot_sparse model with the 'next_obs' or 'goal_arc' decoder, "
                         f"got {family.name!r} / {model.vae.decoder_kind!r}")
    paths = model if paths is None else paths
    tasks = [family.default_tasks()[i] for i in family.split().test]
    seed = paths.hparams.seed if seed is None else seed
    result = evaluate_trials(paths.belief_policy(ema), family, tasks, 2, seed=seed, record=True)
    arc = goal_arc()
    mu = belief_after(model.vae.encoder, family, [ep[0] for ep in result.episodes])  # the belief episode 2 starts with
    decoded = decode_on_arc(model.vae, mu, arc)  # [N, A]
    prior = model.vae.encoder.belief(model.vae.encoder.initial_state(1, model.device))[0].cpu()
    prior_decoded = decode_on_arc(model.vae, prior, arc).reshape(-1).numpy()
    prior_peak = prior_decoded.max()
    estimate = arc[decoded.argmax(-1)].numpy()
    goals = np.array([t["goal"] for t in tasks], dtype=np.float32)
    located = np.linalg.norm(estimate - goals, axis=-1) <= GOAL_RADIUS
    found, second = result.success[:, 0], result.success[:, 1]
    rewarded = np.array([int((ep[0]["rewards"] > 0).sum()) for ep in result.episodes])
    goal_angles = np.degrees(np.arctan2(goals[:, 1], goals[:, 0]))
    arc_angles = np.linspace(0.0, 180.0, len(arc))
    splits = []  # per missed trial with a reach: ([searched, unsearched] of its belief, of the prior)
    for i in np.flatnonzero(~found):
        reach = arc_reach([result.episodes[i][0]])
        if searched_split(prior_decoded, reach) is not None:
            splits.append((searched_split(decoded[i].numpy(), reach), searched_split(prior_decoded, reach)))

    def rate(x: np.ndarray, where: np.ndarray) -> float | None:
        return round(float(x[where].mean()), 3) if where.any() else None

    return {
        "tasks": len(tasks),
        "success_ep1": round(float(found.mean()), 3),
        "success_ep2": round(float(second.mean()), 3),
        "located": round(float(located.mean()), 3),
        "ep2_success_if_located": rate(second, located),
        "ep2_success_if_not_located": rate(second, ~located),
        "ep2_success_if_found": rate(second, found),  # does the agent return to what episode 1 found?
        "ep2_success_if_not_found": rate(second, ~found),
        "found_in_ep1_but_not_located": int((found & ~located).sum()),
        "ep1_rewarded_steps_if_located": rewarded[found & located].tolist(),
        "ep1_rewarded_steps_if_found_not_located": rewarded[found & ~located].tolist(),
        "decoded_peak_prior": round(float(prior_peak), 3),
        "decoded_peak_mean": round(float(decoded.max(-1).values.mean()), 3),
        "decoded_peak_if_found_not_located": [round(float(x), 3) for x in decoded.max(-1).values[found & ~located]],
        "ep1_missed_goal_angles": sorted(round(float(a), 1) for a in goal_angles[~found]),
        "ep1_arc_reach": arc_reach([ep[0] for ep in result.episodes]),
        "ep1_missed_belief_peak_angles": sorted(round(float(a), 1) for a in arc_angles[decoded.argmax(-1)][~found]),
        # mean over the missed trials of [searched, unsearched]: the belief's, then the prior's on the same spans
        "ep1_missed_decoded_searched_unsearched": (
            [round(float(x), 3) for x in np.mean([b for b, _ in splits], axis=0)] if splits else None),
        "prior_decoded_searched_unsearched": (
            [round(float(x), 3) for x in np.mean([p for _, p in splits], axis=0)] if splits else None),
    }


def exact_task_posterior(family, tasks: list[dict], batch: dict[str, torch.Tensor]) -> np.ndarray:
    """The exact posterior over ``tasks`` (uniform prior) after each step of a batch of trials of a family whose
    rewards are a deterministic function of the transition: a task keeps its weight while the reward it pays equals
    the observed one at every valid step so far. ``batch``: time-major (:func:`trials_to_batch`), ``[L, B, ...]``.
    Returns ``[L + 1, B, T]`` (index 0 the prior); a row no task explains is all zeros."""
    obs, act, nxt = (batch[k].numpy() for k in ("obs", "actions", "next_obs"))
    rewards, valid = batch["rewards"].numpy(), batch["valid"].numpy().astype(bool)
    agrees = np.stack([np.isclose(family.reward(task, obs, act, nxt), rewards) | ~valid for task in tasks], -1)
    alive = np.concatenate([np.ones_like(agrees[:1]), np.cumprod(agrees, axis=0)]).astype(np.float64)
    total = alive.sum(-1, keepdims=True)
    return np.divide(alive, total, out=np.zeros_like(alive), where=total > 0)


@torch.no_grad()
def arc_nll_report(vae, dm, batches: int = 20, seed: int = 0) -> dict:
    """``arc-nll``: per trial, ``-sum_t log p(goal bin | belief_t)`` of a ``goal_arc`` ``vae`` (at the belief mean),
    of the exact posterior over ``dm``'s training goals, and of the uniform map, on ``batches`` of ``dm``'s VAE
    batches (seeded ``[seed, 1]``)."""
    if vae.decoder_kind != "goal_arc":
        raise SystemExit(f"arc-nll: needs a VAE with the 'goal_arc' decoder, got {vae.decoder_kind!r}")
    family = vae.family
    train = sorted(int(i) for i in np.unique(dm.train_trials.task_index))
    tasks = [family.default_tasks()[i] for i in train]
    task_bins = vae.goal_class[torch.as_tensor(train)].cpu().numpy()
    one_hot = np.eye(vae.cfg.goal_bins)[task_bins]  # [T, K]
    rng = np.random.default_rng([seed, 1])
    sums = {"vae": 0.0, "exact": 0.0, "uniform": 0.0}
    trials = 0
    for _ in range(batches):
        batch = dm.sample_batch(rng)
        valid = batch["valid"]
        beliefs = torch.cat([torch.ones_like(valid[:1]), valid]).numpy()  # [L + 1, B]: prior + valid steps
        goal = vae.goal_class[batch["task_index"].long()].cpu()
        mu, _ = vae.encoder(*(batch[k] for k in ("actions", "next_obs", "rewards", "valid")))
        sums["vae"] += float((vae.goal_nll(mu, batch["task_index"]).cpu().numpy() * beliefs).sum())
        exact = exact_task_posterior(family, tasks, batch) @ one_hot  # [L + 1, B, K]
        p_goal = np.take_along_axis(exact, goal.numpy()[None, :, None].repeat(len(exact), 0), -1)[..., 0]
        sums["exact"] += float((-np.log(np.maximum(p_goal, 1e-12)) * beliefs).sum())
        sums["uniform"] += float(np.log(vae.cfg.goal_bins) * beliefs.sum())
        trials += valid.shape[1]
    return {f"{k}_nll_per_trial": round(v / trials, 1) for k, v in sums.items()} | {"trials": trials}


def point_robot_vae_batches(data: str, seed: int):
    """The set-up datamodule of the PointRobot config's VAE stage (configs/borel/point_robot_sparse.yaml: 8 tasks x 2
    shared paths, every episode relabelled); checkpoints do not store the datamodule's settings."""
    from lit_offmeta.datamodules.trajectory import TrialDataModule

    dm = TrialDataModule("point_robot_sparse", data_root=data, split="paper", episodes_per_trial=2,
                         tasks_per_batch=8, trials_per_task=2, reward_relabelling=True, mix_prob=1.0,
                         shared_paths=True, steps_per_epoch=500, seed=seed)
    dm.setup("fit")
    return dm


def arc_nll(args: argparse.Namespace) -> None:
    """``arc-nll``: :func:`arc_nll_report` of a pipeline checkpoint's VAE on the PointRobot config's VAE batches."""
    vae = load_pipeline(args.ckpt).vae
    print(json.dumps(arc_nll_report(vae, point_robot_vae_batches(args.data, args.seed), args.batches, args.seed)))


def goal_found(args: argparse.Namespace) -> None:
    """``goal-found``: :func:`goal_found_report` of a pipeline checkpoint, as JSON."""
    paths = load_pipeline(args.paths) if args.paths else None
    print(json.dumps(goal_found_report(load_pipeline(args.ckpt), args.seed, paths, args.ema)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    a = sub.add_parser("arc-nll", help="PointRobot goal_arc belief: its goal-bin NLL against the exact posterior's")
    a.add_argument("--ckpt", required=True, help="an OfflineVariBAD checkpoint (point_robot_sparse, goal_arc decoder)")
    a.add_argument("--data", required=True, help="folder written by `lit-offmeta collect` (point_robot_sparse)")
    a.add_argument("--batches", type=int, default=20, help="VAE batches (16 trials each) to score")
    a.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("touches", help="PointRobot: how often logged paths touch another training goal briefly")
    t.add_argument("--data", required=True, help="folder written by `lit-offmeta collect` (point_robot_sparse)")
    t.add_argument("--brief", type=int, default=3, help="at most this many rewarded steps")
    t.add_argument("--far", type=float, default=0.4, help="and the episode ends more than this far from the goal")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    {"train-vae": train_vae, "belief": belief, "exact-rl": exact_rl, "belief-error": belief_error,
     "belief-probe": belief_probe, "exact-eval": exact_eval, "coverage": coverage, "goal-found": goal_found,
     "arc-nll": arc_nll, "touches": touches}[args.cmd](args)


if __name__ == "__main__":
    main()
