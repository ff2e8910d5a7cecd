"""TaskBatch: the unit of meta-training data, a support and a query set for each of K tasks."""

from __future__ import annotations

from dataclasses import dataclass

import torch

TRANSITION_KEYS = (
    "obs",  # [..., obs_dim] float32, s_t
    "actions",  # [..., act_dim] float32 (continuous) or [...] int64 (discrete)
    "rewards",  # [...] float32, r_t
    "next_obs",  # [..., obs_dim] float32, s_{t+1}
    "terminals",  # [...] float32, 1 where s_{t+1} is a true terminal (NOT at a time-limit cut)
    "mc_returns",  # [...] float32, discounted reward-to-go inside the stored trajectory
    "bootstrap_obs",  # [..., obs_dim] float32, last next_obs of the trajectory (used where it was cut)
    "bootstrap_discounts",  # [...] float32, gamma^(T-t) where the trajectory was cut, 0 where it terminated
)
"""Keys of every transition dict. The Monte-Carlo value target with bootstrapping at truncation is
``mc_returns + bootstrap_discounts * V(bootstrap_obs)`` (docs/REFERENCE.md, "Losses")."""


@dataclass
class TaskBatch:
    """Support and query transitions of K tasks, stacked along a leading task axis.

    Attributes:
        support: dict of ``TRANSITION_KEYS`` -> tensors of shape ``[K, B_in, ...]`` (inner-loop data).
        query: dict of ``TRANSITION_KEYS`` -> tensors of shape ``[K, B_out, ...]`` (outer-loop data),
            drawn disjointly from the support set of the same task.
        task_ids: ``[K]`` int64, indices of the tasks in the family's ``default_tasks()``.
    """

    support: dict[str, torch.Tensor]
    query: dict[str, torch.Tensor]
    task_ids: torch.Tensor

    @property
    def num_tasks(self) -> int:
        return int(self.task_ids.shape[0])

    def to(self, device: torch.device | str) -> TaskBatch:
        """A copy on ``device``. Lightning moves a batch by calling this directly (an object with ``.to`` is a
        transferable type to it), so no LightningModule needs a ``transfer_batch_to_device`` override."""
        return TaskBatch(
            {k: v.to(device) for k, v in self.support.items()},
            {k: v.to(device) for k, v in self.query.items()},
            self.task_ids.to(device),
        )
