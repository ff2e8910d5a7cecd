"""Tabular Q-learning with an annealed epsilon-greedy schedule: the behaviour agent for GridNavi.

BOReL (Dorfman et al.) collects GridNavi data with one DQN per task and keeps its whole replay history. On a
5x5 grid a table holds the same Q-function a DQN would approximate, learns in a few thousand steps and needs
no network, so we use Q-learning (Watkins 1989) with the update

.. math:: Q(s, a) \\leftarrow Q(s, a) + \\alpha\\,[r + \\gamma (1 - d) \\max_{a'} Q(s', a') - Q(s, a)],

where ``d`` is true termination only (a time-limit cut bootstraps). Zero-initialised values with rewards of
-0.1 per step make unvisited actions look optimistic, so early episodes explore the grid and late ones walk to
the goal. Epsilon decays linearly from ``epsilon_start`` to ``epsilon_end`` over ``decay_fraction`` of the
lifetime.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QLearningConfig:
    """Hyperparameters of :class:`QLearningAgent`.

    Attributes:
        learning_rate: step size alpha of the tabular update.
        discount: gamma.
        epsilon_start: exploration rate of the first episode.
        epsilon_end: exploration rate after the decay.
        decay_fraction: fraction of the lifetime over which epsilon decays linearly.
    """

    learning_rate: float = 0.5
    discount: float = 0.99
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    decay_fraction: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 < self.learning_rate <= 1.0:
            raise ValueError(f"QLearningConfig: learning_rate must be in (0, 1], got {self.learning_rate}")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"QLearningConfig: discount must be in [0, 1], got {self.discount}")
        for name in ("epsilon_start", "epsilon_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"QLearningConfig: {name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise ValueError(f"QLearningConfig: decay_fraction must be in (0, 1], got {self.decay_fraction}")


class QLearningAgent:
    """Epsilon-greedy tabular Q-learning over discrete observations (the observation vector is the key).

    Args:
        num_actions: size of the discrete action space.
        lifetime: number of episodes in the agent's life (sets the epsilon schedule).
        config: hyperparameters.
        rng: the agent's random generator (exploration and tie-breaking).
    """

    def __init__(self, num_actions: int, lifetime: int, config: QLearningConfig, rng: np.random.Generator):
        if num_actions < 1 or lifetime < 1:
            raise ValueError(f"QLearningAgent: need num_actions >= 1 and lifetime >= 1, got {num_actions}, {lifetime}")
        self.num_actions = num_actions
        self.lifetime = lifetime
        self.config = config
        self.rng = rng
        self.q: defaultdict[tuple, np.ndarray] = defaultdict(lambda: np.zeros(num_actions))
        self.epsilon = config.epsilon_start

    @staticmethod
    def _key(obs: np.ndarray) -> tuple:
        return tuple(np.asarray(obs).reshape(-1).round(6).tolist())

    def epsilon_at(self, episode_index: int) -> float:
        horizon = max(1.0, self.config.decay_fraction * (self.lifetime - 1))
        frac = min(1.0, episode_index / horizon)
        return self.config.epsilon_start + frac * (self.config.epsilon_end - self.config.epsilon_start)

    def begin_episode(self, episode_index: int, info: dict | None = None) -> None:
        self.epsilon = self.epsilon_at(episode_index)

    def greedy(self, obs: np.ndarray) -> int:
        values = self.q[self._key(obs)]
        best = np.flatnonzero(values == values.max())  # random tie-break: an all-zero row is not "always no-op"
        return int(self.rng.choice(best))

    def act(self, obs: np.ndarray) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.num_actions))
        return self.greedy(obs)

    def learn(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool) -> None:
        target = reward + (0.0 if terminated else self.config.discount * self.q[self._key(next_obs)].max())
        row = self.q[self._key(obs)]
        row[action] += self.config.learning_rate * (target - row[action])
