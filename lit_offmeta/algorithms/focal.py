"""FOCAL (Li, Yang and Luo, ICLR 2021, arXiv:2010.01112): distance-metric task embeddings + behaviour-regularised
actor-critic, fully offline.

A deterministic context encoder embeds each transition; a task is the mean embedding of its context
(:class:`~lit_offmeta.nn.context_encoder.DeterministicContextEncoder`). The encoder is trained ONLY by the
distance-metric loss (:func:`distance_metric_loss`): embeddings of transitions of the same task are pulled together
(squared distance), those of different tasks pushed apart by an inverse-power term. The actor-critic sees
``concat(s, z)`` with ``z`` detached, so the RL losses never shape the embedding (FOCAL's decoupling).

The offline RL (:class:`~lit_offmeta.algorithms.context_rl.ContextBRAC`, shared with CORRO and UNICORN) is BRAC
with a value penalty (Wu, Tucker and Nachum 2019, arXiv:1911.11361), which FOCAL builds on: a behaviour model
``pi_b(a | s, z)`` is fitted to the data by maximum likelihood, and the divergence
``D(s) = E_{a ~ pi}[log pi(a|s, z) - log pi_b(a|s, z)]`` (a one-sample estimate of ``KL(pi || pi_b)``) enters the
critic's target, ``y = r + gamma (1 - d) (min Q'(s', a') - alpha D(s'))``, and the actor's loss,
``alpha D(s) - min Q(s, a)``, ``a ~ pi``: the project's SAC losses (:mod:`lit_offmeta.algorithms.sac`) with the
entropy term replaced by the divergence. Where we differ from the authors' code: it estimates the KL in BRAC's
dual form with an extra critic network; we use the primal sample estimate from the fitted behaviour model, which
BRAC also defines, and a fixed ``alpha`` (BRAC's value-penalty setting). The distance-metric loss follows the paper's
form; the authors' code takes root-mean-square distances for the positive pairs and a fixed epsilon.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lit_offmeta.algorithms.context_rl import ContextBRAC, check_arguments
from lit_offmeta.data.batch import TaskBatch


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


def support_distance_metric_loss(embeddings: Tensor, transitions: int, beta: float = 1.0, power: float = 2.0,
                                 epsilon: float = 0.1) -> Tensor:
    """:func:`distance_metric_loss` on the first ``transitions`` embeddings of each task of ``[K, B, latent]``
    support embeddings, labelled by their task's position in the batch."""
    k = embeddings.shape[0]
    m = min(transitions, embeddings.shape[1])
    labels = torch.arange(k, device=embeddings.device).repeat_interleave(m)
    return distance_metric_loss(embeddings[:, :m].reshape(k * m, -1), labels, beta, power, epsilon)


class FOCAL(ContextBRAC):
    """FOCAL as a LightningModule, trained from an ``OfflineMetaDataModule`` (see the module docstring).

    Per :class:`TaskBatch` of K tasks: ``z_k`` is the mean embedding of task k's SUPPORT transitions; the
    distance-metric loss acts on ``dml_transitions`` support embeddings per task; the behaviour model, critics and
    actor train on the QUERY transitions with ``z_k`` (detached) appended to the state
    (:class:`~lit_offmeta.algorithms.context_rl.ContextBRAC`, shared with CORRO and UNICORN).

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

    representation_loss_name = "loss_dml"

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
        check_arguments(
            "FOCAL",
            positive_integers={"obs_dim": obs_dim, "action_dim": action_dim, "latent_dim": latent_dim,
                               "dml_transitions": dml_transitions},
            positive={"lr_encoder": lr_encoder, "lr_critic": lr_critic, "lr_policy": lr_policy,
                      "lr_behaviour": lr_behaviour, "dml_epsilon": dml_epsilon},
            non_negative={"dml_beta": dml_beta, "divergence_weight": divergence_weight},
            gamma=gamma, tau=tau,
        )
        self.save_hyperparameters()
        self.build_networks()

    def representation_losses(self, batch: TaskBatch, embeddings: Tensor, z: Tensor) -> dict[str, Tensor]:
        """The distance-metric loss on the first ``dml_transitions`` support embeddings of each task."""
        hp = self.hparams
        return {"loss_dml": support_distance_metric_loss(embeddings, hp.dml_transitions, hp.dml_beta, hp.dml_power,
                                                         hp.dml_epsilon)}
