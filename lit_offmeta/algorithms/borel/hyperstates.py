"""State relabelling (BOReL step 3): offline trials -> hyper-state transitions ``((s, mu, logvar), a, r, ...)``.

The frozen encoder runs over every logged trial (rewards as logged, NOT reward-relabelled) from the prior at the
trial's start: the only encoder reset, the same one used in VAE training and online evaluation (reference bug 4).
Each state ``s_t`` becomes the hyper-state ``s^+_t = (s_t, mu_t, logvar_t)``, where ``(mu_t, logvar_t)`` is the
belief after the trial's first ``t`` transitions; the belief is detached, so RL never trains the encoder.

The successor of ``s^+_t`` follows the BAMDP: inside an episode it is ``(s_{t+1}, b_{t+1})``; after the last step
of an episode that is not the trial's last, the agent continues at the NEXT episode's start state with belief
``b_{t+1}``. Only a true environment termination in the trial's last episode is a terminal; reaching a goal never
is (reference bug 5), and the trial's time-limit end is a truncation (bootstrapped).

With ``episode_time`` the hyper-state also holds the step within the episode as ``t / H`` (the BAMDP wrapper's
episode-boundary information, docs/REFERENCE.md, "Environments"): without it the same ``(s, b)`` is followed by a
jump back to the start state at some visits and not at others, and a searching agent cannot tell how many steps
it has left. It is ``0`` at every episode start, so a successor across an episode boundary gets ``0`` too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lit_offmeta.data.relabel import TrialArrays
from lit_offmeta.nn.belief import BeliefEncoder

HYPER_KEYS = ("obs", "actions", "rewards", "next_obs", "terminals", "task_index", "episode")
RELABEL_BATCH = 512
"""Trials encoded at once by :func:`relabel_states` (its rows come chunk by chunk, each chunk time-major over its
trials' valid steps)."""


BeliefInput = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def hyper_state(
    obs: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    time: torch.Tensor | None = None,
    belief_input: BeliefInput | None = None,
) -> torch.Tensor:
    """``s^+ = (s, mu, logvar)`` concatenated along the last axis, then ``t / H`` ``[...]`` when given.

    ``belief_input(mu, logvar)``, when given, replaces ``(mu, logvar)`` by another representation of the same belief
    (e.g. the decoded goal map, :meth:`~lit_offmeta.algorithms.borel.vae.BeliefVAE.goal_probabilities`)."""
    belief = [mu, logvar] if belief_input is None else [belief_input(mu, logvar)]
    parts = [obs.float(), *belief]
    if time is not None:
        parts.append(time.float().unsqueeze(-1))
    return torch.cat(parts, dim=-1)


@dataclass
class HyperStateTransitions:
    """Hyper-state transitions of the whole dataset.

    Attributes:
        obs: ``[M, obs_dim + 2 * latent_dim (+ 1 with the episode time)]``,
            ``s^+_t``.
        actions: ``[M, act_dim]`` float or ``[M]`` int64.
        rewards: ``[M]`` float32, the logged (environment) rewards.
        next_obs: like ``obs``, the BAMDP successor ``s^+_{t+1}``.
        terminals: ``[M]`` float32, 1 only at a true termination in a trial's last episode.
        task_index: ``[M]`` int64.
        episode: ``[M]`` int64, the episode of the trial the transition belongs to.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminals: torch.Tensor
    task_index: torch.Tensor
    episode: torch.Tensor

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    def sample(self, tasks_per_batch: int, per_task: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``tasks_per_batch`` tasks (with replacement) x ``per_task`` transitions each, flattened.

        The reference samples 16 tasks x 256 transitions per RL update.
        """
        if not hasattr(self, "_by_task"):
            tasks = torch.unique(self.task_index)
            self._tasks = tasks
            self._by_task = [torch.nonzero(self.task_index == t).squeeze(1) for t in tasks]
        picks = torch.randint(len(self._by_task), (tasks_per_batch,), generator=generator)
        index = torch.cat(
            [
                self._by_task[p][torch.randint(len(self._by_task[p]), (per_task,), generator=generator)]
                for p in picks.tolist()
            ]
        )
        return {k: getattr(self, k)[index] for k in HYPER_KEYS}

    def save(self, path: str | Path) -> Path:
        """Write the cache atomically (a temporary name, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({k: v for k, v in asdict(self).items() if k in HYPER_KEYS}, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> HyperStateTransitions:
        """Read a cache written by :meth:`save` (tensors only: ``weights_only=True``)."""
        data = torch.load(path, weights_only=True)
        missing = [k for k in HYPER_KEYS if k not in data]
        if missing:
            raise ValueError(f"{path}: not a hyper-state cache, lacks {missing}; rebuild it with relabel_states")
        return cls(**{k: data[k] for k in HYPER_KEYS})


@torch.no_grad()
def relabel_states(
    encoder: BeliefEncoder,
    trials: TrialArrays,
    batch_size: int = RELABEL_BATCH,
    episode_time: bool = False,
    belief_input: BeliefInput | None = None,
) -> HyperStateTransitions:
    """Run the frozen ``encoder`` over every trial and build hyper-state transitions.

    Args:
        encoder: the trained belief encoder (put in eval mode; gradients are not tracked).
        trials: the logged trials (rewards as the environment gave them).
        batch_size: trials encoded at once.
        episode_time: append the step within the episode, ``t / H``, to every hyper-state.
        belief_input: the belief's representation in the hyper-state (see :func:`hyper_state`).

    Returns:
        One hyper-state transition per valid step of every trial.
    """
    was_training = encoder.training
    encoder.eval()
    n, e_, h = trials.num_trials, trials.episodes_per_trial, trials.horizon
    length = e_ * h
    valid = trials.flat("valid")  # [N, L]
    # Steps whose BAMDP successor is the NEXT episode's start state: the last valid step of every episode but
    # the trial's last one.
    v3 = trials.valid  # [N, E, H]: an episode ends at its last valid step
    ends = (v3 & ~np.concatenate([v3[..., 1:], np.zeros_like(v3[..., :1])], axis=-1)).reshape(n, length)
    episode_of_step = np.repeat(np.arange(e_), h)[None].repeat(n, 0)  # [N, L]
    cross = ends & (episode_of_step < e_ - 1)
    # terminal only in the last episode; an earlier termination hands over to the next episode.
    terminals = trials.flat("terminals") & (episode_of_step == e_ - 1)
    # step within the episode, t / H; the successor's is (t + 1) / H, or 0 after an episode end (a new episode)
    step = np.tile(np.arange(h), e_)[None].repeat(n, 0).astype(np.float32)  # [N, L]
    time_t, time_tp1 = step / h, np.where(ends, 0.0, (step + 1) / h).astype(np.float32)
    # Encoded on the encoder's device (a GPU after training there), stored on the CPU.
    device = next(encoder.parameters(), torch.empty(0)).device  # (a parameter-free encoder: the CPU)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in HYPER_KEYS}
    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))

        def tm(key_or_array: str | np.ndarray, sl: slice = sl) -> torch.Tensor:
            """``[N, L, ...]`` rows of this chunk as a time-major ``[L, B, ...]`` tensor on ``device``."""
            x = trials.flat(key_or_array) if isinstance(key_or_array, str) else key_or_array
            return torch.from_numpy(np.ascontiguousarray(np.swapaxes(x[sl], 0, 1))).to(device)

        obs, next_obs, actions = tm("obs"), tm("next_obs"), tm("actions")  # [L, B, ...]
        mu, logvar = encoder(actions, next_obs, tm("rewards"), tm("valid"))  # [L + 1, B, D]
        # next episode's start state for the steps that cross an episode boundary
        next_start = torch.zeros_like(obs)
        for e in range(e_ - 1):
            next_start[e * h : (e + 1) * h] = obs[(e + 1) * h]
        successor = torch.where(tm(cross)[..., None], next_start, next_obs)
        times = [tm(time_t), tm(time_tp1)] if episode_time else [None, None]
        hyper_t = hyper_state(obs, mu[:-1], logvar[:-1], times[0], belief_input)  # [L, B, .]
        hyper_tp1 = hyper_state(successor, mu[1:], logvar[1:], times[1], belief_input)
        mask = tm(valid)  # [L, B]
        parts["obs"].append(hyper_t[mask])
        parts["next_obs"].append(hyper_tp1[mask])
        parts["actions"].append(actions[mask])
        parts["rewards"].append(tm("rewards")[mask])
        parts["terminals"].append(tm(terminals)[mask].float())
        parts["episode"].append(tm(episode_of_step)[mask])
        parts["task_index"].append(torch.from_numpy(trials.task_index[sl]).to(device)[None].expand(length, -1)[mask])
        for part in parts.values():
            part[-1] = part[-1].cpu()
    encoder.train(was_training)
    return HyperStateTransitions(**{k: torch.cat(v) for k, v in parts.items()})
