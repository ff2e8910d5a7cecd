"""``import lit_offmeta`` registers the gymnasium ids, cheaply; ``gym.make(id)`` without ``task=`` works."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import pytest

from lit_offmeta.tasks import FAMILIES, get_family


def test_import_lit_offmeta_registers_every_family_without_torch():
    """In a fresh interpreter, the top-level import alone registers all ids and loads neither torch nor Lightning."""
    code = (
        "import sys, gymnasium as gym, lit_offmeta\n"
        f"ids = {sorted(cls.env_id for cls in FAMILIES.values())!r}\n"
        "missing = [i for i in ids if i not in gym.registry]\n"
        "heavy = [m for m in ('torch', 'lightning') if m in sys.modules]\n"
        "print(missing, heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] []", result.stdout


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_gym_make_without_task_builds_the_documented_default_task(name):
    """The default task is ``default_tasks()[0]`` (the collected data's task 0); ``task=`` still overrides it."""
    family = get_family(name)
    env = gym.make(family.env_id)
    assert env.unwrapped.task == family.validate_task(family.default_tasks()[0])
    assert env.spec.max_episode_steps == family.horizon
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    env.close()
    other = family.default_tasks()[1]
    env = gym.make(family.env_id, task=other)
    assert env.unwrapped.task == family.validate_task(other)
    env.close()
