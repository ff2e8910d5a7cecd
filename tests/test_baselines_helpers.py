"""Synthetic PointRobot task data for the baseline tests (no files, a fraction of a second to build).

Each task's buffer is made by a noisy goal-directed "behaviour agent" whose noise anneals over its lifetime,
like the collection presets; Monte-Carlo returns and bootstrap fields follow ``TRANSITION_KEYS``. The tiny
datamodule yields :class:`TaskBatch` es (support = contiguous slice, query = disjoint uniform draw) and offers
``adaptation_batch`` like the project's ``OfflineMetaDataModule``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, IterableDataset

from lit_offmeta.data.batch import TRANSITION_KEYS, TaskBatch
from lit_offmeta.tasks import get_family


def point_robot_episodes(task_id: int, episodes: int = 24, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Minari-style episodes of a noisy goal-directed agent whose noise anneals (early poor, late good)."""
    family = get_family("point_robot")
    task = family.default_tasks()[task_id]
    goal = np.asarray(task["goal"], dtype=np.float32)
    rng = np.random.default_rng([seed, task_id])
    out, steps = [], 0
    for ep in range(episodes):
        noise = 1.0 - 0.9 * ep / max(1, episodes - 1)
        pos = np.zeros(2, dtype=np.float32)
        obs, acts, rews = [pos], [], []
        for _ in range(family.horizon):
            direction = (goal - pos) / max(1e-6, float(np.linalg.norm(goal - pos)))
            a = np.clip(direction + noise * rng.normal(size=2), -1, 1).astype(np.float32)
            new = (pos + 0.1 * a).astype(np.float32)
            acts.append(a)
            rews.append(float(family.reward(task, pos, a, new)))
            obs.append(new)
            pos = new
        ends = np.zeros(family.horizon, dtype=bool)
        ends[-1] = True
        out.append({
            "observations": np.stack(obs), "actions": np.stack(acts), "rewards": np.asarray(rews, np.float32),
            "terminations": np.zeros(family.horizon, dtype=bool), "truncations": ends, "behaviour_step": steps,
        })
        steps += family.horizon
    return out


def point_robot_buffers(
    task_ids: list[int], episodes: int = 24, gamma: float = 0.9, seed: int = 0
) -> dict[int, dict[str, torch.Tensor]]:
    """Per-task flat transitions ``{key: [N, ...]}`` (``TRANSITION_KEYS``) for PointRobot (dense, H = 20)."""
    buffers = {}
    for tid in task_ids:
        rows: dict[str, list[np.ndarray]] = {k: [] for k in TRANSITION_KEYS}
        for ep in point_robot_episodes(tid, episodes, seed):
            rews = ep["rewards"]
            horizon = len(rews)
            mc = np.zeros(horizon, dtype=np.float32)
            running = 0.0
            for t in reversed(range(horizon)):
                running = rews[t] + gamma * running
                mc[t] = running
            rows["obs"].append(ep["observations"][:-1])
            rows["actions"].append(ep["actions"])
            rows["rewards"].append(rews)
            rows["next_obs"].append(ep["observations"][1:])
            rows["terminals"].append(np.zeros(horizon, dtype=np.float32))  # time-limit cuts only
            rows["mc_returns"].append(mc)
            rows["bootstrap_obs"].append(np.repeat(ep["observations"][-1:], horizon, axis=0))
            rows["bootstrap_discounts"].append((gamma ** (horizon - np.arange(horizon))).astype(np.float32))
        buffers[tid] = {k: torch.as_tensor(np.concatenate(v)) for k, v in rows.items()}
    return buffers


def write_point_robot_datasets(root, task_ids: list[int], episodes: int = 12, seed: int = 0) -> None:
    """Write the synthetic episodes through the project's storage API (as ``lit-offmeta collect`` does)."""
    from lit_offmeta.data.storage import write_task_dataset

    tasks = get_family("point_robot").default_tasks()
    for tid in task_ids:
        write_task_dataset(root, "point_robot", tid, tasks[tid], point_robot_episodes(tid, episodes, seed),
                           {"behaviour": "annealed-noise goal seeker (tests)"})


