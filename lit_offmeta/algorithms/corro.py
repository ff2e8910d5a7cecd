"""CORRO (Yuan and Lu, ICML 2022, arXiv:2206.10442): contrastive transition embeddings + the shared offline RL.

A task representation inferred from offline data should depend on the task, not on the behaviour policy that
collected the data. CORRO trains its transition encoder ``h = f(s, a, r, s')`` with InfoNCE
(:func:`info_nce_loss`): for an anchor transition of task ``i``, the positive is another transition of task ``i``;
the negatives keep the anchor's ``(s, a)`` and take ``(r, s')`` of OTHER tasks. Since a negative shares the
anchor's state and action, the only way to tell it apart is the reward and dynamics, so what the encoder learns
cannot be "where the behaviour policy of task i goes". The embeddings are normalised to unit length (the cosine
similarity sees only their direction); the task's ``z`` is the mean of its context's embeddings;
the actor-critic sees it detached (:class:`~lit_offmeta.algorithms.context_rl.ContextBRAC`, shared with FOCAL and
UNICORN), so only the contrastive loss trains the encoder, as in the paper.

Negatives (constructor option ``negatives``):

* ``"relabel"``: ``(s, a, r_j, s')`` with ``r_j = R_j(s, a, s')`` recomputed by the task family's reward function
  (:meth:`~lit_offmeta.tasks.base.TaskFamily.reward`, the function ``env.step()`` calls) for every other task ``j``
  of the batch: the true reward of task ``j`` at the anchor's transition, where the paper approximates it with a
  learned CVAE over ``(r, s') | (s, a)``. It needs rewards computable from ``(s, a, s')`` and dynamics shared by
  the tasks (the anchor's ``s'`` stays), so it refuses families without either.
* ``"noise"``: the paper's reward randomisation, ``(s, a, r + nu, s')`` with ``nu ~ N(0, reward_noise_std^2)``,
  for any family whose tasks differ in rewards.

Where we follow the paper and where we differ:

* the InfoNCE objective, the positive (any other transition of the same task, ``x, x' in D(M)``: it need not share
  the anchor's ``(s, a)``) and negatives sharing the anchor's ``(s, a)`` are the paper's. The anchors come from
  the support set, a contiguous slice of the task's chronological buffer, and their positives from the query set,
  drawn uniformly from the rest of it: a positive lies on another trajectory, usually of the behaviour policy at
  another stage of its training, so matching it to the anchor rewards what the task decides, not what the
  trajectory or its policy does;
* the paper writes a generic score ``S(h, h')``; ours is the cosine similarity over a temperature
  (:func:`info_nce_loss`), which bounds the logits, and the embeddings it compares are the unit vectors that the
  context's mean averages (with free norms, ``z`` shrank to a tenth of FOCAL's scale on PointRobot and the actor
  hardly used it);
* negatives from relabelled rewards replace the paper's CVAE (whose purpose is to approximate exactly these
  other-task transitions), or are the paper's reward randomisation;
* the paper aggregates the transition embeddings with an attention network (its code trains it with the RL after
  pre-training the encoder); we average them, as FOCAL does, and train the encoder jointly with the RL, which sees
  ``z`` detached, so the encoder learns exactly what pre-training would teach it;
* the offline RL is the BRAC value penalty shared with FOCAL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lit_offmeta.algorithms.context_rl import ContextBRAC, check_arguments
from lit_offmeta.data.batch import TaskBatch
from lit_offmeta.tasks import get_family
from lit_offmeta.tasks.base import Task, TaskFamily

NEGATIVE_KINDS = ("relabel", "noise")


def info_nce_loss(anchors: Tensor, positives: Tensor, negatives: Tensor, temperature: float = 0.5,
                  negative_mask: Tensor | None = None) -> Tensor:
    r"""InfoNCE with cosine similarity over a temperature, averaged over anchors.

    .. math::
        L = -\operatorname{mean}_n \log \frac{\exp S(h_n, h_n^+)}
            {\exp S(h_n, h_n^+) + \sum_m \exp S(h_n, h_{n,m}^-)}, \qquad
        S(u, v) = \frac{u \cdot v}{\lVert u \rVert \lVert v \rVert \, \tau}

    Args:
        anchors: ``[N, d]`` anchor embeddings.
        positives: ``[N, d]`` one positive per anchor.
        negatives: ``[N, M, d]`` ``M`` negatives per anchor.
        temperature: ``tau``; smaller sharpens the softmax over the ``1 + M`` candidates.
        negative_mask: optional ``[N, M]`` bool, False for a negative to leave out of the anchor's denominator.

    Returns:
        A scalar (``log(1 + M)`` when every similarity is equal).
    """
    positive_logits = F.cosine_similarity(anchors, positives, dim=-1) / temperature  # [N]
    negative_logits = F.cosine_similarity(anchors[:, None, :], negatives, dim=-1) / temperature  # [N, M]
    if negative_mask is not None:
        negative_logits = negative_logits.masked_fill(~negative_mask, float("-inf"))
    logits = torch.cat([positive_logits[:, None], negative_logits], dim=1)
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()


def check_relabel_family(family: TaskFamily, owner: str = "CORRO") -> None:
    """Raise a ``ValueError`` naming the ``negatives`` option when ``family``'s rewards cannot be recomputed from
    ``(s, a, s')``, or when its tasks change the dynamics (a negative keeps the anchor's ``s'``, which is then not a
    transition of the other task; with a task-independent reward it would even equal the anchor)."""
    if not family.rewards_from_transitions:
        raise ValueError(
            f"{owner}: negatives='relabel' recomputes other tasks' rewards from (obs, action, next_obs), which family "
            f"{family.name!r} cannot (its rewards read simulator state the observation lacks); use negatives='noise'"
        )
    if family.dynamics_vary_with_task:
        raise ValueError(
            f"{owner}: negatives='relabel' keeps the anchor's next_obs and relabels only the reward, but the tasks of "
            f"family {family.name!r} change the dynamics, so the relabelled transition is not one of another task; "
            "use negatives='noise'"
        )


def relabelled_rewards(family: TaskFamily, tasks: Sequence[Task], obs: Tensor, actions: Tensor,
                       next_obs: Tensor) -> Tensor:
    """``R_j(s, a, s')`` for each task ``j``: ``[J, *batch]`` rewards of ``obs`` ``[*batch, obs_dim]`` (and the
    matching ``actions``, ``next_obs``) under every task of ``tasks``, by the family's reward function."""
    arrays = [x.detach().cpu().numpy() for x in (obs, actions, next_obs)]
    rewards = np.stack([np.asarray(family.reward(task, *arrays), dtype=np.float32) for task in tasks])
    return torch.from_numpy(rewards).to(device=obs.device, dtype=obs.dtype)


