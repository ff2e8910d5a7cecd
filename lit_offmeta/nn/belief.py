"""The VariBAD belief networks: a recurrent encoder q(m | tau_{:t}) and reward decoders p(r | m, ...).

Sizes follow the VariBAD / BOReL reference (docs/REFERENCE.md, "VAE"): per-input Linear+ReLU embeddings of
``s_{t+1}``, ``a_t`` and ``r_{t+1}`` (32/16/16; GridNavi 32/0/8, where 0 drops the input), one GRU layer
(128; GridNavi 64), linear heads for the Gaussian's mean and log-variance, latent size 5. The prior ``q_0`` is
the heads applied to the zero hidden state.

The encoder is stepped one transition at a time by ONE function (:meth:`BeliefEncoder.step`), used by VAE
training, state relabelling and the online evaluation policy alike, and its hidden state is reset only at the
start of a trial (reference bug 4 reset it by three different rules).

References:
    Zintgraf et al. 2020, "VariBAD", arXiv:1910.08348; Dorfman, Shenfeld & Tamar 2021, "Offline Meta
    Reinforcement Learning -- Identifiability Challenges and Effective Data Collection Strategies" (BOReL).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from lit_offmeta.nn.grid import grid_cell_one_hot
from lit_offmeta.nn.mlp import mlp


class BeliefEncoder(nn.Module):
    """GRU over ``(a_t, s_{t+1}, r_{t+1})`` -> Gaussian belief ``N(mu_t, exp(logvar_t))`` over the task latent.

    ``aggregator="max"`` replaces the GRU by a running max of per-transition features,
    ``h_t = max(h_{t-1}, relu(W x_t + b))`` (``h_0 = 0``): a permutation-invariant summary of the transitions so
    far, which can hold WHICH cells were searched without having to learn a recurrent memory (the GridNavi
    posterior depends on that set only). Same interface, same one recurrence for trials and online steps.

    ``aggregator="sum"`` sums per-transition evidence, ``h_t = h_{t-1} + e(x_t)`` (``h_0 = 0``) with ``e`` a
    two-layer net that can be negative. Given the task, the transitions' rewards are independent, so the exact log
    posterior over tasks is the log prior plus a sum of per-transition log-likelihoods: with linear heads and a
    linear goal decoder (``decoder_hidden: []``) that form is in this model class, and a term learned from any
    transition carries over to paths longer or wider than the data's (PEARL's product of per-transition Gaussian
    factors is the same idea, Rakelly et al. 2019).

    Args:
        obs_dim: observation size.
        action_dim: action size (continuous) or number of actions (discrete, one-hot encoded).
        discrete_actions: whether actions are integer indices.
        state_embed_dim: embedding size of ``s_{t+1}`` (0: not used).
        action_embed_dim: embedding size of ``a_t`` (0: not used).
        reward_embed_dim: embedding size of ``r_{t+1}`` (0: not used).
        hidden_dim: GRU hidden size (``"max"``: feature size).
        latent_dim: size of the task latent ``m``.
        grid_size: observations are the cells ``(x, y)`` of a ``grid_size x grid_size`` grid (GridNavi): embed the
            cell's one-hot instead of the coordinates, so that WHICH cells were visited is linear in the input
            (0: the coordinates, as the reference).
        aggregator: ``"gru"`` (reference), ``"max"`` or ``"sum"``.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        discrete_actions: bool,
        state_embed_dim: int = 32,
        action_embed_dim: int = 16,
        reward_embed_dim: int = 16,
        hidden_dim: int = 128,
        latent_dim: int = 5,
        grid_size: int = 0,
        aggregator: str = "gru",
    ) -> None:
        super().__init__()
        if aggregator not in ("gru", "max", "sum"):
            raise ValueError(f"BeliefEncoder: aggregator must be 'gru', 'max' or 'sum', got {aggregator!r}")
        self.aggregator = aggregator
        if state_embed_dim + action_embed_dim + reward_embed_dim <= 0:
            raise ValueError("BeliefEncoder: at least one of the state/action/reward embeddings must be > 0")
        self.obs_dim, self.action_dim, self.discrete_actions = obs_dim, action_dim, discrete_actions
        self.hidden_dim, self.latent_dim, self.grid_size = hidden_dim, latent_dim, grid_size
        if grid_size < 0 or (grid_size > 0 and obs_dim != 2):
            raise ValueError(
                f"BeliefEncoder: grid_size needs 2-D cell observations and >= 0, got {grid_size}, {obs_dim}"
            )

        def embed(n_in: int, n_out: int) -> nn.Module | None:
            return nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU()) if n_out > 0 else None

        self.embed_state = embed(grid_size**2 if grid_size else obs_dim, state_embed_dim)
        self.embed_action = embed(action_dim, action_embed_dim)
        self.embed_reward = embed(1, reward_embed_dim)
        input_size = state_embed_dim + action_embed_dim + reward_embed_dim
        if aggregator == "gru":
            # One nn.GRU serves whole trials (fused loop) and single online steps (a length-1 sequence).
            self.gru = nn.GRU(input_size, hidden_dim)
        elif aggregator == "max":
            self.features = nn.Sequential(nn.Linear(input_size, hidden_dim), nn.ReLU())  # >= 0: h_0 = 0 is neutral
        else:  # evidence of either sign (a log-likelihood term), after a joint nonlinearity of (a, s', r)
            self.features = mlp(input_size, [hidden_dim], hidden_dim)
        self.head_mu = nn.Linear(hidden_dim, latent_dim)
        self.head_logvar = nn.Linear(hidden_dim, latent_dim)

    def initial_state(self, batch_size: int, device: torch.device | None = None) -> torch.Tensor:
        """The hidden state at the start of a trial: zeros ``[B, hidden_dim]`` (the only reset)."""
        return torch.zeros(batch_size, self.hidden_dim, device=device)

    def belief(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)``, each ``[..., latent_dim]``, of hidden states ``[..., hidden_dim]``."""
        return self.head_mu(h), self.head_logvar(h)

    def embed(self, action: torch.Tensor, next_obs: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
        """Per-input embeddings of transitions with any leading shape ``[...]`` -> ``[..., input_size]``."""
        parts = []
        if self.embed_state is not None:
            state = next_obs.float()
            if self.grid_size:
                state = grid_cell_one_hot(state, self.grid_size)
            parts.append(self.embed_state(state))
        if self.embed_action is not None:
            if self.discrete_actions:
                action = F.one_hot(action.long(), self.action_dim).float()
            else:
                action = action.float().reshape(*reward.shape, -1)
            parts.append(self.embed_action(action))
        if self.embed_reward is not None:
            parts.append(self.embed_reward(reward.float().unsqueeze(-1)))
        return torch.cat(parts, dim=-1)

    def step(
        self,
        h: torch.Tensor,
        action: torch.Tensor,
        next_obs: torch.Tensor,
        reward: torch.Tensor,
    ) -> torch.Tensor:
        """Fold one transition into the hidden state (the online belief update).

        Args:
            h: ``[B, hidden_dim]``.
            action: ``[B, action_dim]`` float or ``[B]`` int (discrete).
            next_obs: ``[B, obs_dim]``, ``s_{t+1}``.
            reward: ``[B]``, ``r_{t+1}``.

        Returns:
            The new hidden state ``[B, hidden_dim]``.
        """
        x = self.embed(action, next_obs, reward)
        if self.aggregator == "max":
            return torch.maximum(h, self.features(x))
        if self.aggregator == "sum":
            return h + self.features(x)
        _, h_new = self.gru(x[None], h[None])
        return h_new[0]

    def forward(
        self,
        actions: torch.Tensor,
        next_obs: torch.Tensor,
        rewards: torch.Tensor,
        valid: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Beliefs along whole trials, starting from the prior (the same recurrence as :meth:`step`).

        Args:
            actions: ``[L, B, action_dim]`` or ``[L, B]`` (discrete).
            next_obs: ``[L, B, obs_dim]``.
            rewards: ``[L, B]``.
            valid: ``[L, B]`` bool or ``None``; padding steps (False) leave the belief unchanged.

        Returns:
            ``mu``, ``logvar``: ``[L + 1, B, latent_dim]``; index ``t`` is the belief after ``t`` transitions
            (index 0 is the prior ``q_0``).
        """
        length, batch = rewards.shape
        x = self.embed(actions, next_obs, rewards)  # [L, B, input]
        h0 = self.initial_state(batch, x.device)
        if self.aggregator in ("max", "sum"):
            feats = self.features(x)  # [L, B, H]
            if valid is not None:
                # a padding step adds 0: the max (features >= 0) and the sum are unchanged
                feats = feats * valid[..., None].to(feats.dtype)
            hs = torch.cummax(feats, dim=0).values if self.aggregator == "max" else torch.cumsum(feats, dim=0)
        elif valid is None or bool(valid.all()):
            hs, _ = self.gru(x, h0[None])  # [L, B, H]
        else:
            # Padding sits inside the trial (after an episode that terminated early): move each trial's valid
            # steps to the front, run the packed GRU, then read the hidden state after the valid steps so far.
            order = torch.argsort((~valid).to(torch.int8), dim=0, stable=True)  # [L, B]
            x_c = x.gather(0, order[..., None].expand_as(x))
            lengths = valid.sum(0).clamp(min=1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(x_c, lengths, enforce_sorted=False)
            out, _ = self.gru(packed, h0[None])
            out, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=length)  # [L, B, H]
            out = torch.cat([h0[None], out])  # [L + 1, B, H]: state after k valid steps
            seen = valid.long().cumsum(0)  # [L, B]
            hs = out.gather(0, seen[..., None].expand(-1, -1, out.shape[-1]))
        return self.belief(torch.cat([h0[None], hs]))