def sample_task_batch(
    buffers: dict[int, dict[str, torch.Tensor]],
    task_ids: list[int],
    support_size: int,
    query_size: int,
    generator: torch.Generator,
) -> TaskBatch:
    """Support = a contiguous slice, query = a uniform draw from the rest (disjoint), for each task."""
    support, query = {k: [] for k in TRANSITION_KEYS}, {k: [] for k in TRANSITION_KEYS}
    for tid in task_ids:
        buf = buffers[tid]
        n = buf["rewards"].shape[0]
        start = int(torch.randint(0, n - support_size + 1, (1,), generator=generator))
        s_idx = torch.arange(start, start + support_size)
        rest = torch.cat([torch.arange(0, start), torch.arange(start + support_size, n)])
        q_idx = rest[torch.randperm(rest.shape[0], generator=generator)[:query_size]]
        for k in TRANSITION_KEYS:
            support[k].append(buf[k][s_idx])
            query[k].append(buf[k][q_idx])
    return TaskBatch(
        {k: torch.stack(v) for k, v in support.items()},
        {k: torch.stack(v) for k, v in query.items()},
        torch.as_tensor(task_ids, dtype=torch.int64),
    )


class _TaskBatches(IterableDataset):
    def __init__(self, buffers, task_ids, tasks_per_batch, support_size, query_size, num_batches, seed):
        self.args = (buffers, task_ids, tasks_per_batch, support_size, query_size, num_batches, seed)

    def __iter__(self):
        buffers, task_ids, k, support_size, query_size, num_batches, seed = self.args
        g = torch.Generator().manual_seed(seed)
        for _ in range(num_batches):
            chosen = [task_ids[int(i)] for i in torch.randperm(len(task_ids), generator=g)[:k]]
            yield sample_task_batch(buffers, chosen, support_size, query_size, g)


class SyntheticMetaDataModule(LightningDataModule):
    """A small stand-in for ``OfflineMetaDataModule`` on synthetic PointRobot buffers."""

    def __init__(
        self,
        train_ids: tuple[int, ...] = (0, 1, 2, 3, 4, 5),
        test_ids: tuple[int, ...] = (6, 7),
        tasks_per_batch: int = 3,
        support_size: int = 32,
        query_size: int = 32,
        batches_per_epoch: int = 4,
        episodes: int = 12,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.family = get_family("point_robot")
        self.obs_dim, self.action_dim = 2, 2
        self.train_task_ids, self.test_task_ids = list(train_ids), list(test_ids)
        self.k, self.support_size, self.query_size = tasks_per_batch, support_size, query_size
        self.batches_per_epoch, self.seed = batches_per_epoch, seed
        self.buffers = point_robot_buffers(self.train_task_ids + self.test_task_ids, episodes=episodes, seed=seed)

    def _loader(self, ids, k, n, seed):
        ds = _TaskBatches(self.buffers, ids, k, self.support_size, self.query_size, n, seed)
        return DataLoader(ds, batch_size=None)

    def train_dataloader(self):
        return self._loader(self.train_task_ids, self.k, self.batches_per_epoch, self.seed)

    def val_dataloader(self):
        return self._loader(self.test_task_ids, len(self.test_task_ids), 1, self.seed + 1)

    def test_dataloader(self):
        return self.val_dataloader()

    def task(self, task_id: int) -> dict:
        return self.family.default_tasks()[task_id]

    def adaptation_batch(self, task_id: int, size: int = 64, window=None, seed: int = 0) -> dict[str, torch.Tensor]:
        buf = self.buffers[task_id]
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(buf["rewards"].shape[0], generator=g)[:size]
        return {k: v[idx] for k, v in buf.items()}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run torch on one intra-op thread during the test (restored after).

    Measured here: with the 2 cores shared by several processes, small-network training ran ~30x slower on
    torch's default 2 threads than on 1 (the threads spin-wait for each other).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
