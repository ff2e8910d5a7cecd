"""The settings of :class:`~lit_offmeta.algorithms.borel.pipeline.OfflineVariBAD`, as two typed configs.

LightningCLI reads them from the ``model.init_args.vae`` and ``model.init_args.rl`` blocks of a config; in Python pass
a :class:`VAEConfig` / :class:`RLConfig` or a plain dict with the same keys. Each field either applies to every
family and algorithm or is refused, with the reason, where it does not (:meth:`RLConfig.check`, and
:class:`~lit_offmeta.algorithms.borel.vae.BeliefVAE` for the decoder options).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lit_offmeta.nn.config import TypedConfig


@dataclass(frozen=True)
class VAEConfig(TypedConfig):
    """The belief VAE (:class:`~lit_offmeta.algorithms.borel.vae.BeliefVAE`, whose docstring defines each field) and
    its optimiser.

    Attributes:
        decoder: ``"auto"``, ``"cells"`` (grid families), ``"next_obs"``, ``"transition"`` or ``"task_bins"`` (one
            categorical over bins of the task's parameter: goal angle, velocity or direction).
        state_embed_dim, action_embed_dim, reward_embed_dim: encoder embeddings (0 drops an input).
        hidden_dim: the encoder's history summary size.
        latent_dim: task latent size (reference 5).
        decoder_hidden: decoder hidden sizes.
        kl_weight: ``beta`` of the ELBO (reference 0.05).
        lr: Adam learning rate.
        lr_decay: anneal the rate to 0 over the VAE stage (cosine), so the frozen encoder is a settled one rather than
            the last step of a noisy optimiser.
        reward_threshold: ``"cells"`` decoder: a reward above it means "goal here".
        cell_targets: ``"cells"`` decoder: ``"visited"`` (reference), ``"all"``, ``"both"`` or ``"goal"``.
        state_one_hot: grid families: the encoder embeds the cell's one-hot, not its coordinates.
        aggregator: the encoder's summary of the history: ``"gru"`` (reference), ``"max"`` or ``"sum"``.
        task_bins: ``"task_bins"`` decoder: number of bins.
        elbo_subsample, decode_subsample: in training, the beliefs per batch whose reconstruction terms enter the
            ELBO and the transitions each of them decodes, drawn uniformly and scaled to an unbiased estimate
            (VariBAD's ``vae_subsample_elbos`` / ``vae_subsample_decodes``); ``None``: all.
    """

    decoder: Literal["auto", "cells", "next_obs", "transition", "task_bins"] = "auto"
    state_embed_dim: int = 32
    action_embed_dim: int = 16
    reward_embed_dim: int = 16
    hidden_dim: int = 128
    latent_dim: int = 5
    decoder_hidden: tuple[int, ...] = (32, 32)
    kl_weight: float = 0.05
    lr: float = 3e-4
    lr_decay: bool = False
    reward_threshold: float = 0.0
    cell_targets: Literal["visited", "all", "both", "goal"] = "visited"
    state_one_hot: bool = False
    aggregator: Literal["gru", "max", "sum"] = "gru"
    task_bins: int = 20
    elbo_subsample: int | None = None
    decode_subsample: int | None = None

    block = "vae"

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoder_hidden", tuple(int(h) for h in self.decoder_hidden))
        for name in ("hidden_dim", "latent_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"vae: {name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"vae: lr must be > 0, got {self.lr}")

    def model_kwargs(self) -> dict:
        """The :class:`BeliefVAE` keyword arguments (everything but the optimiser's schedule)."""
        kwargs = self.as_dict()
        kwargs.pop("lr_decay")
        return kwargs


@dataclass(frozen=True)
class RLConfig(TypedConfig):
    """The off-policy agent on hyper-states and its batches.

    Attributes:
        algorithm: ``"dqn"`` (discrete actions), ``"sac"`` (continuous) or ``"auto"`` (by the family's actions).
        hidden: Q-network / actor and critic hidden sizes.
        lr: Adam rate of the Q-network (DQN) or the critics (SAC).
        actor_lr: SAC only: the actor's rate (``None``: ``lr``).
        gamma: discount.
        tau: soft target update rate.
        alpha: SAC only: fixed entropy temperature (``None``: 0.2).
        double_q: DQN only: select the next action with the online network (van Hasselt et al. 2016).
        cql_alpha: weight of a CQL penalty on the Q-values (0: none; Kumar et al. 2020).
        cql_samples: SAC only: uniform actions per state for the CQL penalty.
        state_one_hot: grid families only: the Q-network reads the cell's one-hot in place of its coordinates.
        tasks_per_batch: tasks per RL batch, drawn with replacement (reference 16).
        batch_per_task: transitions per task in an RL batch (reference 256).
        lr_decay: anneal the rates to 0 over the RL stage (cosine), so the final policy is not one snapshot of a
            still-moving Q-function.
    """

    algorithm: Literal["auto", "dqn", "sac"] = "auto"
    hidden: tuple[int, ...] = (256, 256)
    lr: float = 3e-4
    actor_lr: float | None = None
    gamma: float = 0.99
    tau: float = 0.005
    alpha: float | None = None
    double_q: bool = False
    cql_alpha: float = 0.0
    cql_samples: int = 10
    state_one_hot: bool = False
    tasks_per_batch: int = 16
    batch_per_task: int = 256
    lr_decay: bool = False

    block = "rl"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.algorithm not in ("auto", "dqn", "sac"):
            raise ValueError(f"rl: algorithm must be 'auto', 'dqn' or 'sac', got {self.algorithm!r}")
        for name in ("gamma", "tau"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"rl: {name} must be in (0, 1], got {getattr(self, name)}")
        for name in ("tasks_per_batch", "batch_per_task", "cql_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"rl: {name} must be >= 1, got {getattr(self, name)}")
        if self.cql_alpha < 0 or (self.alpha is not None and self.alpha < 0):
            raise ValueError(f"rl: cql_alpha and alpha must be >= 0, got {self.cql_alpha}, {self.alpha}")

    def resolve(self, family_name: str, discrete_actions: bool) -> str:
        """The algorithm for a family (``"auto"``: DQN for discrete actions, SAC otherwise); refuses the fields that
        do not apply to it, naming them."""
        algorithm = self.algorithm if self.algorithm != "auto" else ("dqn" if discrete_actions else "sac")
        if algorithm == "dqn" and not discrete_actions:
            raise ValueError(f"rl: DQN needs discrete actions; family {family_name!r} is continuous, use 'sac'")
        if algorithm == "sac" and discrete_actions:
            raise ValueError(f"rl: SAC needs continuous actions; family {family_name!r} is discrete, use 'dqn'")
        if algorithm == "dqn" and (self.actor_lr is not None or self.alpha is not None):
            raise ValueError("rl: actor_lr and alpha are SAC settings; a DQN has no actor or temperature")
        if algorithm == "sac" and (self.double_q or self.state_one_hot):
            raise ValueError("rl: double_q and state_one_hot are DQN settings (a discrete grid's agent)")
        return algorithm
