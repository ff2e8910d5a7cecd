"""Rollout policies of offline VariBAD for the shared evaluator (:class:`lit_offmeta.policy.RolloutPolicy`).

:class:`BeliefPolicy` is the Bayes-adaptive agent: it acts on the hyper-state ``(s, mu, logvar)`` and folds every
step into its belief with the encoder's :meth:`~lit_offmeta.nn.belief.BeliefEncoder.step`, the same recurrence
used in VAE training and state relabelling. The belief is reset ONLY by ``reset()`` (the start of a trial);
episode ends (``dones``) keep it, so what episode 1 found is used in episodes 2, 3, ...

:class:`ThompsonPolicy` is the comparison from the slides ("sample possible goal, pretend it is correct"): once
per episode it samples a task latent from the current belief and acts as if that sample were a confident
belief, ``(s, z, logvar_confident)``, where ``logvar_confident`` is the mean log-variance the encoder reaches at
the end of training trials (a belief that has identified its task). It still updates the belief every step,
so the next episode's sample uses all evidence so far. An agent that reads a decoded goal map instead of
``(mu, logvar)`` (GridNavi's ``belief_input: decoded``) gets the map's own posterior sample: one goal cell drawn
from the map, shown as the confident map that puts all mass on it. (With ``kl_weight`` 0 the latent's variance
collapses, so a latent sample would just be the mean; the uncertainty lives in the decoded map.)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from lit_offmeta.algorithms.borel.hyperstates import BeliefInput, hyper_state
from lit_offmeta.nn.belief import BeliefEncoder


class BeliefPolicy:
    """Acts on ``(s, mu_t, logvar_t)`` and updates the belief after every step.

    Args:
        encoder: the trained belief encoder.
        agent: an RL module with ``act(hyper_obs [N, d], deterministic) -> actions``.
        discrete_actions: return ``int64`` actions ``[N]``.
        deterministic: greedy / mean actions (the evaluation protocol).
        horizon: if given, the agent also sees the step within the episode as ``t / horizon`` (the
            ``episode_time`` hyper-states of :func:`~lit_offmeta.algorithms.borel.hyperstates.relabel_states`);
            the count restarts at every ``dones``.
        belief_input: the belief's representation in the hyper-state, as in ``relabel_states`` (``None``:
            ``(mu, logvar)``).
    """

    def __init__(
        self,
        encoder: BeliefEncoder,
        agent: nn.Module,
        discrete_actions: bool,
        deterministic: bool = True,
        horizon: int | None = None,
        belief_input: BeliefInput | None = None,
    ):
        if horizon is not None and horizon < 1:
            raise ValueError(f"BeliefPolicy: horizon must be >= 1 or None, got {horizon}")
        self.encoder = encoder.eval()
        self.agent = agent.eval()
        self.discrete_actions = discrete_actions
        self.deterministic = deterministic
        self.horizon = horizon
        self.belief_input = belief_input
        # The belief lives where the encoder does (a GPU after training there); environments speak numpy.
        self.device = next(encoder.parameters()).device
        self.h: torch.Tensor | None = None

    def _tensor(self, x: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), dtype=dtype, device=self.device)

    @torch.no_grad()
    def reset(self, num_envs: int) -> None:
        """Start a trial: every environment's belief becomes the prior ``q_0``."""
        self.h = self.encoder.initial_state(num_envs, self.device)
        self.mu, self.logvar = self.encoder.belief(self.h)
        self.t = torch.zeros(num_envs, device=self.device)

    def _latent(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mu, self.logvar

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.h is None:
            raise RuntimeError(f"{type(self).__name__}.act called before reset(num_envs)")
        mu, logvar = self._latent()
        time = self.t / self.horizon if self.horizon else None
        hyper = hyper_state(self._tensor(obs, torch.float32), mu, logvar, time, self.belief_input)
        actions = self.agent.act(hyper, deterministic=self.deterministic).cpu().numpy()
        return actions.astype(np.int64) if self.discrete_actions else actions.astype(np.float32)

    @torch.no_grad()
    def observe(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        dones: np.ndarray,
    ) -> None:
        """Fold ``(a_t, s_{t+1}, r_{t+1})`` into the belief; ``next_obs`` is the true successor (at an
        episode end, the final observation, not the next start). ``dones`` do NOT reset the belief."""
        if self.h is None:
            raise RuntimeError(f"{type(self).__name__}.observe called before reset(num_envs)")
        a = self._tensor(actions)
        a = a.long() if self.discrete_actions else a.float()
        self.h = self.encoder.step(
            self.h, a, self._tensor(next_obs, torch.float32), self._tensor(rewards, torch.float32)
        )
        self.mu, self.logvar = self.encoder.belief(self.h)
        self.t = torch.where(self._tensor(dones, torch.bool), 0.0, self.t + 1)


def _sampled_map(z: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    return z


class ThompsonPolicy(BeliefPolicy):
    """Posterior sampling: one belief sample per episode, acted on as if it were a confident belief.

    Args:
        encoder, agent, discrete_actions, deterministic, horizon, belief_input: as :class:`BeliefPolicy`.
        logvar_confident: ``[latent_dim]`` log-variance fed with the sample.
        seed: seed of the latent samples.
        goal_map: ``mu [N, latent] -> [N, cells]``, the decoded goal map the agent reads (it replaces
            ``belief_input``): then each episode samples a cell ``c`` with probability proportional to the map at
            the current belief mean, and the agent sees the one-hot map of ``c`` for the whole episode.
    """

    def __init__(
        self,
        encoder: BeliefEncoder,
        agent: nn.Module,
        discrete_actions: bool,
        logvar_confident: torch.Tensor,
        deterministic: bool = True,
        seed: int = 0,
        horizon: int | None = None,
        belief_input: BeliefInput | None = None,
        goal_map: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        if goal_map is not None:
            belief_input = _sampled_map  # the sampled one-hot map IS the agent's belief input
        super().__init__(encoder, agent, discrete_actions, deterministic, horizon, belief_input)
        self.goal_map = goal_map
        self.logvar_confident = logvar_confident.detach().float().to(self.device)
        self.generator = torch.Generator().manual_seed(seed)  # a CPU stream: the same samples on any device

    def _sample(self, rows: torch.Tensor) -> None:
        if self.goal_map is not None:
            probs = self.goal_map(self.mu[rows]).float().cpu()
            cells = torch.multinomial(probs, 1, generator=self.generator)[:, 0]
            self.z[rows] = torch.nn.functional.one_hot(cells, probs.shape[-1]).to(self.z)
            return
        eps = torch.randn(self.mu[rows].shape, generator=self.generator).to(self.device)
        self.z[rows] = self.mu[rows] + eps * (0.5 * self.logvar[rows]).exp()

    @torch.no_grad()
    def reset(self, num_envs: int) -> None:
        super().reset(num_envs)
        width = self.goal_map(self.mu[:1]).shape[-1] if self.goal_map is not None else self.mu.shape[-1]
        self.z = self.mu.new_zeros(num_envs, width)
        self._sample(torch.ones(num_envs, dtype=torch.bool))

    def _latent(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.goal_map is not None:
            return self.z, self.z  # read by _sampled_map, which passes the map through
        return self.z, self.logvar_confident.expand_as(self.z)

    @torch.no_grad()
    def observe(self, obs, actions, rewards, next_obs, dones) -> None:
        super().observe(obs, actions, rewards, next_obs, dones)
        done = self._tensor(dones, torch.bool)
        if done.any():
            self._sample(done)  # a new episode starts: resample from the updated belief
