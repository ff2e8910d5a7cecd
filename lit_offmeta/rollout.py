"""Batched evaluation rollouts: one environment per task, one policy call per step for all of them.

The evaluator, the online fine-tuning loop and the demo all roll policies out through :func:`rollout`. It drives
any :class:`~lit_offmeta.policy.RolloutPolicy`; :func:`as_rollout_policy` turns a plain mean-action
``nn.Module`` (what gradient-based ``adapt`` returns) into one, and :class:`RandomPolicy` gives the random
baseline of the normalised score.

Episode semantics (why not ``gym.vector.SyncVectorEnv``): gymnasium 1.x vector envs auto-reset on the step
AFTER an episode ends (``AutoresetMode.NEXT_STEP``), so every env would need a throw-away step with a masked
action and the reset observation would arrive one call late. Stepping the task environments ourselves keeps
the semantics exact and simple: each environment plays ``episodes`` consecutive episodes of its task (one
*trial*); ``policy.reset`` is called once at the start of the trial, so belief-based policies carry their
belief across episodes; at an episode end ``observe`` receives ``dones=True`` with the true final observation,
and the next ``act`` sees the reset observation. An environment whose trial is over stays idle (its actions
are ignored; ``observe`` sees its last observation again with reward 0 and ``dones=True``) until every other
environment has finished. Episodes end at termination or after the family's ``horizon`` steps, whichever
comes first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from lit_offmeta.policy import RolloutPolicy
from lit_offmeta.tasks.base import Task, TaskFamily


class NonFiniteActionError(ValueError):
    """A policy produced NaN/inf actions (e.g. an adaptation that diverged)."""


@dataclass
class RolloutResult:
    """Undiscounted returns (and success) of a batched rollout.

    Attributes:
        returns: ``[num_tasks, episodes]`` float64, undiscounted return of each episode.
        lengths: ``[num_tasks, episodes]`` int64, steps in each episode.
        success: ``[num_tasks, episodes]`` bool, whether the family's success indicator was true at any step
            of the episode; ``None`` where the family defines no success.
        episodes: the recorded transitions per task and episode (only with ``record=True``), in the Minari
            layout of :mod:`lit_offmeta.data` (``observations`` [T+1, obs_dim], ``actions``, ``rewards``,
            ``terminations``, ``truncations``).
    """

    returns: np.ndarray
    lengths: np.ndarray
    success: np.ndarray | None = None
    episodes: list[list[dict[str, np.ndarray]]] = field(default_factory=list)

    @property
    def num_env_steps(self) -> int:
        return int(self.lengths.sum())

    def task_returns(self) -> np.ndarray:
        """``[num_tasks]`` mean return over each task's episodes."""
        return self.returns.mean(axis=1)

    def task_success(self) -> np.ndarray | None:
        """``[num_tasks]`` fraction of each task's episodes that succeeded, or ``None``."""
        return None if self.success is None else self.success.mean(axis=1)


class ModulePolicy:
    """A :class:`RolloutPolicy` around an ``nn.Module`` mapping observations to MEAN actions.

    Actions are the module's output (deterministic evaluation, as in the paper's protocol), clipped to the
    action space bounds. For discrete families the module's output is read as per-action scores and the
    argmax is taken. ``observe`` is a no-op: gradient-adapted policies do not update online.

    Args:
        module: ``forward(obs [N, obs_dim]) -> [N, act_dim]``.
        action_space: the environments' action space (bounds for clipping; ``Discrete`` for argmax).
        noise_std: Gaussian noise added to the mean action before clipping (0 = deterministic). Online
            fine-tuning uses the policy's own std to explore.
        seed: seed of the noise generator.
    """

    def __init__(self, module: nn.Module, action_space: gym.Space, noise_std: float = 0.0, seed: int = 0) -> None:
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        self.module = module
        self.action_space = action_space
        self.noise_std = float(noise_std)
        self._rng = np.random.default_rng(seed)

    def reset(self, num_envs: int) -> None:
        pass

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        param = next(self.module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        out = self.module(torch.as_tensor(np.asarray(obs), dtype=dtype, device=device))
        out = out.detach().cpu().numpy()
        if not np.all(np.isfinite(out)):
            raise NonFiniteActionError(
                f"{type(self.module).__name__} produced non-finite actions (NaN/inf) for finite observations; "
                "the adapted policy diverged (lower the inner or fine-tuning learning rates)"
            )
        if isinstance(self.action_space, gym.spaces.Discrete):
            return out.argmax(axis=-1).astype(np.int64)
        if self.noise_std > 0:
            out = out + self.noise_std * self._rng.standard_normal(out.shape)
        low, high = self.action_space.low, self.action_space.high
        return np.clip(out, low, high).astype(np.float32)

    def observe(self, obs, actions, rewards, next_obs, dones) -> None:
        pass


class RandomPolicy:
    """Uniformly random actions from the action space: the 0 of the normalised score.

    Args:
        action_space: the environments' action space.
        seed: seed of the action generator (the baseline is reproducible).
    """

    def __init__(self, action_space: gym.Space, seed: int = 0) -> None:
        self.action_space = action_space
        self._rng = np.random.default_rng(seed)

    def reset(self, num_envs: int) -> None:
        self._num_envs = num_envs

    def act(self, obs: np.ndarray) -> np.ndarray:
        n = len(obs)
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            return self._rng.integers(space.start, space.start + space.n, size=n).astype(np.int64)
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"RandomPolicy supports Box and Discrete action spaces, got {space}")
        return self._rng.uniform(space.low, space.high, size=(n, *space.shape)).astype(np.float32)

    def observe(self, obs, actions, rewards, next_obs, dones) -> None:
        pass


