"""One per-task behaviour agent's lifetime: it learns its task from scratch and every episode is recorded.

Used by the cheap families (PointRobot, GridNavi) and Meta-World (scripted experts), where each task gets its
own agent. The recorded episodes,
in order, are the task's offline buffer (the agent's lifetime replay buffer, MACAW App. D; BOReL).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from lit_offmeta.collect.episodes import Episode, EpisodeBuilder
from lit_offmeta.collect.experts import NoisyScriptedExpert, ScriptedExpertConfig
from lit_offmeta.collect.presets import CollectConfig
from lit_offmeta.collect.q_learning import QLearningAgent, QLearningConfig
from lit_offmeta.data.scripted import AnnealedGoalSeeker, GoalSeekerConfig
from lit_offmeta.tasks import Task, TaskFamily


class LifetimeAgent(Protocol):
    """A per-task learner: told when each episode starts, acts, and learns from every step."""

    def begin_episode(self, episode_index: int, info: dict[str, Any]) -> None:
        """A new episode starts; ``info`` is the environment's reset info (Meta-World's holds the goal)."""

    def act(self, obs: np.ndarray) -> Any: ...

    def learn(self, obs: np.ndarray, action: Any, reward: float, next_obs: np.ndarray, terminated: bool) -> None: ...


def make_lifetime_agent(
    config: CollectConfig, family: TaskFamily, task: Task, rng: np.random.Generator
) -> LifetimeAgent:
    """The per-task agent named by ``config.agent``, built from ``config.agent_kwargs``."""
    try:
        if config.agent == "goal_seeker":
            if "goal" not in task or family.discrete_actions:
                raise ValueError(
                    f"collect: agent 'goal_seeker' needs a continuous family whose tasks have a 'goal'; "
                    f"family {family.name!r} does not qualify"
                )
            return AnnealedGoalSeeker(task["goal"], config.episodes_per_task, GoalSeekerConfig(**config.agent_kwargs),
                                      rng)
        if config.agent == "scripted_expert":
            return NoisyScriptedExpert(task["env_name"], config.episodes_per_task,
                                       ScriptedExpertConfig(**config.agent_kwargs), rng)
        if config.agent == "q_learning":
            if not family.discrete_actions:
                raise ValueError(f"collect: agent 'q_learning' needs discrete actions; {family.name!r} has none")
            return QLearningAgent(family.action_dim, config.episodes_per_task, QLearningConfig(**config.agent_kwargs),
                                  rng)
    except TypeError as err:  # an unknown key in agent_kwargs
        raise ValueError(
            f"collect: bad agent_kwargs {config.agent_kwargs!r} for agent {config.agent!r}: {err}"
        ) from None
    raise ValueError(f"collect: agent {config.agent!r} is not a per-task agent (use the SAC collector)")


def run_lifetime(
    family: TaskFamily,
    task: Task,
    agent: LifetimeAgent,
    num_episodes: int,
    episodes_per_trial: int = 1,
    env_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    on_episode: Any = None,
) -> list[Episode]:
    """Run ``agent`` for ``num_episodes`` episodes of ``task`` and return them in order.

    Args:
        family: the task family (builds the environment, so rewards come from its one reward function).
        task: the task's parameters.
        agent: the learner; it sees every transition and decides every action.
        num_episodes: lifetime length.
        episodes_per_trial: > 1 records ``trial_index``/``episode_in_trial`` in each episode's metadata.
        env_kwargs: extra ``make_env`` arguments.
        seed: seeds the environment's first reset.
        on_episode: optional callable ``(episode_index, episode)`` (progress reporting).

    Returns:
        The episodes in the layout of :mod:`lit_offmeta.collect.episodes`.
    """
    env = family.make_env(task, **(env_kwargs or {}))
    episodes: list[Episode] = []
    step = 0
    try:
        obs, info = env.reset(seed=seed)
        for index in range(num_episodes):
            if index > 0:
                obs, info = env.reset()
            agent.begin_episode(index, info)
            trial = (
                (index // episodes_per_trial, index % episodes_per_trial) if episodes_per_trial > 1 else (None, None)
            )
            builder = EpisodeBuilder(obs, step, family.discrete_actions, *trial)
            done = False
            while not done:
                action = agent.act(obs)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                agent.learn(obs, action, float(reward), next_obs, bool(terminated))
                builder.add(action, float(reward), next_obs, terminated, truncated)
                obs, step = next_obs, step + 1
                done = terminated or truncated
            episodes.append(builder.finish())
            if on_episode is not None:
                on_episode(index, episodes[-1])
    finally:
        env.close()
    return episodes
