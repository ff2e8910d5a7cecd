"""DQN on hyper-states (BOReL step 4, discrete actions): soft target network, optional CQL penalty.

Reference defaults for GridNavi (docs/REFERENCE.md, "RL on hyper-states"): Q-network ``[64, 64]``, Adam 3e-4,
discount 0.99, soft target update ``tau = 0.005``; 16 tasks x 256 transitions per update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torch.nn import functional as F

from lit_offmeta.algorithms.guards import TrainingGuards
from lit_offmeta.nn.grid import GridCellOneHot
from lit_offmeta.nn.mlp import mlp
from lit_offmeta.nn.polyak import polyak_update


# --- pure losses -------------------------------------------------------------------------------------------------
def dqn_target(
    rewards: torch.Tensor,
    terminals: torch.Tensor,
    next_q_target: torch.Tensor,
    gamma: float,
    next_q_online: torch.Tensor | None = None,
) -> torch.Tensor:
    """TD target ``y = r + gamma (1 - d) Q_target(s', a*)``.

    ``a* = argmax_a Q_target(s', a)`` (DQN, Mnih et al. 2015), or ``argmax_a Q_online(s', a)`` when
    ``next_q_online`` is given (double DQN, van Hasselt et al. 2016). ``d`` is a TRUE terminal only: a goal reached
    is not one, so bootstrapping continues there (reference bug 5).

    Args:
        rewards, terminals: ``[B]``.
        next_q_target: ``[B, A]`` target-network values at ``s'``.
        gamma: discount.
        next_q_online: ``[B, A]`` online values at ``s'`` (double DQN) or ``None``.

    Returns:
        ``[B]`` targets (no gradient).
    """
    if next_q_online is None:
        next_v = next_q_target.max(-1).values
    else:
        next_v = next_q_target.gather(-1, next_q_online.argmax(-1, keepdim=True)).squeeze(-1)
    return (rewards + gamma * (1.0 - terminals) * next_v).detach()


def cql_discrete_penalty(q_all: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """CQL(H) regulariser ``mean(logsumexp_a Q(s, a) - Q(s, a_data))`` (Kumar et al. 2020, arXiv:2006.04779, Eq. 4).

    Args:
        q_all: ``[B, A]``; actions: ``[B]`` int64 data actions.
    """
    q_data = q_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    return (torch.logsumexp(q_all, dim=-1) - q_data).mean()


# --- the module ----------------------------------------------------------------------------------------------------
class HyperStateDQN(TrainingGuards, LightningModule):
    """DQN over hyper-states ``(s, mu, logvar)``.

    Args:
        input_dim: hyper-state size ``obs_dim + 2 * latent_dim``.
        num_actions: number of discrete actions.
        hidden: Q-network hidden sizes (reference ``[64, 64]``).
        lr: Adam learning rate.
        gamma: discount.
        tau: soft target update rate.
        double_q: select the next action with the online network (double DQN).
        cql_alpha: weight of the CQL penalty (0 disables it).
        grid_size: 0 (default): the Q-network reads the hyper-state as it is. ``> 0``: the hyper-state's first two
            entries are a cell ``(x, y)`` of a ``grid_size x grid_size`` grid (GridNavi), and the Q-network reads
            the cell's one-hot in their place (:class:`~lit_offmeta.nn.grid.GridCellOneHot`). Ours, not the
            reference's: from coordinates the network smoothed over the walls and walked into one for the rest of
            an episode (docs/BOREL.md).
    """

    def __init__(
        self,
        input_dim: int,
        num_actions: int,
        hidden: Sequence[int] = (64, 64),
        lr: float = 3e-4,
        gamma: float = 0.99,
        tau: float = 0.005,
        double_q: bool = False,
        cql_alpha: float = 0.0,
        grid_size: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"HyperStateDQN: gamma must be in (0, 1], got {gamma}")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"HyperStateDQN: tau must be in (0, 1], got {tau}")
        if cql_alpha < 0:
            raise ValueError(f"HyperStateDQN: cql_alpha must be >= 0, got {cql_alpha}")
        if grid_size < 0 or (grid_size > 0 and input_dim < 2):
            raise ValueError(
                f"HyperStateDQN: grid_size must be >= 0 with a 2-D cell in front, got {grid_size}, "
                f"input_dim {input_dim}"
            )
        self.save_hyperparameters()
        # Own copy of the settings: under LightningCLI a module built inside another one receives the outer
        # module's hparams from save_hyperparameters(), so nested modules must not read self.hparams.
        self.cfg = SimpleNamespace(
            input_dim=input_dim,
            num_actions=num_actions,
            hidden=hidden,
            lr=lr,
            gamma=gamma,
            tau=tau,
            double_q=double_q,
            cql_alpha=cql_alpha,
            grid_size=grid_size,
        )
        self.automatic_optimization = False
        self.q = self._q_network()
        self.q_target = self._q_network()
        self.q_target.load_state_dict(self.q.state_dict())
        self.q_target.requires_grad_(False)

    def _q_network(self) -> nn.Module:
        cfg = self.cfg
        if not cfg.grid_size:
            return mlp(cfg.input_dim, cfg.hidden, cfg.num_actions)
        return nn.Sequential(
            GridCellOneHot(cfg.grid_size), mlp(cfg.input_dim - 2 + cfg.grid_size**2, cfg.hidden, cfg.num_actions)
        )

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """TD loss (MSE to the target) plus the optional CQL penalty."""
        hp = self.cfg
        q_all = self.q(batch["obs"])  # [B, A]
        q_sa = q_all.gather(-1, batch["actions"].long().unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            next_online = self.q(batch["next_obs"]) if hp.double_q else None
            target = dqn_target(
                batch["rewards"], batch["terminals"], self.q_target(batch["next_obs"]), hp.gamma, next_online
            )
        td = F.mse_loss(q_sa, target)
        metrics = {"loss_q": td.detach(), "q_mean": q_sa.mean().detach()}
        loss = td
        if hp.cql_alpha > 0:
            penalty = cql_discrete_penalty(q_all, batch["actions"])
            loss = loss + hp.cql_alpha * penalty
            metrics["cql_penalty"] = penalty.detach()
        return loss, metrics

    def update(
        self,
        batch: dict[str, torch.Tensor],
        optimizers: Sequence[torch.optim.Optimizer],
        backward: Callable[[torch.Tensor], None],
    ) -> dict[str, torch.Tensor]:
        """One gradient step and the soft target update."""
        (opt,) = optimizers
        loss, metrics = self.loss(batch)
        opt.zero_grad()
        backward(loss)
        opt.step()
        polyak_update(self.q_target.parameters(), self.q.parameters(), self.cfg.tau)
        return metrics

    @torch.no_grad()
    def act(self, hyper_obs: torch.Tensor, deterministic: bool = True) -> torch.Tensor:
        """Greedy actions ``[N]`` for hyper-states ``[N, input_dim]``."""
        return self.q(hyper_obs).argmax(-1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        metrics = self.update(batch, [self.optimizers()], self.manual_backward)
        self.log_dict({f"train/rl/{k}": v for k, v in metrics.items()})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.q.parameters(), lr=self.cfg.lr)