class PerTaskPolicy:
    """One batched :class:`RolloutPolicy` from one policy per environment (e.g. one adapted policy per task).

    Row ``i`` of every batch goes to policy ``i``; each sub-policy sees a batch of one environment.

    Args:
        policies: one :class:`RolloutPolicy` (or mean-action ``nn.Module``) per environment.
        action_space: the environments' action space (for wrapping modules).
    """

    def __init__(self, policies: Sequence[Any], action_space: gym.Space) -> None:
        if len(policies) == 0:
            raise ValueError("PerTaskPolicy: policies is empty; pass one policy per environment")
        self.policies = [as_rollout_policy(p, action_space) for p in policies]

    def reset(self, num_envs: int) -> None:
        if num_envs != len(self.policies):
            raise ValueError(f"PerTaskPolicy holds {len(self.policies)} policies but got num_envs={num_envs}")
        for p in self.policies:
            p.reset(1)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(p.act(obs[i : i + 1])) for i, p in enumerate(self.policies)])

    def observe(self, obs, actions, rewards, next_obs, dones) -> None:
        for i, p in enumerate(self.policies):
            s = slice(i, i + 1)
            p.observe(obs[s], actions[s], rewards[s], next_obs[s], dones[s])


def as_rollout_policy(obj: Any, action_space: gym.Space) -> RolloutPolicy:
    """What ``adapt`` returned, as a :class:`RolloutPolicy`.

    Args:
        obj: an ``nn.Module`` mean-action policy (wrapped in :class:`ModulePolicy`) or an object that already
            implements ``reset``/``act``/``observe`` (returned unchanged).
        action_space: the environments' action space.

    Raises:
        TypeError: ``obj`` is neither.
    """
    if isinstance(obj, nn.Module) and not isinstance(obj, RolloutPolicy):
        return ModulePolicy(obj, action_space)
    if isinstance(obj, RolloutPolicy):
        return obj
    raise TypeError(
        f"adapt() must return an nn.Module mapping obs -> mean action or a RolloutPolicy "
        f"(reset/act/observe), got {type(obj).__name__}"
    )


def rollout(
    policy: RolloutPolicy | nn.Module,
    family: TaskFamily,
    tasks: Sequence[Task],
    episodes: int = 1,
    seed: int | Sequence[int] = 0,
    record: bool = False,
    envs: Sequence[gym.Env] | None = None,
) -> RolloutResult:
    """Roll ``policy`` out in one environment per task, all environments advancing together.

    Args:
        policy: a :class:`RolloutPolicy`, or an ``nn.Module`` mean-action policy (see :func:`as_rollout_policy`).
        family: the task family (environments, horizon, success indicator).
        tasks: the tasks to evaluate, one environment each.
        episodes: consecutive episodes per task (one trial; the policy is reset once, before the first).
        seed: environment ``i`` is reset with seed ``seed + i`` before its first episode; or a sequence of
            one seed per environment (e.g. derived from task ids, so that results do not depend on which other
            tasks share the batch).
        record: keep every transition (``RolloutResult.episodes``), e.g. for online fine-tuning.
        envs: environments to reuse (one per task, already built for those tasks); built with
            ``family.make_env`` when ``None``. They are not closed here.

    Returns:
        A :class:`RolloutResult` with ``returns[i, e]`` the undiscounted return of episode ``e`` of task ``i``.

    Raises:
        ValueError: no tasks, ``episodes < 1``, or actions of the wrong shape.
    """
    if len(tasks) == 0:
        raise ValueError("rollout: tasks is empty; pass at least one task")
    if episodes < 1:
        raise ValueError(f"rollout: episodes must be >= 1, got {episodes}")
    own_envs = envs is None
    envs = [family.make_env(task) for task in tasks] if envs is None else list(envs)
    if len(envs) != len(tasks):
        raise ValueError(f"rollout: got {len(envs)} envs for {len(tasks)} tasks; pass one env per task")
    seeds = [int(seed) + i for i in range(len(tasks))] if np.ndim(seed) == 0 else [int(s) for s in seed]
    if len(seeds) != len(tasks):
        raise ValueError(f"rollout: got {len(seeds)} seeds for {len(tasks)} tasks; pass one seed per task")
    try:
        return _rollout(as_rollout_policy(policy, envs[0].action_space), family, tasks, envs, episodes, seeds, record)
    finally:
        if own_envs:
            for env in envs:
                env.close()


