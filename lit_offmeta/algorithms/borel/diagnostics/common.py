"""What the GridNavi and the PointRobot diagnostics share: loading a pipeline checkpoint, recording its
policy's trials, the beliefs after recorded episodes, and the VAE stage alone."""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD, evaluate_trials
from lit_offmeta.data.relabel import TrialArrays, trials_from_episodes


def load_pipeline(path: str) -> OfflineVariBAD:
    """A pipeline checkpoint on the CPU (tensors only: ``weights_only=True``)."""
    return OfflineVariBAD.load_from_checkpoint(path, map_location="cpu", weights_only=True)


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
