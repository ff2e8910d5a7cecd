"""What FOCAL, CORRO and UNICORN share: a context encoder whose ``z`` conditions a BRAC actor-critic, ``z`` detached.

The three context-based offline meta-RL methods (FOCAL, :mod:`lit_offmeta.algorithms.focal`; CORRO,
:mod:`lit_offmeta.algorithms.corro`; UNICORN, :mod:`lit_offmeta.algorithms.unicorn`) differ only in the loss that
trains the transition encoder. Everything else lives here, once, in :class:`ContextBRAC`:

* the encoder: :class:`~lit_offmeta.nn.context_encoder.DeterministicContextEncoder` embeds each SUPPORT transition
  ``(s, a, r[, s'])``; a task's ``z`` is the mean of its support embeddings;
* the offline RL on the QUERY transitions: BRAC with a value penalty (Wu, Tucker and Nachum 2019,
  arXiv:1911.11361), on ``concat(s, z)`` with ``z`` detached, so the RL losses never shape the embedding. A
  behaviour model ``pi_b(a | s, z)`` is fitted by maximum likelihood; the divergence
  ``D(s) = log pi(a|s, z) - log pi_b(a|s, z)`` at the policy's own sample (a one-sample estimate of
  ``KL(pi || pi_b)``) enters the critic's target ``r + gamma (1 - d) (min Q'(s', a') - alpha D(s'))`` and the
  actor's loss ``alpha D(s) - min Q(s, a)``: the project's SAC losses (:mod:`lit_offmeta.algorithms.sac`) with the
  entropy replaced by the divergence;
* meta-testing: ``adapt(context)`` embeds one task's transitions and returns the actor conditioned on the mean
  embedding (:class:`ContextRolloutPolicy`), which the ``AdaptationEvaluator`` and ``lit-offmeta benchmark`` drive.

A subclass saves its hyperparameters (the shared ones under the names used here), calls :meth:`build_networks`,
and defines :meth:`ContextBRAC.representation_losses`; parts that only its encoder loss trains (a decoder, a
classifier) join the encoder's optimizer group through :meth:`ContextBRAC.representation_parameters`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.func import functional_call

from lit_offmeta.algorithms.base import check_sizes_against_datamodule
from lit_offmeta.algorithms.guards import TrainingGuards
from lit_offmeta.algorithms.prediction import AdaptedPolicyPrediction, predict_adapted_policy
from lit_offmeta.algorithms.sac import (
    SquashedGaussianActor,
    TwinCritic,
    actor_loss,
    critic_loss,
    soft_td_target,
    squashed_gaussian_log_prob,
)
from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.nn.context_encoder import DeterministicContextEncoder
from lit_offmeta.nn.polyak import polyak_update


def check_arguments(owner: str, positive_integers: Mapping[str, Any] | None = None,
                    positive: Mapping[str, float] | None = None, non_negative: Mapping[str, float] | None = None,
                    gamma: float = 0.99, tau: float = 0.005) -> None:
    """Raise a ``ValueError`` naming ``owner`` and the argument when a size is not a positive integer, a rate or
    scale not ``> 0``, a weight negative, ``gamma`` outside ``[0, 1]`` or ``tau`` outside ``(0, 1]``: a bad
    value would otherwise surface much later as a shape error or a NaN in the middle of training."""
    for name, value in (positive_integers or {}).items():
        if int(value) < 1:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    for name, value in (positive or {}).items():
        if not value > 0:
            raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")
    for name, value in (non_negative or {}).items():
        if not value >= 0:
            raise ValueError(f"{owner}: {name} must be >= 0, got {value!r}")
    if not 0.0 <= gamma <= 1.0 or not 0.0 < tau <= 1.0:
        raise ValueError(f"{owner}: need gamma in [0, 1] and tau in (0, 1], got {gamma}, {tau}")


class ContextBRAC(TrainingGuards, LightningModule):
    """Base of FOCAL, CORRO and UNICORN (see the module docstring): encoder, BRAC losses, optimizer, ``adapt``.

    Hyperparameters every subclass saves: ``obs_dim``, ``action_dim``, ``latent_dim``, ``encoder_hidden``,
    ``hidden``, ``use_next_obs_in_context``, ``divergence_weight``, ``gamma``, ``tau``, ``lr_encoder``,
    ``lr_critic``, ``lr_policy`` and ``lr_behaviour``.
    """

    representation_loss_name: ClassVar[str] = "loss_representation"
    """Key of the encoder's total loss in :meth:`compute_losses`, shown in the progress bar and logged at val/test."""

    def build_networks(self) -> None:
        """The encoder, actor, behaviour model, twin critic and its target, sized from the saved hyperparameters."""
        hp = self.hparams
        hidden = list(hp.hidden)
        self.encoder = DeterministicContextEncoder(hp.obs_dim, hp.action_dim, hp.latent_dim, list(hp.encoder_hidden),
                                                   hp.use_next_obs_in_context)
        low, high = -torch.ones(hp.action_dim), torch.ones(hp.action_dim)
        self.policy = SquashedGaussianActor(hp.obs_dim + hp.latent_dim, hp.action_dim, hidden, low, high)
        self.behaviour = SquashedGaussianActor(hp.obs_dim + hp.latent_dim, hp.action_dim, hidden, low, high)
        self.critic = TwinCritic(hp.obs_dim + hp.latent_dim, hp.action_dim, hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        check_sizes_against_datamodule(self, datamodule, self.hparams.obs_dim, self.hparams.action_dim)

    # --- what a subclass defines -------------------------------------------------------------------------
    def representation_losses(self, batch: TaskBatch, embeddings: Tensor, z: Tensor) -> dict[str, Tensor]:
        """The encoder's loss terms for one batch, still attached to the graph.

        Args:
            batch: the TaskBatch (support: context; query: RL batch).
            embeddings: ``[K, B_s, latent]`` per-transition embeddings of the support sets.
            z: ``[K, latent]`` their means, the task representations (attached: a loss may train through them).

        Returns:
            ``{representation_loss_name: total, ...components}``; the total is added to the RL losses. Outside
            training a subclass may return no total for a batch on which its loss is undefined (CORRO's relabelled
            negatives on a held-out batch of one task); that batch then logs only the RL losses.
        """
        raise NotImplementedError(f"{type(self).__name__} must define representation_losses(batch, embeddings, z)")

    def embed(self, transitions: dict[str, Tensor]) -> Tensor:
        """Per-transition embeddings ``[..., N, latent]`` of a transition dict with leading dims ``[..., N]``; a task's
        ``z`` is their mean over ``N``. A subclass whose loss fixes only their direction (CORRO) normalises them."""
        return self.encoder.embed(transitions)

    def representation_parameters(self) -> Iterable[nn.Parameter]:
        """Parameters trained by the encoder's loss at ``lr_encoder``: the encoder's, plus a subclass's decoder or
        classifier."""
        return self.encoder.parameters()

    # --- training --------------------------------------------------------------------------------------------
    def rl_losses(self, query: dict[str, Tensor], z: Tensor) -> dict[str, Tensor]:
        """BRAC's behaviour, critic and actor losses on the query transitions ``[K, B, ...]`` with ``z`` ``[K, latent]``
        appended to every state (``z`` should come detached: these losses must not train the encoder)."""
        k, b = query["rewards"].shape
        task_z = z[:, None, :].expand(k, b, z.shape[-1])
        obs_z = torch.cat([query["obs"], task_z], -1)
        next_obs_z = torch.cat([query["next_obs"], task_z], -1)
        actions = query["actions"].to(obs_z.dtype)
        loss_behaviour = -self.behaviour.log_prob(obs_z, actions).mean()

        alpha = self.hparams.divergence_weight
        frozen_behaviour = {n: p.detach() for n, p in self.behaviour.named_parameters()}

        def divergence(states: Tensor, sampled: Tensor, log_pi: Tensor) -> Tensor:
            # log pi - log pi_b at the policy's own sample; the behaviour model enters with detached parameters, so
            # the penalty trains the policy and never the model of the data
            mean_b, log_std_b = functional_call(self.behaviour, frozen_behaviour, (states,))
            log_pi_b = squashed_gaussian_log_prob(mean_b, log_std_b, sampled, self.behaviour.action_scale,
                                                  self.behaviour.action_bias)
            return log_pi - log_pi_b

        with torch.no_grad():
            next_actions, next_log_pi = self.policy.sample(next_obs_z)
            next_divergence = divergence(next_obs_z, next_actions, next_log_pi)
            target = soft_td_target(query["rewards"], query["terminals"], *self.critic_target(next_obs_z, next_actions),
                                    next_divergence, alpha, self.hparams.gamma)
        q1, q2 = self.critic(obs_z, actions)
        loss_critic = critic_loss(q1, q2, target)

        new_actions, log_pi = self.policy.sample(obs_z)
        frozen_critic = {n: p.detach() for n, p in self.critic.named_parameters()}
        q1_pi, q2_pi = functional_call(self.critic, frozen_critic, (obs_z, new_actions))
        policy_divergence = divergence(obs_z, new_actions, log_pi)
        loss_actor = actor_loss(policy_divergence, q1_pi, q2_pi, alpha)
        return {"loss_behaviour": loss_behaviour, "loss_critic": loss_critic, "loss_actor": loss_actor,
                "divergence": policy_divergence.detach().mean(), "q_mean": q1.detach().mean()}

    def compute_losses(self, batch: TaskBatch) -> dict[str, Tensor]:
        """Every loss term for a TaskBatch (support: context; query: RL batch), still attached to the graph."""
        embeddings = self.embed(batch.support)  # [K, B_s, latent]
        z = embeddings.mean(1)
        representation = self.representation_losses(batch, embeddings, z)
        rl = self.rl_losses(batch.query, z.detach())  # the RL never shapes the embedding
        loss = rl["loss_behaviour"] + rl["loss_critic"] + rl["loss_actor"]
        if self.representation_loss_name in representation:
            loss = representation[self.representation_loss_name] + loss
        return {"loss": loss, **representation, **rl}

    def training_step(self, batch: TaskBatch, batch_idx: int) -> Tensor:
        out = self.compute_losses(batch)
        shown = ("loss", self.representation_loss_name, "loss_critic")
        for key, value in out.items():
            self.log(f"train/{key}", value.detach(), prog_bar=key in shown, batch_size=batch.num_tasks)
        return out["loss"]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        polyak_update(self.critic_target.parameters(), self.critic.parameters(), self.hparams.tau)

    def _eval_step(self, batch: TaskBatch, phase: str) -> None:
        out = self.compute_losses(batch)
        logged = {f"{phase}/loss_critic": out["loss_critic"]}
        if self.representation_loss_name in out:
            logged[f"{phase}/{self.representation_loss_name}"] = out[self.representation_loss_name]
        self.log_dict(logged, batch_size=batch.num_tasks, sync_dist=True)

    def validation_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # One Adam with a group per part (Adam is per parameter, so this is four optimizers' update); each loss
        # term reaches only its own part: the encoder's loss the encoder (and its decoder or classifier), the
        # likelihood the behaviour model, and so on.
        return torch.optim.Adam([
            {"params": list(self.representation_parameters()), "lr": self.hparams.lr_encoder},
            {"params": list(self.behaviour.parameters()), "lr": self.hparams.lr_behaviour},
            {"params": list(self.critic.parameters()), "lr": self.hparams.lr_critic},
            {"params": list(self.policy.parameters()), "lr": self.hparams.lr_policy},
        ])

    # --- meta-testing ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def task_embedding(self, context: dict[str, Tensor]) -> Tensor:
        """``z`` ``[latent]`` of one task's transitions (``obs [B, obs_dim]``, ``actions``, ``rewards [B]``, ...)."""
        if not isinstance(context, dict) or "rewards" not in context or torch.as_tensor(context["rewards"]).dim() != 1:
            raise ValueError(f"{type(self).__name__}.adapt: context must be one task's transitions, a dict with "
                             "obs [B, obs_dim], actions [B, act_dim], rewards [B] (and next_obs)")
        return self.embed({key: torch.as_tensor(v).to(self.device) for key, v in context.items()}).mean(-2)

    @torch.no_grad()
    def adapt(self, context: dict[str, Tensor], steps: int | None = None) -> ContextRolloutPolicy:
        """The actor conditioned on the context's embedding. Inference takes no gradient steps: ``steps=0`` means no
        adaptation (``z = 0``, the pre-adaptation point of an adaptation curve); any other value uses the context."""
        z = torch.zeros(self.hparams.latent_dim) if steps == 0 else self.task_embedding(context).cpu()
        return ContextRolloutPolicy(copy.deepcopy(self.policy).cpu().eval(), z)

    def predict_step(self, batch: Any, batch_idx: int = 0) -> AdaptedPolicyPrediction:
        return predict_adapted_policy(self, batch)


class ContextRolloutPolicy(nn.Module):
    """An actor on ``(s, z)`` with a fixed task embedding, behind the ``RolloutPolicy`` API (deterministic actions)."""

    def __init__(self, actor: SquashedGaussianActor, z: Tensor) -> None:
        super().__init__()
        self.actor = actor
        self.register_buffer("z", z.detach().clone())

    def reset(self, num_envs: int) -> None:
        """Nothing to reset: every environment acts with the same offline embedding."""

    @torch.no_grad()
    def forward(self, obs: Tensor) -> Tensor:
        z = self.z.expand(obs.shape[0], -1)
        return self.actor.deterministic(torch.cat([obs.to(z.dtype), z], dim=-1))

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self(torch.as_tensor(np.asarray(obs), dtype=torch.float32)).numpy()

    def observe(self, obs, actions, rewards, next_obs, dones) -> None:
        """The task is inferred from the offline context only; online transitions are not folded in."""
