"""UNICORN (Li et al., NeurIPS 2024, arXiv:2402.02429): task representations that maximise ``I(Z; M)``, with the
shared offline RL.

UNICORN shows that FOCAL, CORRO and CSRO each optimise a bound of the same objective, the mutual information
between the task ``M`` and its representation ``Z``. Splitting a transition into its behaviour part
``X_b = (s, a)`` and its task part ``X_t = (r, s')``, ``I(Z; X) = I(Z; X_t | X_b) + I(Z; X_b)``: the first term is
what the task decides, the second what the behaviour policy decides. The paper gives two implementations, both
here behind three loss weights:

* UNICORN-SUP, supervised (``classification_weight=1``, the default): when the training tasks are labelled,
  ``I(Z; M) = H(M) - H(M | Z) >= H(M) + E[log p(M | Z)]``, so a classifier ``p(M | z)`` trained jointly with the
  encoder by cross-entropy on the task labels (:func:`task_classification_loss`) maximises a lower bound;
* UNICORN-SS, self-supervised (``classification_weight=0, reconstruction_weight=1, metric_weight=alpha``): a
  decoder ``p(r, s' - s | s, a, z)`` trained jointly with the encoder (:func:`reconstruction_loss`) bounds
  ``I(Z; X_t | X_b)`` from below, and FOCAL's distance-metric loss
  (:func:`~lit_offmeta.algorithms.focal.distance_metric_loss`) on the transition embeddings, weighted by
  ``alpha``, adds the part of ``I(Z; X)`` that the reconstruction misses.

The encoder learns only from this weighted sum; the actor-critic sees ``z`` detached
(:class:`~lit_offmeta.algorithms.context_rl.ContextBRAC`, shared with FOCAL and CORRO).

Where we follow the paper and where we differ:

* the two objectives and their parts (classifier and cross-entropy; decoder of ``(r, s' - s)`` from ``(s, a, z)``
  plus ``alpha`` times FOCAL's loss, as the authors' code weighs them) are the paper's;
* the decoder's likelihood is a Gaussian with fixed unit variance (half the squared error); the authors' code learns
  the variance with an ensemble of Gaussian networks;
* the decoder reconstructs the QUERY transitions of a task from the ``z`` of its support set, which is disjoint
  from them, so ``z`` must carry the task rather than the particular transitions it was computed from; the
  authors' code reconstructs the context transitions themselves;
* the metric term acts on per-transition embeddings, as our FOCAL does (the authors' code on task encodings of
  tasks sampled with replacement);
* the offline RL is the shared BRAC value penalty; the authors' code builds on FOCAL's BRAC as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_offmeta.algorithms.context_rl import ContextBRAC, check_arguments
from lit_offmeta.algorithms.focal import support_distance_metric_loss
from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.nn.mlp import mlp


def reconstruction_loss(predicted: Tensor, obs: Tensor, rewards: Tensor, next_obs: Tensor) -> Tensor:
    r"""Negative log-likelihood of ``(r, s' - s)`` under a unit-variance Gaussian at the decoder's prediction,
    without its constant, averaged over transitions.

    .. math::
        L = \operatorname{mean}_n \tfrac12 \big\lVert \hat x_n - (r_n, s'_n - s_n) \big\rVert^2

    Args:
        predicted: ``[..., 1 + obs_dim]`` the decoder's ``(r, s' - s)``.
        obs, next_obs: ``[..., obs_dim]``.
        rewards: ``[...]``.

    Returns:
        A scalar.
    """
    target = torch.cat([rewards.unsqueeze(-1), next_obs - obs], dim=-1)
    return 0.5 * (predicted - target).square().sum(-1).mean()


def task_classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    r"""Cross-entropy ``-mean_k log p(M = y_k | z_k)`` of a task classifier: minus the variational lower bound of
    ``I(Z; M)`` up to the constant ``H(M)``.

    Args:
        logits: ``[K, num_tasks]`` the classifier's scores of each representation.
        labels: ``[K]`` int64 task labels.
    """
    return F.cross_entropy(logits, labels)


class UNICORN(ContextBRAC):
    """UNICORN as a LightningModule, trained from an ``OfflineMetaDataModule`` (see the module docstring).

    Per :class:`TaskBatch` of K tasks: ``z_k`` is the mean embedding of task k's SUPPORT transitions. The
    classifier labels ``z_k`` with the batch's task id; the decoder predicts the reward and state change of task
    k's QUERY transitions from ``(s, a, z_k)``; the metric term acts on ``dml_transitions`` support embeddings per
    task. The behaviour model, critics and actor train on the query transitions with ``z_k`` detached.

    Args:
        obs_dim, action_dim: sizes, checked against the datamodule in ``setup``.
        latent_dim: size of ``z``.
        encoder_hidden: transition-encoder MLP widths.
        hidden: actor, critic and behaviour-model widths.
        use_next_obs_in_context: embed ``s'`` too (needed when the dynamics vary across tasks).
        classification_weight: weight of the task-classification loss (UNICORN-SUP: 1).
        reconstruction_weight: weight of the reconstruction loss (UNICORN-SS: 1).
        metric_weight: weight ``alpha`` of FOCAL's distance-metric loss (UNICORN-SS: ``alpha``).
        num_tasks: classes of the classifier, the family's ``num_default_tasks`` (task ids index its task list);
            needed when ``classification_weight > 0``.
        classifier_hidden: classifier MLP widths.
        decoder_hidden: decoder MLP widths.
        dml_beta, dml_power, dml_epsilon, dml_transitions: the metric term's settings, as in FOCAL.
        divergence_weight: BRAC's ``alpha``, the weight of the KL penalty in the target and in the actor loss.
        gamma: discount.
        tau: Polyak rate of the target critics.
        lr_encoder, lr_critic, lr_policy, lr_behaviour: Adam learning rates (the classifier and decoder train at
            ``lr_encoder`` with the encoder).

    Only the parts with a positive weight are built, so every parameter gets a gradient (as DDP requires).
    """

    representation_loss_name = "loss_representation"

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        latent_dim: int = 20,
        encoder_hidden: Sequence[int] = (200, 200, 200),
        hidden: Sequence[int] = (256, 256, 256),
        use_next_obs_in_context: bool = True,
        classification_weight: float = 1.0,
        reconstruction_weight: float = 0.0,
        metric_weight: float = 0.0,
        num_tasks: int | None = None,
        classifier_hidden: Sequence[int] = (200, 200),
        decoder_hidden: Sequence[int] = (200, 200),
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
        check_arguments(
            "UNICORN",
            positive_integers={"obs_dim": obs_dim, "action_dim": action_dim, "latent_dim": latent_dim,
                               "dml_transitions": dml_transitions},
            positive={"lr_encoder": lr_encoder, "lr_critic": lr_critic, "lr_policy": lr_policy,
                      "lr_behaviour": lr_behaviour, "dml_epsilon": dml_epsilon},
            non_negative={"classification_weight": classification_weight,
                          "reconstruction_weight": reconstruction_weight, "metric_weight": metric_weight,
                          "dml_beta": dml_beta, "divergence_weight": divergence_weight},
            gamma=gamma, tau=tau,
        )
        if classification_weight + reconstruction_weight + metric_weight == 0:
            raise ValueError("UNICORN: classification_weight, reconstruction_weight and metric_weight are all 0, so "
                             "nothing would train the encoder; UNICORN-SUP is (1, 0, 0), UNICORN-SS (0, 1, alpha)")
        if classification_weight > 0 and (num_tasks is None or int(num_tasks) < 1):
            raise ValueError(f"UNICORN: classification_weight > 0 (UNICORN-SUP) needs num_tasks, the number of task "
                             f"labels (the family's num_default_tasks, e.g. 40 for point_robot), got {num_tasks!r}")
        self.save_hyperparameters()
        self.build_networks()
        self.classifier = mlp(latent_dim, list(classifier_hidden), int(num_tasks)) if classification_weight > 0 \
            else None
        self.decoder = mlp(obs_dim + action_dim + latent_dim, list(decoder_hidden), 1 + obs_dim) \
            if reconstruction_weight > 0 else None

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        family = getattr(datamodule, "family", None)
        if self.classifier is not None and family is not None and family.num_default_tasks > self.hparams.num_tasks:
            raise ValueError(f"UNICORN: num_tasks={self.hparams.num_tasks} classes, but family {family.name!r} has "
                             f"{family.num_default_tasks} tasks whose ids label the batches; set num_tasks to that")

    def representation_parameters(self) -> Iterable[nn.Parameter]:
        heads = [module for module in (self.classifier, self.decoder) if module is not None]
        return [*self.encoder.parameters(), *(p for head in heads for p in head.parameters())]

    def representation_losses(self, batch: TaskBatch, embeddings: Tensor, z: Tensor) -> dict[str, Tensor]:
        """The weighted sum of the classification, reconstruction and metric terms (those with a positive weight)."""
        hp = self.hparams
        terms: dict[str, Tensor] = {}
        total = z.new_zeros(())
        if self.classifier is not None:
            labels = batch.task_ids.to(z.device)
            if int(labels.max()) >= hp.num_tasks:
                raise ValueError(f"UNICORN: task id {int(labels.max())} has no class among num_tasks={hp.num_tasks}")
            terms["loss_classification"] = task_classification_loss(self.classifier(z), labels)
            total = total + hp.classification_weight * terms["loss_classification"]
        if self.decoder is not None:
            query = batch.query
            k, b = query["rewards"].shape
            task_z = z[:, None, :].expand(k, b, z.shape[-1])
            inputs = torch.cat([query["obs"], query["actions"].to(query["obs"].dtype), task_z], dim=-1)
            terms["loss_reconstruction"] = reconstruction_loss(self.decoder(inputs), query["obs"], query["rewards"],
                                                               query["next_obs"])
            total = total + hp.reconstruction_weight * terms["loss_reconstruction"]
        if hp.metric_weight > 0:
            terms["loss_metric"] = support_distance_metric_loss(embeddings, hp.dml_transitions, hp.dml_beta,
                                                                hp.dml_power, hp.dml_epsilon)
            total = total + hp.metric_weight * terms["loss_metric"]
        return {self.representation_loss_name: total, **terms}
