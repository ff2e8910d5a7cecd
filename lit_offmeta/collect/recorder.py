"""Recording behaviour data from snapshots of a learned agent, so a dataset's size no longer costs learning.

The task-conditioned SAC collector (:mod:`lit_offmeta.collect.sac_collect`) can learn first and record after: it
keeps :class:`Snapshots` of its actor along its lifetime, and :func:`record_snapshots` then rolls every snapshot out
on every task with stochastic actions. A task's dataset is a *lifetime*: its episodes ordered from the earliest
snapshot to the latest, each episode's ``behaviour_step`` the environment step at which its snapshot was taken,
so the data-quality windows (first / middle / last trajectories, MACAW's Fig. 4 left) keep their meaning.
Multi-episode trials (BOReL) are consecutive episodes of one snapshot on one task.

All tasks are stepped together, one policy call per step for all of them, in a fixed row layout that makes each
task's actions bit-identical whichever other tasks share the call. Every episode draws its reset seed and
its action noise from its own generator, seeded by ``(seed, task, snapshot, episode)``: any subset of tasks or
snapshots, recorded in any process, gives the same episodes as the whole run, and a recorded episode can be
replayed exactly (:func:`episode_generator`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from lit_offmeta.algorithms.sac import SquashedGaussianActor
from lit_offmeta.collect.episodes import Episode, EpisodeBuilder
from lit_offmeta.tasks import Task, TaskFamily


@dataclass
class Snapshots:
    """Copies of a behaviour actor taken along its learning, and how it reads the environment.

    Attributes:
        steps: the agent's total environment-step count at each snapshot, increasing.
        actors: the actor's ``state_dict`` at each snapshot.
        hidden: the actor's hidden widths.
        keep: indices of the observation entries the agent sees.
        features: task index -> the task features appended to its input.
        action_low, action_high: the action box.
    """

    steps: list[int]
    actors: list[dict[str, Tensor]]
    hidden: list[int]
    keep: list[int]
    features: dict[int, list[float]]
    action_low: list[float]
    action_high: list[float]

    def __post_init__(self) -> None:
        if not self.steps or len(self.steps) != len(self.actors):
            raise ValueError(f"Snapshots: need one step per actor, got {len(self.steps)} steps and "
                             f"{len(self.actors)} actors")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:])):
            raise ValueError(f"Snapshots: steps must increase, got {self.steps}")

    def actor(self, index: int) -> SquashedGaussianActor:
        """The actor of snapshot ``index``, in evaluation mode."""
        input_dim = len(self.keep) + len(next(iter(self.features.values())))
        low, high = torch.as_tensor(self.action_low), torch.as_tensor(self.action_high)
        actor = SquashedGaussianActor(input_dim, len(self.action_low), self.hidden, low, high)
        actor.load_state_dict(self.actors[index])
        return actor.eval()

    def agent_input(self, obs: np.ndarray, task_index: int) -> np.ndarray:
        return np.concatenate([np.asarray(obs, dtype=np.float32)[self.keep],
                               np.asarray(self.features[task_index], dtype=np.float32)])

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` atomically (tensors and plain data only: loads with ``weights_only=True``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"steps": self.steps, "actors": self.actors, "hidden": self.hidden, "keep": self.keep,
                   "features": {str(k): v for k, v in self.features.items()}, "action_low": self.action_low,
                   "action_high": self.action_high}
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            torch.save(payload, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Snapshots:
        """Read :meth:`save`'s file (``weights_only=True``); ``ValueError`` naming the file if it is unreadable."""
        try:
            payload = torch.load(path, weights_only=True, map_location="cpu")
            return cls(steps=[int(s) for s in payload["steps"]], actors=list(payload["actors"]),
                       hidden=[int(h) for h in payload["hidden"]], keep=[int(i) for i in payload["keep"]],
                       features={int(k): list(v) for k, v in payload["features"].items()},
                       action_low=list(payload["action_low"]), action_high=list(payload["action_high"]))
        except Exception as err:  # a truncated or foreign file: say which, and how to get a good one
            raise ValueError(f"behaviour snapshots {path} are unreadable ({type(err).__name__}: {err}); delete the "
                             "file to learn again") from None


def episode_generator(seed: int, task_index: int, snapshot_index: int, episode_index: int) -> np.random.Generator:
    """The generator of one recorded episode: its first draw is the environment's reset seed, then one
    ``standard_normal(action_dim)`` per step is the action noise."""
    return np.random.default_rng([seed, task_index, snapshot_index, episode_index])


def snapshot_quotas(steps_per_task: int, num_snapshots: int) -> list[int]:
    """Recorded steps per snapshot: ``steps_per_task`` split as evenly as whole steps allow (later snapshots take
    the remainder)."""
    base, extra = divmod(steps_per_task, num_snapshots)
    return [base + (1 if i >= num_snapshots - extra else 0) for i in range(num_snapshots)]


