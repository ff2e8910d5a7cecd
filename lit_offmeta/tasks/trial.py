"""Multi-episode trials: the Bayes-adaptive MDP (BAMDP) view of a task used by VariBAD / BOReL.

A *trial* is ``episodes`` consecutive episodes of ONE task (Zintgraf et al. 2020, arXiv:1910.08348; Dorfman
et al. 2021). An agent that keeps a belief over the task across the trial can explore in the first episode
and exploit in the later ones, so returns are reported per trial. :class:`TrialWrapper` turns a task's
environment into a trial environment:

* an inner episode ends when the inner env terminates, truncates, or reaches ``horizon`` steps; the inner
  env is then reset to its ordinary start-state distribution (the origin for the navigation families, the
  model's initial pose plus the usual reset noise for MuJoCo; NOT a random position, reference bug 6) and the
  trial goes on. An inner ``terminated`` therefore ends only that episode; the trial ends after the last
  episode, with ``terminated``/``truncated`` taken from how that last episode ended. Without early
  terminations a trial lasts exactly ``episodes * horizon`` steps.
* with ``episodes > 1`` the observation gets one extra feature, VariBAD's ``done_mdp`` flag: ``1.0`` on an
  observation that ENDS an inner episode, ``0.0`` everywhere else. It is how a belief encoder that reads
  ``(a_t, s_{t+1}, r_{t+1})`` learns where episodes end.
* at an episode boundary ``step()`` returns, gymnasium style, the START observation of the next episode
  (flag 0), because that is where the agent acts next; the observation that ended the episode (flag 1) is in
  ``info["final_obs"]``. Record ``info["final_obs"]`` (not the returned observation) as ``next_obs`` of that
  transition: the family's reward is a function of ``(obs, action, next_obs)``, and the start of the next
  episode is not where the action led. (VariBAD returns the final observation and hands over the start
  state in ``info["start_state"]``; we swap the two so that a plain gymnasium loop acts correctly.)

``info`` always carries ``episode`` (index, within the trial, of the episode the returned observation belongs
to), ``episode_step`` (steps taken in it), ``episode_done`` and ``episode_terminated`` (for the step just
taken).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from lit_offmeta.tasks.base import Task, TaskFamily


class TrialWrapper(gym.Wrapper):
    """Play ``episodes`` episodes of the wrapped env's task as one trial; see the module docstring.

    Args:
        env: a task environment (e.g. ``family.make_env(task)``).
        episodes: episodes per trial (BOReL: 4 for GridNavi, 2 for the others).
        horizon: steps per inner episode; ``None`` takes the env's registered ``max_episode_steps``.

    Raises:
        ValueError: ``episodes`` is not a positive integer, or no horizon is given and the env has none.

    Example:
        >>> from lit_offmeta.tasks import get_family
        >>> family = get_family("point_robot_sparse")
        >>> env = TrialWrapper(family.make_env(family.default_tasks()[0]), episodes=2)
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, info["episode"]
        ((3,), 0)
    """

    def __init__(self, env: gym.Env, episodes: int, horizon: int | None = None) -> None:
        super().__init__(env)
        if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
            raise ValueError(f"TrialWrapper: episodes must be a positive integer, got {episodes!r}")
        if horizon is None:
            horizon = getattr(env.spec, "max_episode_steps", None) if env.spec is not None else None
        if horizon is None or int(horizon) < 1:
            raise ValueError(
                f"TrialWrapper: horizon must be a positive integer, got {horizon!r}; pass horizon=... or wrap an "
                "env made with a time limit (family.make_env does that)"
            )
        self.episodes = int(episodes)
        self.horizon = int(horizon)
        self.add_flag = self.episodes > 1
        inner = env.observation_space
        if self.add_flag:
            if not isinstance(inner, gym.spaces.Box) or len(inner.shape) != 1:
                raise ValueError(
                    f"TrialWrapper: the episode flag needs a flat Box observation space, got {inner}"
                )
            low = np.concatenate([inner.low, np.zeros(1, dtype=inner.dtype)])
            high = np.concatenate([inner.high, np.ones(1, dtype=inner.dtype)])
            self.observation_space = gym.spaces.Box(low, high, dtype=inner.dtype)
        self._episode = 0
        self._episode_step = 0
        self._needs_reset = True

    @property
    def trial_length(self) -> int:
        """The most steps a trial can take: ``episodes * horizon``."""
        return self.episodes * self.horizon

    def _with_flag(self, obs: np.ndarray, done: bool) -> np.ndarray:
        if not self.add_flag:
            return obs
        flag = np.ones(1, dtype=self.observation_space.dtype) if done else np.zeros(1, self.observation_space.dtype)
        return np.concatenate([np.asarray(obs, dtype=self.observation_space.dtype), flag])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start a new trial (first episode); ``seed`` seeds the inner env once, as in gymnasium."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._episode, self._episode_step, self._needs_reset = 0, 0, False
        info = {**info, "episode": 0, "episode_step": 0, "episode_done": False, "episode_terminated": False}
        return self._with_flag(obs, done=False), info

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("TrialWrapper: the trial is over (or never started); call reset() first")
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._episode_step += 1
        episode_done = bool(terminated or truncated or self._episode_step >= self.horizon)
        info = {
            **info,
            "episode": self._episode,
            "episode_step": self._episode_step,
            "episode_done": episode_done,
            "episode_terminated": bool(terminated),
        }
        final_obs = self._with_flag(obs, done=episode_done)
        if not episode_done:
            return final_obs, reward, False, False, info
        if self._episode + 1 == self.episodes:
            self._needs_reset = True
            info["final_obs"] = final_obs
            # The trial's true end: terminated if the last inner episode terminated, else a time-limit cut.
            return final_obs, reward, bool(terminated), not terminated, info
        # Next episode of the same task: reset the inner env without reseeding, so its RNG stream goes on.
        start_obs, _ = self.env.reset()
        self._episode += 1
        self._episode_step = 0
        info.update(final_obs=final_obs, episode=self._episode, episode_step=0)
        return self._with_flag(start_obs, done=False), reward, False, False, info


def make_trial_env(family: TaskFamily, task: Task, episodes: int | None = None, **kwargs: Any) -> TrialWrapper:
    """``family.make_env(task, **kwargs)`` wrapped in a :class:`TrialWrapper` of ``episodes`` episodes.

    ``episodes=None`` uses the family's ``episodes_per_trial`` (BOReL's setting) where it defines one, else 2.
    """
    if episodes is None:
        episodes = int(getattr(family, "episodes_per_trial", 2))
    return TrialWrapper(family.make_env(task, **kwargs), episodes=episodes, horizon=family.horizon)
