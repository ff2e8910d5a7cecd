"""FOCAL (Li, Yang and Luo, ICLR 2021, arXiv:2010.01112): distance-metric task embeddings + behaviour-regularised
actor-critic, fully offline.

A deterministic context encoder embeds each transition; a task is the mean embedding of its context
(:class:`~lit_offmeta.nn.context_encoder.DeterministicContextEncoder`). The encoder is trained ONLY by the
distance-metric loss (:func:`distance_metric_loss`): embeddings of transitions of the same task are pulled together
(squared distance), those of different tasks pushed apart by an inverse-power term. The actor-critic sees
``concat(s, z)`` with ``z`` detached, so the RL losses never shape the embedding (FOCAL's decoupling).

The offline RL is BRAC with a value penalty (Wu, Tucker and Nachum 2019, arXiv:1911.11361), which FOCAL builds
on: a behaviour model ``pi_b(a | s, z)`` is fitted to the data by maximum likelihood, and the divergence
``D(s) = E_{a ~ pi}[log pi(a|s, z) - log pi_b(a|s, z)]`` (a one-sample estimate of ``KL(pi || pi_b)``) enters the
critic's target, ``y = r + gamma (1 - d) (min Q'(s', a') - alpha D(s'))``, and the actor's loss,
``alpha D(s) - min Q(s, a)``, ``a ~ pi``: the project's SAC losses (:mod:`lit_offmeta.algorithms.sac`) with the
entropy term replaced by the divergence. Where we differ from the authors' code: it estimates the KL in BRAC's
dual form with an extra critic network; we use the primal sample estimate from the fitted behaviour model, which
BRAC also defines, and a fixed ``alpha`` (BRAC's value-penalty setting). The distance-metric loss follows the paper's
form; the authors' code takes root-mean-square distances for the positive pairs and a fixed epsilon.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

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


def distance_metric_loss(embeddings: Tensor, labels: Tensor, beta: float = 1.0, power: float = 2.0,
                         epsilon: float = 0.1) -> Tensor:
    r"""FOCAL's distance-metric loss over every pair of embeddings ``i < j``.

    .. math::
        L = \operatorname{mean}_{y_i = y_j} \lVert q_i - q_j \rVert^2
            + \beta \operatorname{mean}_{y_i \ne y_j} \frac{1}{\lVert q_i - q_j \rVert^{n} + \epsilon}

    Args:
        embeddings: ``[M, latent]`` transition embeddings.
        labels: ``[M]`` task of each embedding.
        beta: weight of the negative (different-task) term.
        power: ``n``, the power of the distance in the negative term.
        epsilon: keeps the negative term finite for coinciding embeddings.

    Returns:
        A scalar; a term without pairs (one task, or all distinct) contributes 0.
    """
    distance = torch.cdist(embeddings, embeddings)  # [M, M]
    same = labels[:, None] == labels[None, :]
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    positive, negative = same & upper, ~same & upper
    loss = embeddings.new_zeros(())
    if positive.any():
        loss = loss + distance[positive].square().mean()
    if negative.any():
        loss = loss + beta * (1.0 / (distance[negative].pow(power) + epsilon)).mean()
    return loss


class FOCAL(TrainingGuards, LightningModule):
    """FOCAL as a LightningModule, trained from an ``OfflineMetaDataModule`` (see the module docstring).

    Per :class:`TaskBatch` of K tasks: ``z_k`` is the mean embedding of task k's SUPPORT transitions; the
    distance-metric loss acts on ``dml_transitions`` support embeddings per task; the behaviour model, critics and
    actor train on the QUERY transitions with ``z_k`` (detached) appended to the state.

    Args:
        obs_dim, action_dim: sizes, checked against the datamodule in ``setup``.
        latent_dim: size of ``z`` (the authors' configs: 20).
        encoder_hidden: encoder MLP widths.
        hidden: actor, critic and behaviour-model widths.
        use_next_obs_in_context: embed ``s'`` too (needed when the dynamics vary across tasks).
        dml_beta, dml_power, dml_epsilon: the distance-metric loss's ``beta``, ``n`` and ``epsilon``.
        dml_transitions: support transitions per task whose embeddings enter the distance-metric loss.
        divergence_weight: BRAC's ``alpha``, the weight of the KL penalty in the target and in the actor loss.
        gamma: discount.
        tau: Polyak rate of the target critics.
        lr_encoder, lr_critic, lr_policy, lr_behaviour: Adam learning rates.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        latent_dim: int = 20,
        encoder_hidden: Sequence[int] = (200, 200, 200),
        hidden: Sequence[int] = (256, 256, 256),
        use_next_obs_in_context: bool = True,
        dml_beta: float = 1.0,
        dml_power: float = 2.0,
        dml_epsilon: float = 0.1,
        dml_transitions: int = 16,
        divergence_weight: float = 1.0,
        gamma: float = 0.99,
        tau: float = 0.005,
        lr_encoder: float = 3e-4,
        lr_critic: float = 3e-4,
        lr_policy: float = 3e-4,
        lr_behaviour: float = 3e-4,
    ) -> None:
        super().__init__()
        for name, value in (("obs_dim", obs_dim), ("action_dim", action_dim), ("latent_dim", latent_dim),
                            ("dml_transitions", dml_transitions)):
            if int(value) < 1:
                raise ValueError(f"FOCAL: {name} must be a positive integer, got {value!r}")
        for name, value in (("lr_encoder", lr_encoder), ("lr_critic", lr_critic), ("lr_policy", lr_policy),
                            ("lr_behaviour", lr_behaviour), ("dml_epsilon", dml_epsilon)):
            if not value > 0:
                raise ValueError(f"FOCAL: {name} must be > 0, got {value!r}")
        if dml_beta < 0 or divergence_weight < 0:
            raise ValueError(f"FOCAL: dml_beta and divergence_weight must be >= 0, got {dml_beta}, {divergence_weight}")
        if not 0.0 <= gamma <= 1.0 or not 0.0 < tau <= 1.0:
            raise ValueError(f"FOCAL: need gamma in [0, 1] and tau in (0, 1], got {gamma}, {tau}")
        self.save_hyperparameters()
        hidden = list(hidden)
        self.encoder = DeterministicContextEncoder(obs_dim, action_dim, latent_dim, list(encoder_hidden),
                                                   use_next_obs_in_context)
        low, high = -torch.ones(action_dim), torch.ones(action_dim)
        self.policy = SquashedGaussianActor(obs_dim + latent_dim, action_dim, hidden, low, high)
        self.behaviour = SquashedGaussianActor(obs_dim + latent_dim, action_dim, hidden, low, high)
        self.critic = TwinCritic(obs_dim + latent_dim, action_dim, hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        check_sizes_against_datamodule(self, datamodule, self.hparams.obs_dim, self.hparams.action_dim)

    # --- training --------------------------------------------------------------------------------------------
    def compute_losses(self, batch: TaskBatch) -> dict[str, Tensor]:
        """Every FOCAL loss term for a TaskBatch (support: context; query: RL batch), still attached to the graph."""
        support, query = batch.support, batch.query
        k, b = query["rewards"].shape
        embeddings = self.encoder.embed(support)  # [K, B_s, latent]
        z = embeddings.mean(1).detach()  # the RL never shapes the embedding
        m = min(self.hparams.dml_transitions, embeddings.shape[1])
        labels = torch.arange(k, device=embeddings.device).repeat_interleave(m)
        loss_dml = distance_metric_loss(embeddings[:, :m].reshape(k * m, -1), labels, self.hparams.dml_beta,
                                        self.hparams.dml_power, self.hparams.dml_epsilon)

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
        loss = loss_dml + loss_behaviour + loss_critic + loss_actor
        return {"loss": loss, "loss_dml": loss_dml, "loss_behaviour": loss_behaviour, "loss_critic": loss_critic,
                "loss_actor": loss_actor, "divergence": policy_divergence.detach().mean(),
                "q_mean": q1.detach().mean()}

    def training_step(self, batch: TaskBatch, batch_idx: int) -> Tensor:
        out = self.compute_losses(batch)
        for key, value in out.items():
            self.log(f"train/{key}", value.detach(), prog_bar=key in ("loss", "loss_dml", "loss_critic"),
                     batch_size=batch.num_tasks)
        return out["loss"]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        polyak_update(self.critic_target.parameters(), self.critic.parameters(), self.hparams.tau)

    def _eval_step(self, batch: TaskBatch, phase: str) -> None:
        out = self.compute_losses(batch)
        self.log_dict({f"{phase}/loss_critic": out["loss_critic"], f"{phase}/loss_dml": out["loss_dml"]},
                      batch_size=batch.num_tasks, sync_dist=True)

    def validation_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: TaskBatch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # One Adam with a group per part (Adam is per parameter, so this is four optimizers' update); each loss
        # term reaches only its own part: the DML the encoder, the likelihood the behaviour model, and so on.
        return torch.optim.Adam([
            {"params": list(self.encoder.parameters()), "lr": self.hparams.lr_encoder},
            {"params": list(self.behaviour.parameters()), "lr": self.hparams.lr_behaviour},
            {"params": list(self.critic.parameters()), "lr": self.hparams.lr_critic},
            {"params": list(self.policy.parameters()), "lr": self.hparams.lr_policy},
        ])

    # --- meta-testing ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def task_embedding(self, context: dict[str, Tensor]) -> Tensor:
        """``z`` ``[latent]`` of one task's transitions (``obs [B, obs_dim]``, ``actions``, ``rewards [B]``, ...)."""
        if not isinstance(context, dict) or "rewards" not in context or torch.as_tensor(context["rewards"]).dim() != 1:
            raise ValueError("FOCAL.adapt: context must be one task's transitions, a dict with obs [B, obs_dim], "
                             "actions [B, act_dim], rewards [B] (and next_obs)")
        return self.encoder({key: torch.as_tensor(v).to(self.device) for key, v in context.items()})

    @torch.no_grad()
    def adapt(self, context: dict[str, Tensor], steps: int | None = None) -> FocalRolloutPolicy:
        """The actor conditioned on the context's embedding. FOCAL's inference has no gradient steps: ``steps=0``
        means no adaptation (``z = 0``, the pre-adaptation point of an adaptation curve); any other value uses the
        context."""
        z = torch.zeros(self.hparams.latent_dim) if steps == 0 else self.task_embedding(context).cpu()
        return FocalRolloutPolicy(copy.deepcopy(self.policy).cpu().eval(), z)

    def predict_step(self, batch: Any, batch_idx: int = 0) -> AdaptedPolicyPrediction:
        return predict_adapted_policy(self, batch)


class FocalRolloutPolicy(nn.Module):
    """FOCAL's actor with a fixed task embedding, behind the ``RolloutPolicy`` API (deterministic actions)."""

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
        """FOCAL infers the task from the offline context only; online transitions are not folded in."""
