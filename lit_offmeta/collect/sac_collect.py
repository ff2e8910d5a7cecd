"""Collection with ONE task-conditioned SAC agent whose experience is logged per task.

Design choice (issue 3 allows per-task agents or this): MACAW trained one SAC/TD3 agent per task for millions
of steps (arXiv:2008.06043, App. D), which a 2-core CPU cannot afford for 40 tasks. Here a single SAC agent sees
the observation plus the task parameters, and ``num_envs`` environments step in parallel. Every episode starts
on the task with the fewest recorded steps, so all tasks' buffers grow together. Each task's buffer holds
exactly the episodes the agent played on that task, in order, from random warm-up actions to late near-expert
behaviour: a per-task lifetime buffer of a learner that shares what it learns across tasks. Each episode's
``behaviour_step`` is the agent's total environment-step count when the episode began, so quality windows cut
by training time are comparable across tasks.

Learning and recording apart (``learn_steps_per_task > 0``): the agent learns for ``learn_steps_per_task`` steps
per task without recording, keeps ``num_snapshots`` copies of its actor along the way (the first before any
update, the last at the end) in ``behaviour_snapshots.pt`` next to the datasets, and
:func:`lit_offmeta.collect.recorder.record_snapshots` then records ``steps_per_task`` steps per task from them:
the dataset's size does not cost learning. A run that finds the snapshot file skips learning.

Resuming: with ``checkpoint_every > 0`` the collector lets every environment finish its episode once that
many steps have passed since the last checkpoint, saves a checkpoint (:mod:`lit_offmeta.collect.checkpoint`)
and goes on; environments are reseeded from the collector's generator after each checkpoint, so a run resumed
from one records exactly what the uninterrupted run records. Tasks written before a kill are skipped.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from lit_offmeta.collect.checkpoint import load_checkpoint, save_checkpoint, unpack_episodes
from lit_offmeta.collect.episodes import Episode, EpisodeBuilder
from lit_offmeta.collect.presets import CollectConfig
from lit_offmeta.collect.recorder import Snapshots, record_snapshots
from lit_offmeta.collect.sac import SAC, SACConfig
from lit_offmeta.tasks import Task, TaskFamily, task_features

SNAPSHOTS_NAME = "behaviour_snapshots.pt"
"""The file, next to a family's datasets, holding the behaviour agent's actor snapshots."""


class ReplayBuffer:
    """A ring buffer of the agent's inputs (observation with task features), uniform sampling."""

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, rng: np.random.Generator):
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, action_dim), dtype=np.float32)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminals = np.zeros(capacity, dtype=np.float32)
        self.capacity, self.size, self.cursor, self.rng = capacity, 0, 0, rng

    def arrays(self) -> dict[str, np.ndarray]:
        return {"obs": self.obs, "next_obs": self.next_obs, "actions": self.actions, "rewards": self.rewards,
                "terminals": self.terminals}

    def load_arrays(self, arrays: dict[str, np.ndarray], size: int, cursor: int) -> None:
        for key, value in arrays.items():
            if getattr(self, key).shape != value.shape:
                raise ValueError(f"replay checkpoint: {key!r} has shape {value.shape}, expected "
                                 f"{getattr(self, key).shape}; delete the checkpoint to start over")
            getattr(self, key)[:] = value
        self.size, self.cursor = size, cursor

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminal: bool) -> None:
        i = self.cursor
        self.obs[i], self.actions[i], self.rewards[i], self.next_obs[i] = obs, action, reward, next_obs
        self.terminals[i] = float(terminal)
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        idx = self.rng.integers(0, self.size, size=batch_size)
        return {
            "obs": torch.from_numpy(self.obs[idx]),
            "actions": torch.from_numpy(self.actions[idx]),
            "rewards": torch.from_numpy(self.rewards[idx]),
            "next_obs": torch.from_numpy(self.next_obs[idx]),
            "terminals": torch.from_numpy(self.terminals[idx]),
        }