@torch.no_grad()
def sample_actions(actor: SquashedGaussianActor, inputs: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """The actor's stochastic actions for ``inputs`` ``[N, in]`` with standard-normal ``noise`` ``[N, act]``:
    ``scale * tanh(mean + std * noise) + bias`` (SAC's reparameterised sample)."""
    mean, log_std = actor(torch.from_numpy(inputs))
    pre_tanh = mean + log_std.exp() * torch.from_numpy(noise.astype(np.float32))
    return (torch.tanh(pre_tanh) * actor.action_scale + actor.action_bias).numpy()


def record_snapshots(
    family: TaskFamily,
    tasks: dict[int, Task],
    snapshots: Snapshots,
    steps_per_task: int,
    seed: int,
    write: Callable[[int, list[Episode]], None],
    episodes_per_trial: int = 1,
    progress: bool = True,
) -> None:
    """Roll every snapshot out on every task and hand each task's lifetime to ``write(task_index, episodes)``.

    Each snapshot records whole episodes (whole trials when ``episodes_per_trial > 1``) on each task until it has
    recorded its share of ``steps_per_task`` (:func:`snapshot_quotas`), so a task gets at least ``steps_per_task``
    steps and at most one episode (trial) more per snapshot.

    Raises:
        ValueError: for a discrete-action family, a task without snapshot features, or a non-positive size.
    """
    if family.discrete_actions:
        raise ValueError(f"record_snapshots: family {family.name!r} has discrete actions; snapshots are SAC actors")
    if steps_per_task < 1 or episodes_per_trial < 1:
        raise ValueError(f"record_snapshots: need steps_per_task >= 1 and episodes_per_trial >= 1, got "
                         f"{steps_per_task} and {episodes_per_trial}")
    missing = sorted(set(tasks) - set(snapshots.features))
    if missing:
        raise ValueError(f"record_snapshots: the snapshots were learned without tasks {missing}; learn them first")
    task_ids = sorted(tasks)
    quotas = snapshot_quotas(steps_per_task, len(snapshots.steps))
    envs = {i: family.make_env(tasks[i]) for i in task_ids}
    lifetimes: dict[int, list[Episode]] = {i: [] for i in task_ids}
    estimate = sum(quotas) * len(task_ids)
    bar = tqdm(total=estimate, desc=f"{family.name} record", unit="step", disable=not progress)
    try:
        for k, quota in enumerate(quotas):
            for i, episodes in _record_snapshot(envs, snapshots, k, quota, seed, episodes_per_trial, bar).items():
                lifetimes[i].extend(episodes)
        for i in task_ids:
            write(i, lifetimes.pop(i))
    finally:
        bar.close()
        for env in envs.values():
            env.close()


def _record_snapshot(envs: dict[int, object], snapshots: Snapshots, k: int, quota: int, seed: int,
                     episodes_per_trial: int, bar) -> dict[int, list[Episode]]:
    """Snapshot ``k``'s episodes on every task of ``envs``, all tasks stepped together."""
    actor = snapshots.actor(k)
    action_dim = len(snapshots.action_low)
    recorded = dict.fromkeys(envs, 0)
    episode_index = dict.fromkeys(envs, 0)
    episodes: dict[int, list[Episode]] = {i: [] for i in envs}
    state: dict[int, tuple] = {}  # task -> (obs, builder, generator) of its episode in progress

    def start(task_index: int) -> None:
        e = episode_index[task_index]
        # a new trial only while the quota is not met; a started trial is always completed
        if e % episodes_per_trial == 0 and recorded[task_index] >= quota:
            state.pop(task_index, None)
            return
        rng = episode_generator(seed, task_index, k, e)
        obs, _ = envs[task_index].reset(seed=int(rng.integers(2**31)))
        trial = (e // episodes_per_trial, e % episodes_per_trial) if episodes_per_trial > 1 else (None, None)
        state[task_index] = (obs, EpisodeBuilder(obs, snapshots.steps[k], trial_index=trial[0],
                                                 episode_in_trial=trial[1]), rng)
        episode_index[task_index] = e + 1

    for i in sorted(envs):
        start(i)
    # One actor call per step over a fixed layout: a row for every task the snapshots know, in index order, with
    # zeros for the tasks not being recorded here. A matrix product's rows depend on the batch's shape and the
    # row's position (BLAS blocking), never on the other rows' values, so each task gets bit-identical actions
    # whichever tasks share the call: in this process, on another rank, or once the others have finished.
    layout = {task: row for row, task in enumerate(sorted(snapshots.features))}
    width = len(snapshots.keep) + len(next(iter(snapshots.features.values())))
    inputs = np.zeros((len(layout), width), dtype=np.float32)
    noise = np.zeros((len(layout), action_dim))
    while state:
        active = sorted(state)
        for i in active:
            inputs[layout[i]] = snapshots.agent_input(state[i][0], i)
            noise[layout[i]] = state[i][2].standard_normal(action_dim)
        all_actions = sample_actions(actor, inputs, noise)
        actions = all_actions[[layout[i] for i in active]]
        for row, i in enumerate(active):
            _, builder, rng = state[i]
            next_obs, reward, terminated, truncated, _ = envs[i].step(actions[row])
            builder.add(actions[row], float(reward), next_obs, terminated, truncated)
            recorded[i] += 1
            state[i] = (next_obs, builder, rng)
            if terminated or truncated:
                episodes[i].append(builder.finish())
                start(i)
        bar.update(len(active))
    return episodes
