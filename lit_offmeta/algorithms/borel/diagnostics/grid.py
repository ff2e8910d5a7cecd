"""GridNavi diagnostics: the exact posterior over the 21 goal cells as a belief encoder and a rollout policy, and the
checks that compare a learned belief or agent with it (``exact-rl``, ``exact-eval``, ``belief-error``,
``belief-probe``, ``belief``, ``train-vae``, ``coverage``; see the package docstring)."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch.nn import functional as F

from lit_offmeta.algorithms.borel.diagnostics.common import fit_vae, load_pipeline, policy_trials
from lit_offmeta.algorithms.borel.dqn import HyperStateDQN
from lit_offmeta.algorithms.borel.hyperstates import HyperStateTransitions, relabel_states, relabelled_row_trials
from lit_offmeta.algorithms.borel.pipeline import cosine_lr_decay_, evaluate_trials, summarise
from lit_offmeta.data.relabel import TrialArrays, mix_trials
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


def logged_trials(data: str) -> TrialArrays:
    """The logged GridNavi trials of all 21 goals in ``data`` (a folder written by ``lit-offmeta collect``)."""
    from lit_offmeta.datamodules.trajectory import load_trials_from_storage

    family = get_family("grid_navi")
    return load_trials_from_storage(family, data, list(range(len(GOAL_CELLS))), family.episodes_per_trial)


def exact_rl(args: argparse.Namespace) -> None:
    family = get_family("grid_navi")
    trials = logged_trials(args.data)
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

    family = get_family("grid_navi")
    logged = logged_trials(data)
    targets = np.tile(np.arange(len(GOAL_CELLS)), per_goal)
    return stitch_trials(family, logged, targets, np.random.default_rng(seed), novelty=1.0)


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


def config_rl_trials(data: str) -> TrialArrays:
    """The RL trials the GridNavi config's pipeline builds from the logged trials in ``data`` (``rl_data:
    relabelled``, ``rl_trials_per_task`` 400, seed 0; as ``OfflineVariBAD.rl_trials``)."""
    family = get_family("grid_navi")
    trials = logged_trials(data)
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
    dm = TrialDataModule("grid_navi", data_dir=args.data, split="all", reward_relabelling=args.mix_prob > 0,
                         mix_prob=args.mix_prob, seed=args.seed, steps_per_epoch=500, **batch)
    dm.setup("fit")
    vae = BeliefVAE("grid_navi", **settings)
    fit_vae(vae, dm, args.steps, args.seed)
    torch.save({"settings": settings, "state_dict": vae.state_dict()}, args.out)


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