def collect_sac(
    family: TaskFamily,
    config: CollectConfig,
    tasks: dict[int, Task],
    seed: int,
    write: Callable[[int, list[Episode]], None],
    progress: bool = True,
    on_update: Callable[[int, dict[str, float]], None] | None = None,
    checkpoint_dir: Path | None = None,
    already_written: set[int] | frozenset[int] = frozenset(),
    log: Callable[[str], None] | None = print,
    snapshots_path: Path | None = None,
    record_only: set[int] | None = None,
    after_learning: Callable[[], None] | None = None,
) -> SAC | None:
    """Train one task-conditioned SAC agent on ``tasks`` and hand each task's episodes to ``write``.

    Args:
        family: a continuous-action task family.
        config: collection settings (``steps_per_task``, ``num_envs``, ``agent_kwargs`` -> :class:`SACConfig`).
        tasks: task index -> task parameters.
        seed: seeds torch, the environments and the replay sampling.
        write: called once per task as soon as its last episode ends, ``write(task_index, episodes)``.
        progress: show a tqdm bar over environment steps.
        on_update: optional ``(env_step, metrics)`` hook after each gradient update (diagnostics).
        checkpoint_dir: where checkpoints go (every ``config.checkpoint_every`` steps; 0: never). A checkpoint
            found there is resumed: it may cover more tasks than ``tasks`` if the extra ones are in
            ``already_written`` (datasets finished after it was taken); those are not written again. The
            folder is deleted when the run completes.
        already_written: task indices whose datasets exist.
        log: where one-line status messages go (a resume from a checkpoint, a checkpoint repaired after a
            kill); ``None``: silent.
        snapshots_path: with ``config.learn_steps_per_task > 0``, where the actor snapshots are kept (default:
            next to ``checkpoint_dir``); when the file exists, learning is skipped and recording starts at once.
        record_only: with learning apart from recording, record only these of ``tasks`` (the agent still learns
            on all of them); ``None``: all.
        after_learning: called once the snapshots are saved (or found), before recording (distributed
            collection: the other ranks may then start recording theirs).

    Returns:
        The trained agent (``None`` when recording from an existing snapshot file).
    """
    if family.discrete_actions:
        raise ValueError(f"collect: the sac agent needs continuous actions; family {family.name!r} is discrete")
    if not tasks:
        raise ValueError("collect_sac: no tasks to collect")
    try:
        sac_config = SACConfig(**config.agent_kwargs)
    except TypeError as err:
        raise ValueError(f"collect: bad agent_kwargs {config.agent_kwargs!r} for agent 'sac': {err}") from None
    obs_dim = family.obs_dim
    bad = [i for i in sac_config.obs_exclude if not 0 <= i < obs_dim]
    if bad:
        raise ValueError(f"collect: agent_kwargs.obs_exclude {bad} outside the {obs_dim}-d observation")
    keep = np.array([i for i in range(obs_dim) if i not in set(sac_config.obs_exclude)], dtype=np.int64)
    say = log or (lambda _msg: None)
    from_snapshots = config.learn_steps_per_task > 0
    if from_snapshots and snapshots_path is None:
        if checkpoint_dir is None:
            raise ValueError("collect_sac: learning and recording apart needs snapshots_path or checkpoint_dir")
        snapshots_path = Path(checkpoint_dir).parent / SNAPSHOTS_NAME
    if from_snapshots and Path(snapshots_path).exists():
        snapshots = Snapshots.load(snapshots_path)
        say(f"collect: recording from the behaviour snapshots in {snapshots_path} (learning is done)")
        if after_learning is not None:
            after_learning()
        _timed_recording(family, {i: t for i, t in tasks.items() if record_only is None or i in record_only},
                         snapshots, config, seed, write, progress, say)
        return None
    resume = load_checkpoint(checkpoint_dir, say) if checkpoint_dir is not None else None
    settings = {"config": config.to_dict(), "seed": seed}
    if resume is not None:
        ckpt_tasks = [int(i) for i in resume[0]["task_ids"]]
        extra = sorted(set(ckpt_tasks) - set(tasks))
        missing = sorted(set(tasks) - set(ckpt_tasks))
        if missing or set(extra) - set(already_written) or resume[0]["settings"] != json.loads(json.dumps(settings)):
            raise ValueError(
                f"collect: the SAC checkpoint in {checkpoint_dir} belongs to another run (tasks {ckpt_tasks}, "
                f"settings {resume[0]['settings']}); rerun with those --tasks and settings, or delete the folder"
            )
        family_tasks = family.default_tasks()
        tasks = {i: tasks.get(i, family_tasks[i]) for i in ckpt_tasks}
    features = {i: task_features(t) for i, t in tasks.items()}
    input_dim = len(keep) + len(next(iter(features.values())))
    space = family.action_space
    action_dim = int(np.prod(space.shape))

    learning_started = time.perf_counter()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(sac_config.torch_threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    agent = SAC(input_dim, action_dim, space.low.reshape(-1), space.high.reshape(-1), sac_config)
    budget_per_task = config.learn_steps_per_task if from_snapshots else config.steps_per_task
    replay = ReplayBuffer(min(sac_config.replay_capacity, budget_per_task * len(tasks) + 1), input_dim,
                          action_dim, rng)

    def agent_input(obs: np.ndarray, task_index: int) -> np.ndarray:
        return np.concatenate([np.asarray(obs, dtype=np.float32)[keep], features[task_index]])

    task_ids = sorted(tasks)
    steps_taken = dict.fromkeys(task_ids, 0)  # steps recorded or in progress, per task
    episodes: dict[int, list[Episode]] = {i: [] for i in task_ids}
    open_episodes = dict.fromkeys(task_ids, 0)
    num_envs = min(config.num_envs, len(task_ids))  # a task is never played in two environments at once
    envs = [None] * num_envs
    env_task: list[int | None] = [None] * num_envs
    builders: list[EpisodeBuilder | None] = [None] * num_envs
    current_obs: list[np.ndarray | None] = [None] * num_envs
    total_budget = budget_per_task * len(task_ids)
    # snapshot j is taken once the agent has run snapshot_steps[j] steps (the first before any update)
    snapshot_steps = ([round(total_budget * j / max(1, config.num_snapshots - 1)) for j in range(config.num_snapshots)]
                      if from_snapshots else [])
    snapshot_actors: list[dict[str, torch.Tensor]] = []
    global_step, updates_owed = 0, 0.0
    env_by_task: dict[int, Any] = {}
    written = set(already_written) & set(task_ids)
    every = config.checkpoint_every if checkpoint_dir is not None else 0
    if resume is not None:
        state, tensors, replay_arrays, episode_arrays = resume
        agent.load_state_dict(tensors["agent"])
        for name in ("actor_optimizer", "critic_optimizer", "alpha_optimizer"):
            getattr(agent, name).load_state_dict(tensors[name])
        torch.set_rng_state(tensors["torch_rng"])
        rng.bit_generator.state = state["numpy_rng"]
        replay.load_arrays(replay_arrays, state["replay_size"], state["replay_cursor"])
        global_step, updates_owed = state["global_step"], state["updates_owed"]
        snapshot_actors = list(tensors.get("snapshots", []))
        steps_taken = {int(k): v for k, v in state["steps_taken"].items()}
        pending = [int(i) for i in state["pending_tasks"]]
        episodes = unpack_episodes(episode_arrays, pending)
        written |= set(task_ids) - set(pending)
        say(f"collect: resumed from the SAC checkpoint in {checkpoint_dir} at {global_step} env steps of "
            f"{total_budget}")
    next_checkpoint = global_step + every
    desc = f"{family.name} sac" + (" learn" if from_snapshots else "")
    bar = tqdm(total=total_budget, initial=global_step, desc=desc, unit="step", disable=not progress)

    def checkpoint() -> None:
        state = {
            "task_ids": task_ids, "settings": settings, "global_step": global_step, "updates_owed": updates_owed,
            "steps_taken": {str(k): v for k, v in steps_taken.items()}, "pending_tasks": sorted(episodes),
            "numpy_rng": rng.bit_generator.state, "replay_size": replay.size, "replay_cursor": replay.cursor,
        }
        tensors = {"agent": agent.state_dict(), "torch_rng": torch.get_rng_state(), "snapshots": snapshot_actors,
                   **{name: getattr(agent, name).state_dict()
                      for name in ("actor_optimizer", "critic_optimizer", "alpha_optimizer")}}
        save_checkpoint(checkpoint_dir, state, tensors, replay.arrays(), episodes)
        for env in env_by_task.values():  # reseed from rng after a checkpoint: a resumed run does the same
            env.close()
        env_by_task.clear()

    def start_episode(slot: int) -> None:
        # The task with the fewest steps that no other slot is playing (ties: lowest index), if any is short.
        if every and global_step >= next_checkpoint:  # drain: no new episode until the checkpoint is taken
            env_task[slot] = None
            return
        busy = {t for t in env_task if t is not None}
        candidates = [t for t in task_ids if steps_taken[t] < budget_per_task and t not in busy]
        if not candidates:
            env_task[slot] = None
            return
        task_index = min(candidates, key=lambda t: (steps_taken[t], t))
        if task_index not in env_by_task:  # one environment per task, reused across its episodes
            env_by_task[task_index] = family.make_env(tasks[task_index])
            obs, _ = env_by_task[task_index].reset(seed=int(rng.integers(2**31)))
        else:
            obs, _ = env_by_task[task_index].reset()
        envs[slot], env_task[slot], current_obs[slot] = env_by_task[task_index], task_index, obs
        builders[slot] = EpisodeBuilder(obs, global_step)
        open_episodes[task_index] += 1

    recent_returns: deque[float] = deque(maxlen=4 * num_envs)  # progress display: the agent's recent returns

    def end_episode(slot: int) -> None:
        task_index = env_task[slot]
        episode = builders[slot].finish()
        if not from_snapshots:  # learning apart from recording keeps none of its own episodes
            episodes[task_index].append(episode)
        recent_returns.append(float(np.sum(episode["rewards"])))
        bar.set_postfix(recent_return=f"{np.mean(recent_returns):.2f}", tasks_done=len(task_ids) - len(episodes),
                        refresh=False)
        open_episodes[task_index] -= 1
        env_task[slot] = None
        if steps_taken[task_index] >= budget_per_task and open_episodes[task_index] == 0:
            done = episodes.pop(task_index)
            if task_index not in written and not from_snapshots:
                write(task_index, done)
                written.add(task_index)

    def take_snapshots() -> None:
        while len(snapshot_actors) < len(snapshot_steps) and global_step >= snapshot_steps[len(snapshot_actors)]:
            snapshot_actors.append({k: v.detach().clone() for k, v in agent.actor.state_dict().items()})

    try:
        take_snapshots()
        for task_index in [t for t in episodes if steps_taken[t] >= budget_per_task]:
            done = episodes.pop(task_index)  # finished in the checkpoint, written (or not) before the kill
            if task_index not in written and not from_snapshots:
                write(task_index, done)
                written.add(task_index)
        while True:
            if all(t is None for t in env_task):
                if every and global_step >= next_checkpoint and episodes:
                    checkpoint()
                    next_checkpoint = global_step + every
                for slot in range(num_envs):
                    start_episode(slot)
                if all(t is None for t in env_task):
                    break
            active = [s for s in range(num_envs) if env_task[s] is not None]
            inputs = np.stack([agent_input(current_obs[s], env_task[s]) for s in active])
            if global_step < sac_config.learning_starts:
                actions = rng.uniform(space.low, space.high, size=(len(active), action_dim)).astype(np.float32)
            else:
                actions = agent.act(torch.from_numpy(inputs)).numpy()
            for row, slot in enumerate(active):
                task_index = env_task[slot]
                next_obs, reward, terminated, truncated, _ = envs[slot].step(actions[row])
                replay.add(inputs[row], actions[row], float(reward), agent_input(next_obs, task_index), terminated)
                builders[slot].add(actions[row], float(reward), next_obs, terminated, truncated)
                steps_taken[task_index] += 1
                global_step += 1
                current_obs[slot] = next_obs
                if terminated or truncated:
                    end_episode(slot)
                    start_episode(slot)
            bar.update(len(active))
            take_snapshots()
            if global_step >= sac_config.learning_starts:
                updates_owed += sac_config.updates_per_step * len(active)
                while updates_owed >= 1.0:
                    metrics = agent.update(replay.sample(sac_config.batch_size))
                    updates_owed -= 1.0
                    if on_update is not None:
                        on_update(global_step, metrics)
    finally:
        bar.close()
        for env in env_by_task.values():
            env.close()
        torch.set_num_threads(previous_threads)
    if from_snapshots:
        take_snapshots()
        snapshots = Snapshots(steps=snapshot_steps, actors=snapshot_actors, hidden=list(sac_config.hidden),
                              keep=keep.tolist(), features={i: f.tolist() for i, f in features.items()},
                              action_low=space.low.reshape(-1).tolist(), action_high=space.high.reshape(-1).tolist())
        snapshots.save(snapshots_path)
        say(f"collect: learning done after {global_step} env steps in {time.perf_counter() - learning_started:.1f} s; "
            f"{len(snapshot_steps)} snapshots in {snapshots_path}")
    if checkpoint_dir is not None and Path(checkpoint_dir).exists():
        shutil.rmtree(checkpoint_dir)  # learning is over (every task written): the checkpoint has served its purpose
    if from_snapshots:
        if after_learning is not None:
            after_learning()
        _timed_recording(family, {i: tasks[i] for i in task_ids
                                  if i not in written and (record_only is None or i in record_only)},
                         snapshots, config, seed, write, progress, say)
    return agent


def _timed_recording(family: TaskFamily, tasks: dict[int, Task], snapshots: Snapshots, config: CollectConfig,
                     seed: int, write: Callable[[int, list[Episode]], None], progress: bool,
                     say: Callable[[str], None]) -> None:
    started = time.perf_counter()
    record_snapshots(family, tasks, snapshots, config.steps_per_task, seed, write, config.episodes_per_trial,
                     progress)
    say(f"collect: recorded {config.steps_per_task} steps for each of {len(tasks)} task(s) in "
        f"{time.perf_counter() - started:.1f} s (writing included)")
