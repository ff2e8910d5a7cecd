"""Sparse-PointRobot diagnostics: where a search reaches on the goal arc, what the belief makes of a found or a
missed goal (``goal-found``), brief touches in the data (``touches``), the exact posterior over the training goals
and a ``goal_arc`` belief's NLL against it (``arc-nll``); see the package docstring."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import torch

from lit_offmeta.algorithms.borel.diagnostics.common import belief_after, load_pipeline
from lit_offmeta.algorithms.borel.pipeline import evaluate_trials
from lit_offmeta.algorithms.borel.vae import goal_arc_bin
from lit_offmeta.data.relabel import TrialArrays, relabel_rewards
from lit_offmeta.tasks import get_family


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


def logged_training_trials(data: str) -> TrialArrays:
    """The logged sparse-PointRobot trials (2 episodes each) of the training goals in ``data`` (a folder written by
    ``lit-offmeta collect``): what the VAE's relabelled trials and the RL stage's are drawn from."""
    from lit_offmeta.datamodules.trajectory import load_trials_from_storage

    family = get_family("point_robot_sparse")
    episodes = int(getattr(family, "episodes_per_trial", 2))
    return load_trials_from_storage(family, data, list(family.split().train), episodes)


def touches(args: argparse.Namespace) -> None:
    """``touches``: :func:`brief_touches` of the logged sparse-PointRobot trials in ``args.data`` against the
    training goals (the goals the VAE's relabelled trials use), as JSON."""
    family = get_family("point_robot_sparse")
    trials = logged_training_trials(args.data)
    tasks = [family.default_tasks()[i] for i in family.split().train]
    print(json.dumps(brief_touches(family, trials, tasks, args.brief, args.far)))


def second_search_rates(trials: TrialArrays, end_degrees: float = 15.0) -> dict:
    """How often the 2-episode sparse-PointRobot ``trials`` (the RL stage's, :meth:`OfflineVariBAD.rl_trials`) pay
    in episode 2 after an episode 1 that paid nothing: the examples from which the agent can learn a second search
    after a miss. Also the rate after a paid episode 1 and at the goals within ``end_degrees`` of the arc's ends,
    which the first episodes reach least. An episode "pays" when any of its valid steps has a positive reward."""
    if trials.episodes_per_trial != 2:
        raise ValueError(f"second_search_rates: needs 2-episode trials, got {trials.episodes_per_trial}")
    paid = ((trials.rewards > 0) & trials.valid).any(-1)  # [N, 2]
    goals = np.array([trials.tasks[int(i)]["goal"] for i in trials.task_index], np.float64)
    angle = np.degrees(np.arctan2(goals[:, 1], goals[:, 0]))
    end, missed = (angle < end_degrees) | (angle > 180.0 - end_degrees), ~paid[:, 0]

    def rate(where: np.ndarray) -> float | None:
        return round(float(paid[where, 1].mean()), 3) if where.any() else None

    return {"trials": int(len(paid)), "ep1_paid": round(float(paid[:, 0].mean()), 3),
            "ep2_paid_after_ep1_paid": rate(~missed), "ep2_paid_after_ep1_missed": rate(missed),
            "ends_trials": int(end.sum()), "ends_ep2_paid_after_ep1_missed": rate(end & missed),
            "middle_ep2_paid_after_ep1_missed": rate(~end & missed)}


def second_search(args: argparse.Namespace) -> None:
    """``second-search``: :func:`second_search_rates` of the trials a pipeline checkpoint's RL stage learns from,
    rebuilt from the logged training trials in ``args.data`` (``rl_trials`` is drawn from the model's seed)."""
    model = load_pipeline(args.ckpt)
    if model.family.name != "point_robot_sparse":
        raise SystemExit(f"second-search: needs a point_robot_sparse model, got {model.family.name!r}")
    print(json.dumps(second_search_rates(model.rl_trials(logged_training_trials(args.data)), args.end_degrees)))


def total_variation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[Na, Nb]``: the total-variation distance ``0.5 * sum_k |a_k - b_k|`` between every row of ``a [Na, K]`` and
    of ``b [Nb, K]`` (probability vectors over the same ``K`` classes)."""
    return 0.5 * np.abs(a[:, None, :] - b[None, :, :]).sum(-1)


def belief_neighbours(query: np.ndarray, data: np.ndarray, data_ep2_paid: np.ndarray, radius: float) -> dict:
    """How well the RL data cover the beliefs ``query [Nq, K]`` an agent starts episode 2 with: per query, the
    total-variation distance to the nearest of the data's episode-2 start beliefs ``data [Nd, K]``, how many lie
    within ``radius``, and over all those neighbours the fraction whose episode 2 pays (``data_ep2_paid [Nd]``):
    the examples SAC has of what to do from that belief."""
    if query.ndim != 2 or data.ndim != 2 or query.shape[1] != data.shape[1] or len(data_ep2_paid) != len(data):
        raise ValueError(f"belief_neighbours: need query [Nq, K], data [Nd, K], paid [Nd]; got {query.shape}, "
                         f"{data.shape}, {np.shape(data_ep2_paid)}")
    if not 0.0 < radius <= 1.0:
        raise ValueError(f"belief_neighbours: radius must be in (0, 1], got {radius}")
    if len(query) == 0:
        return {"beliefs": 0}
    distance = total_variation(query, data)
    near = distance <= radius
    counts = near.sum(1)
    paid = np.asarray(data_ep2_paid, bool)
    return {"beliefs": len(query),
            "nearest_median": round(float(np.median(distance.min(1))), 3),
            "neighbours_median": round(float(np.median(counts)), 1),
            "with_no_neighbour": int((counts == 0).sum()),
            "neighbours_ep2_paid": round(float(paid[near.nonzero()[1]].mean()), 3) if counts.sum() else None}


@torch.no_grad()
def episode2_start_beliefs(vae, trials: TrialArrays, chunk: int = 1024) -> np.ndarray:
    """``[N, bins]``: the decoded belief (``goal_map``) after episode 1 of each trial, from the prior: what the
    hyper-states of episode 2's first step hold. Padding steps leave the belief unchanged, so index ``H`` of the
    encoder's beliefs is it even for an episode 1 that ended early."""
    from lit_offmeta.datamodules.trajectory import trials_to_batch

    device = next(vae.parameters()).device
    out = []
    for start in range(0, trials.num_trials, chunk):
        batch = trials_to_batch(trials.select(np.arange(start, min(start + chunk, trials.num_trials))))
        mu, _ = vae.encoder(*(batch[k].to(device) for k in ("actions", "next_obs", "rewards", "valid")))
        out.append(vae.goal_map(mu[trials.horizon]).cpu().numpy())
    return np.concatenate(out)


def belief_support_report(model, trials: TrialArrays, radius: float = 0.3, seed: int | None = None,
                          ema: float | None = None) -> dict:
    """``belief-support``: one trial per held-out goal of a ``goal_arc`` sparse-PointRobot ``model``; the belief each
    starts episode 2 with, split by whether episode 1 found the goal, against the beliefs the RL stage's trials
    (:meth:`OfflineVariBAD.rl_trials` of the logged ``trials``) start episode 2 with (:func:`belief_neighbours`).
    If the beliefs after the agent's own fruitless search have few neighbours in the data, SAC has little to learn a
    second search from, however many paying second episodes the data hold overall (``second-search``)."""
    family = model.family
    if family.name != "point_robot_sparse" or model.vae.decoder_kind != "goal_arc":
        raise SystemExit(f"belief-support: needs a point_robot_sparse model with the 'goal_arc' decoder, got "
                         f"{family.name!r} / {model.vae.decoder_kind!r}")
    tasks = [family.default_tasks()[i] for i in family.split().test]
    seed = model.hparams.seed if seed is None else seed
    result = evaluate_trials(model.belief_policy(ema), family, tasks, 2, seed=seed, record=True)
    with torch.no_grad():
        query = model.vae.goal_map(belief_after(model.vae.encoder, family, [ep[0] for ep in result.episodes]))
    query = query.cpu().numpy()
    rl = model.rl_trials(trials)
    data = episode2_start_beliefs(model.vae, rl)
    paid = ((rl.rewards > 0) & rl.valid).any(-1)  # [N, 2]
    found = result.success[:, 0].astype(bool)
    report = {"radius": radius, "data_trials": rl.num_trials}
    for name, where in (("found", found), ("missed", ~found)):
        report[f"ep1_{name}"] = belief_neighbours(query[where], data, paid[:, 1], radius) | {
            "ep2_success": round(float(result.success[where, 1].mean()), 3) if where.any() else None}
    # the data's own fruitless first episodes, for scale: their beliefs against all the data's
    missed = np.flatnonzero(~paid[:, 0])
    sample = np.random.default_rng(0).choice(missed, size=min(200, len(missed)), replace=False)
    report["data_ep1_missed_sample"] = belief_neighbours(data[sample], data, paid[:, 1], radius)
    return report


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
        bins = goal_arc_bin(arc, vae.cfg.goal_bins)  # the VAE's own binning of its targets
        return vae.goal_map(mu.to(device)).cpu()[:, torch.as_tensor(bins)]
    return vae.decoder(mu[:, None].to(device), arc[None].to(device)).cpu()


def goal_found_report(model, seed: int | None = None, paths=None, ema: float | None = None,
                      action_samples: int | None = None) -> dict:
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
    acts with its moving-average agent of that decay (``rl_eval_ema``) instead of the last iterate.
    ``action_samples``: the driving policy picks its actions by its critics among its mean and this many draws
    (``rl_action_samples``; default: the checkpoint's own setting)."""
    from lit_offmeta.tasks.point_robot import GOAL_RADIUS

    family = model.family
    if family.name != "point_robot_sparse" or model.vae.decoder_kind not in ("next_obs", "goal_arc"):
        raise SystemExit(f"goal-found: needs a point_robot_sparse model with the 'next_obs' or 'goal_arc' decoder, "
                         f"got {family.name!r} / {model.vae.decoder_kind!r}")
    paths = model if paths is None else paths
    tasks = [family.default_tasks()[i] for i in family.split().test]
    seed = paths.hparams.seed if seed is None else seed
    result = evaluate_trials(paths.belief_policy(ema, action_samples), family, tasks, 2, seed=seed, record=True)
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

    dm = TrialDataModule("point_robot_sparse", data_dir=data, split="paper", episodes_per_trial=2,
                         tasks_per_batch=8, trials_per_task=2, reward_relabelling=True, mix_prob=1.0,
                         shared_paths=True, steps_per_epoch=500, seed=seed)
    dm.setup("fit")
    return dm


def arc_nll(args: argparse.Namespace) -> None:
    """``arc-nll``: :func:`arc_nll_report` of a pipeline checkpoint's VAE on the PointRobot config's VAE batches."""
    vae = load_pipeline(args.ckpt).vae
    print(json.dumps(arc_nll_report(vae, point_robot_vae_batches(args.data, args.seed), args.batches, args.seed)))


def belief_support(args: argparse.Namespace) -> None:
    """``belief-support``: :func:`belief_support_report` of a pipeline checkpoint, as JSON."""
    model = load_pipeline(args.ckpt)
    if args.walks_per_task is not None:  # the data side with this many search walks per goal instead
        model.hparams.rl_search_walks_per_task = args.walks_per_task
    report = belief_support_report(model, logged_training_trials(args.data), args.radius, args.seed, args.ema)
    print(json.dumps(report))


def goal_found(args: argparse.Namespace) -> None:
    """``goal-found``: :func:`goal_found_report` of a pipeline checkpoint, as JSON."""
    paths = load_pipeline(args.paths) if args.paths else None
    print(json.dumps(goal_found_report(load_pipeline(args.ckpt), args.seed, paths, args.ema, args.action_samples)))