class CORRO(ContextBRAC):
    """CORRO as a LightningModule, trained from an ``OfflineMetaDataModule`` (see the module docstring).

    Per :class:`TaskBatch` of K tasks: the first ``contrastive_transitions`` support transitions of each task are
    anchors; anchor ``n``'s positive is query transition ``n`` of the same task; its negatives are the anchor
    relabelled with the other ``K - 1`` tasks' rewards (``"relabel"``) or ``noise_negatives`` noisy copies of its
    reward (``"noise"``). ``z_k`` is the mean embedding of task k's support transitions; the behaviour model, critics
    and actor train on the QUERY transitions with ``z_k`` detached.

    Args:
        obs_dim, action_dim: sizes, checked against the datamodule in ``setup``.
        latent_dim: size of ``z``.
        encoder_hidden: transition-encoder MLP widths.
        hidden: actor, critic and behaviour-model widths.
        use_next_obs_in_context: embed ``s'`` too (needed when the dynamics vary across tasks).
        negatives: ``"relabel"`` (other tasks' rewards, recomputed) or ``"noise"`` (reward randomisation).
        relabel_family: the task family whose reward function relabels (``"relabel"`` only); ``None``: the
            datamodule's, taken in ``setup``. Given here, a family that cannot relabel is refused at construction.
        temperature: the InfoNCE temperature ``tau``. On PointRobot (one seed, 1500 updates) a smaller one packed the
            task directions closer (mean distance between held-out tasks' ``z`` 0.24, 0.35, 0.75, 0.90 at 0.05, 0.1,
            0.5, 1.0) and the held-out return fell with it (-18.3, -15.7, -13.7, -12.9; FOCAL -13.0).
        contrastive_transitions: anchors per task.
        noise_negatives: negatives per anchor with ``"noise"``.
        reward_noise_std: standard deviation of the reward noise with ``"noise"``, in reward units.
        divergence_weight: BRAC's ``alpha``, the weight of the KL penalty in the target and in the actor loss.
        gamma: discount.
        tau: Polyak rate of the target critics.
        lr_encoder, lr_critic, lr_policy, lr_behaviour: Adam learning rates.
    """

    representation_loss_name = "loss_nce"

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        latent_dim: int = 20,
        encoder_hidden: Sequence[int] = (200, 200, 200),
        hidden: Sequence[int] = (256, 256, 256),
        use_next_obs_in_context: bool = True,
        negatives: Literal["relabel", "noise"] = "relabel",
        relabel_family: str | None = None,
        temperature: float = 0.5,
        contrastive_transitions: int = 16,
        noise_negatives: int = 16,
        reward_noise_std: float = 1.0,
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
            "CORRO",
            positive_integers={"obs_dim": obs_dim, "action_dim": action_dim, "latent_dim": latent_dim,
                               "contrastive_transitions": contrastive_transitions, "noise_negatives": noise_negatives},
            positive={"lr_encoder": lr_encoder, "lr_critic": lr_critic, "lr_policy": lr_policy,
                      "lr_behaviour": lr_behaviour, "temperature": temperature, "reward_noise_std": reward_noise_std},
            non_negative={"divergence_weight": divergence_weight},
            gamma=gamma, tau=tau,
        )
        if negatives not in NEGATIVE_KINDS:
            raise ValueError(f"CORRO: negatives must be one of {NEGATIVE_KINDS}, got {negatives!r}")
        self._relabel_family: TaskFamily | None = None
        self._relabel_tasks: list[Task] = []
        if relabel_family is not None and negatives == "relabel":
            self._use_family(relabel_family)
        self.save_hyperparameters()
        self.build_networks()

    def embed(self, transitions: dict[str, Tensor]) -> Tensor:
        """Unit-length transition embeddings ``f(x) / ||f(x)||``: the cosine similarity fixes only their direction,
        so the direction is the representation (an unnormalised norm drifts freely and can shrink ``z`` far below
        the scale of the states it is appended to)."""
        return F.normalize(self.encoder.embed(transitions), dim=-1)

    def _use_family(self, name: str) -> None:
        # A fresh instance of our own (not the datamodule's, which may hold a probe environment): only its reward
        # function and default task list are used.
        family = get_family(name)
        check_relabel_family(family)
        self._relabel_family, self._relabel_tasks = family, family.default_tasks()

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        family = getattr(getattr(datamodule, "family", None), "name", None)
        if family is None or self.hparams.negatives != "relabel":
            return
        if self.hparams.relabel_family is not None and self.hparams.relabel_family != family:
            raise ValueError(f"CORRO: relabel_family={self.hparams.relabel_family!r} but the datamodule serves family "
                             f"{family!r}; relabelling would use the wrong reward function")
        if self._relabel_family is None:
            self._use_family(family)
        tasks_per_batch = getattr(datamodule, "tasks_per_batch", None)
        if tasks_per_batch is not None and tasks_per_batch < 2:
            raise ValueError("CORRO: negatives='relabel' takes negatives from the other tasks of a batch; "
                             f"tasks_per_batch={tasks_per_batch} leaves none (use >= 2, or negatives='noise')")

    # --- the contrastive loss ------------------------------------------------------------------------------
    def negative_transitions(self, batch: TaskBatch, anchors: dict[str, Tensor]) -> tuple[dict[str, Tensor],
                                                                                          Tensor | None]:
        """The negatives of the anchors ``[K, m, ...]``: transition dicts ``[K, m, M, ...]`` sharing each anchor's
        ``(s, a, s')`` with another reward, and an ``[K, m, M]`` mask (``None``: keep all) that leaves out a
        relabelled negative whose task is the anchor's own (a batch holding a task twice)."""
        k, m = anchors["rewards"].shape
        if self.hparams.negatives == "noise":
            count = self.hparams.noise_negatives
            noise = torch.randn(k, m, count, device=anchors["rewards"].device, dtype=anchors["rewards"].dtype)
            rewards, mask = anchors["rewards"][..., None] + self.hparams.reward_noise_std * noise, None
        else:
            if self._relabel_family is None:
                raise ValueError("CORRO: negatives='relabel' needs the task family's reward function: pass "
                                 "relabel_family=... or train from an OfflineMetaDataModule (its family is taken in "
                                 "setup)")
            if k < 2:
                raise ValueError("CORRO: negatives='relabel' takes negatives from the other tasks of a batch; a batch "
                                 "of one task has none (use tasks_per_batch >= 2, or negatives='noise')")
            tasks = [self._relabel_tasks[int(i)] for i in batch.task_ids.tolist()]
            all_rewards = relabelled_rewards(self._relabel_family, tasks, anchors["obs"], anchors["actions"],
                                             anchors["next_obs"])  # [K_j, K_i, m]: anchor (i, n) under task j
            device = all_rewards.device
            others = torch.tensor([[j for j in range(k) if j != i] for i in range(k)], device=device)  # [K, K - 1]
            count = k - 1
            rewards = all_rewards.permute(1, 2, 0).gather(2, others[:, None, :].expand(k, m, count))
            task_ids = batch.task_ids.to(device)
            mask = (task_ids[others] != task_ids[:, None])[:, None, :].expand(k, m, count)
        negatives = {key: value[:, :, None].expand(k, m, count, *value.shape[2:])
                     for key, value in anchors.items() if key != "rewards"}
        negatives["rewards"] = rewards
        return negatives, mask

    def representation_losses(self, batch: TaskBatch, embeddings: Tensor, z: Tensor) -> dict[str, Tensor]:
        """InfoNCE of the first ``contrastive_transitions`` support transitions of each task against as many of its
        query transitions (see the class)."""
        support = batch.support
        k, b = support["rewards"].shape
        if self.hparams.negatives == "relabel" and k < 2 and not self.training:
            return {}  # a held-out batch of one task: no other task to relabel with, the loss is undefined
        m = min(self.hparams.contrastive_transitions, b, batch.query["rewards"].shape[1])
        anchors = {key: support[key][:, :m] for key in ("obs", "actions", "rewards", "next_obs")}
        positives = self.embed({key: batch.query[key][:, :m] for key in anchors})  # [K, m, latent]
        negatives, mask = self.negative_transitions(batch, anchors)
        negative_embeddings = self.embed(negatives)  # [K, m, M, latent]
        count = negative_embeddings.shape[2]
        loss_nce = info_nce_loss(embeddings[:, :m].reshape(k * m, -1), positives.reshape(k * m, -1),
                                 negative_embeddings.reshape(k * m, count, -1), self.hparams.temperature,
                                 None if mask is None else mask.reshape(k * m, count))
        return {"loss_nce": loss_nce}