class CellRewardDecoder(nn.Module):
    """Bernoulli multi-head reward decoder for grid worlds: ``p(goal at cell c | m)`` for every cell.

    The latent alone is decoded (docs/REFERENCE.md, "VAE": "Grid: Bernoulli multi-head, one output per cell, latent
    only"); a transition's likelihood reads the head of the cell it arrived in.

    Args:
        latent_dim: latent size.
        num_cells: number of cells (heads).
        hidden: hidden layer sizes (reference ``[32, 32]``).
    """

    def __init__(self, latent_dim: int, num_cells: int, hidden: Sequence[int] = (32, 32)) -> None:
        super().__init__()
        self.net = mlp(latent_dim, hidden, num_cells)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Logits ``[..., num_cells]`` of latents ``[..., latent_dim]``."""
        return self.net(z)


class MLPRewardDecoder(nn.Module):
    """Gaussian (MSE) reward decoder ``r(m, x)`` where ``x`` is ``s_{t+1}`` or ``(s_{t+1}, s_t, a_t)``.

    Args:
        latent_dim: latent size.
        input_dim: size of the transition features ``x``.
        hidden: hidden layer sizes (reference ``[32, 32]``).
    """

    def __init__(self, latent_dim: int, input_dim: int, hidden: Sequence[int] = (32, 32)) -> None:
        super().__init__()
        self.net = mlp(latent_dim + input_dim, hidden, 1)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Predicted rewards ``[...]`` for broadcastable ``z [..., latent_dim]`` and ``x [..., input_dim]``."""
        shape = torch.broadcast_shapes(z.shape[:-1], x.shape[:-1])
        z = z.expand(*shape, z.shape[-1])
        x = x.expand(*shape, x.shape[-1])
        return self.net(torch.cat([z, x], dim=-1)).squeeze(-1)