def _rollout(
    policy: RolloutPolicy,
    family: TaskFamily,
    tasks: Sequence[Task],
    envs: Sequence[gym.Env],
    episodes: int,
    seeds: list[int],
    record: bool,
) -> RolloutResult:
    n, horizon = len(envs), int(family.horizon)
    returns = np.zeros((n, episodes), dtype=np.float64)
    lengths = np.zeros((n, episodes), dtype=np.int64)
    success: np.ndarray | None = np.zeros((n, episodes), dtype=bool)
    has_success: bool | None = None  # decided on the first transition: does the family define success?
    recorded: list[list[dict[str, np.ndarray]]] = [[] for _ in range(n)]
    traces: list[dict[str, list]] = [{} for _ in range(n)]

    obs = np.stack([np.asarray(env.reset(seed=seeds[i])[0], dtype=np.float32) for i, env in enumerate(envs)])
    episode = np.zeros(n, dtype=np.int64)  # index of the episode each env is playing
    t = np.zeros(n, dtype=np.int64)  # step inside the current episode
    active = np.ones(n, dtype=bool)  # False once an env has played all its episodes
    if record:
        for i in range(n):
            traces[i] = _new_trace(obs[i])
    policy.reset(n)

    while active.any():
        actions = np.asarray(policy.act(obs))
        if actions.shape[0] != n:
            raise ValueError(f"rollout: policy.act returned {actions.shape[0]} actions for {n} environments")
        next_obs = obs.copy()
        rewards = np.zeros(n, dtype=np.float32)
        dones = ~active  # idle envs report done every step
        reset_obs: dict[int, np.ndarray] = {}
        for i in np.flatnonzero(active):
            o2, r, terminated, truncated, step_info = envs[i].step(actions[i])
            o2 = np.asarray(o2, dtype=np.float32)
            next_obs[i], rewards[i] = o2, r
            e = episode[i]
            returns[i, e] += float(r)
            lengths[i, e] += 1
            t[i] += 1
            truncated = bool(truncated) or t[i] >= horizon
            if family.success_in_info:  # simulator-state success (Meta-World)
                has_success = True
                success[i, e] |= bool(step_info.get("success", False))
            else:
                if has_success is None:
                    has_success = family.success(tasks[i], obs[i], actions[i], o2) is not None
                if has_success and bool(family.success(tasks[i], obs[i], actions[i], o2)):
                    success[i, e] = True
            if record:
                _append(traces[i], actions[i], r, o2, bool(terminated), truncated and not terminated)
            if terminated or truncated:
                dones[i] = True
                if record:
                    recorded[i].append(_close_trace(traces[i]))
                episode[i] += 1
                t[i] = 0
                if episode[i] < episodes:
                    reset_obs[i] = np.asarray(envs[i].reset()[0], dtype=np.float32)
                    if record:
                        traces[i] = _new_trace(reset_obs[i])
                else:
                    active[i] = False
        policy.observe(obs, actions, rewards, next_obs, dones.copy())
        obs = next_obs
        for i, o in reset_obs.items():
            obs[i] = o
    return RolloutResult(returns, lengths, success if has_success else None, recorded if record else [])


def _new_trace(obs0: np.ndarray) -> dict[str, list]:
    return {"observations": [obs0], "actions": [], "rewards": [], "terminations": [], "truncations": []}


def _append(trace: dict[str, list], action, reward, next_obs, terminated: bool, truncated: bool) -> None:
    trace["observations"].append(next_obs)
    trace["actions"].append(np.asarray(action))
    trace["rewards"].append(float(reward))
    trace["terminations"].append(terminated)
    trace["truncations"].append(truncated)


def _close_trace(trace: dict[str, list]) -> dict[str, np.ndarray]:
    actions = np.stack(trace["actions"])
    return {
        "observations": np.stack(trace["observations"]).astype(np.float32),
        "actions": actions.astype(np.int64 if actions.dtype.kind in "iu" else np.float32),
        "rewards": np.asarray(trace["rewards"], dtype=np.float32),
        "terminations": np.asarray(trace["terminations"], dtype=bool),
        "truncations": np.asarray(trace["truncations"], dtype=bool),
    }
