"""Meta-World families: metaworld's own rewards and success passed through, the goal hidden, placements per task,
the scripted experts' noise schedule, and reward relabelling refused."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("metaworld")

import metaworld.env_dict  # noqa: E402

from lit_offmeta.collect import collect, get_preset  # noqa: E402
from lit_offmeta.collect.experts import NoisyScriptedExpert, ScriptedExpertConfig, expert_policy  # noqa: E402
from lit_offmeta.data.relabel import relabel_rewards  # noqa: E402
from lit_offmeta.data.stats import dataset_stats  # noqa: E402
from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule  # noqa: E402
from lit_offmeta.rollout import rollout  # noqa: E402
from lit_offmeta.tasks import get_family  # noqa: E402
from lit_offmeta.tasks.meta_world import GOAL, HORIZON, ML45_TEST, ML45_TRAIN  # noqa: E402


def test_ml45_environments_are_metaworlds():
    assert ML45_TRAIN == tuple(metaworld.env_dict.ML45_V3["train"])
    assert ML45_TEST == tuple(metaworld.env_dict.ML45_V3["test"])
    family = get_family("metaworld_ml45")
    split = family.split()
    assert [family.default_tasks()[i]["env_name"] for i in split.test] == list(ML45_TEST)


def test_every_environment_has_a_scripted_expert():
    for name in ML45_TRAIN + ML45_TEST:
        assert hasattr(expert_policy(name), "get_action"), name


def _raw_env(env_name: str, rand_vec: np.ndarray):
    """metaworld's own environment with the same placement, set up the way its ML1 benchmark does."""
    env = metaworld.env_dict.ALL_V3_ENVIRONMENTS[env_name]()
    env._partially_observable = True
    env.__dict__.pop("sawyer_observation_space", None)
    env._set_task_called = True
    env._freeze_rand_vec = True
    env._last_rand_vec = np.asarray(rand_vec, np.float64)
    env.max_path_length = HORIZON
    return env


@pytest.mark.parametrize("name", ["metaworld_ml1_reach", "metaworld_ml1_push", "metaworld_ml1_pick_place"])
def test_ml1_steps_are_metaworlds_with_the_goal_hidden(name):
    family = get_family(name)
    task = family.default_tasks()[7]
    env, raw = family.make_env(task), _raw_env(task["env_name"], task["rand_vec"])
    obs, info = env.reset(seed=0)
    raw_obs, _ = raw.reset()
    np.testing.assert_array_equal(obs, raw_obs.astype(np.float32))
    assert obs.dtype == np.float32 and obs.shape == (39,) and not obs[GOAL].any()
    assert np.linalg.norm(info["goal"]) > 0  # the true goal is in info, not in the observation
    rng = np.random.default_rng(0)
    for _ in range(30):
        action = rng.uniform(-1, 1, 4).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        raw_obs, raw_reward, _, _, raw_info = raw.step(action)
        np.testing.assert_array_equal(obs, raw_obs.astype(np.float32))
        assert reward == float(raw_reward) and info["success"] == bool(raw_info["success"])
        assert not terminated
    first_goal = info["goal"]
    env.reset()
    assert np.array_equal(env.step(np.zeros(4, np.float32))[4]["goal"], first_goal)  # ML1: one placement per task


def test_ml45_draws_a_placement_every_episode_reproducibly():
    family = get_family("metaworld_ml45")
    task = {"env_name": "reach-v3"}
    env = family.make_env(task)
    goals = [env.reset(seed=3)[1]["goal"], env.reset()[1]["goal"]]
    again = family.make_env(task).reset(seed=3)[1]["goal"]
    assert not np.array_equal(goals[0], goals[1])
    np.testing.assert_array_equal(goals[0], again)


def test_ml1_tasks_are_validated():
    family = get_family("metaworld_ml1_reach")
    task = family.default_tasks()[0]
    assert family.validate_task(task) == task
    with pytest.raises(ValueError, match="env_name must be 'reach-v3'"):
        family.validate_task({**task, "env_name": "push-v3"})
    with pytest.raises(ValueError, match="outside the environment's placement bounds"):
        family.validate_task({**task, "rand_vec": [5.0] * 6})
    with pytest.raises(ValueError, match="rand_vec.*numbers"):
        family.validate_task({**task, "rand_vec": ["a"] * 6})
    with pytest.raises(ValueError, match="unknown env_name 'reach-v9'"):
        get_family("metaworld_ml45").validate_task({"env_name": "reach-v9"})
    assert len({tuple(t["rand_vec"]) for t in family.default_tasks()}) == 100  # 100 distinct placements


def test_reward_relabelling_is_refused_with_a_clear_error():
    family = get_family("metaworld_ml1_push")
    task = family.default_tasks()[0]
    x = np.zeros((3, 39), np.float32)
    with pytest.raises(ValueError, match="simulator state.*cannot be recomputed"):
        family.reward(task, x, np.zeros((3, 4)), x)
    with pytest.raises(ValueError, match="reward relabelling: family 'metaworld_ml1_push'.*reward_relabelling=False"):
        relabel_rewards(family, task, x, np.zeros((3, 4)), x)


def test_expert_noise_schedule_by_hand_and_a_noiseless_expert_succeeds():
    agent = NoisyScriptedExpert("reach-v3", lifetime=11, config=ScriptedExpertConfig(1.0, 0.0, 0.8),
                                rng=np.random.default_rng(0))
    assert agent.noise_at(0) == 1.0
    assert agent.noise_at(4) == pytest.approx(0.5)  # 4 / (0.8 * 10)
    assert agent.noise_at(8) == 0.0 and agent.noise_at(10) == 0.0
    family = get_family("metaworld_ml1_reach")
    env = family.make_env(family.default_tasks()[0])
    obs, info = env.reset(seed=0)
    agent.begin_episode(10, info)
    success = False
    for _ in range(HORIZON):
        obs, _, _, _, info = env.step(agent.act(obs))
        success |= info["success"]
    assert success


def test_rollout_reads_success_from_info():
    family = get_family("metaworld_ml1_reach")

    class Still:
        def reset(self, num_envs):
            pass

        def act(self, obs):
            return np.zeros((len(obs), 4), np.float32)

        def observe(self, *args):
            pass

    result = rollout(Still(), family, family.default_tasks()[:2])
    assert result.success is not None and result.success.shape == (2, 1)
    assert result.returns.shape == (2, 1)
    assert not result.success.any()  # an arm that never moves does not reach a goal placed away from it


def test_tiny_preset_collects_lifetimes_that_load_and_improve(tmp_path):
    summary = collect(get_preset("metaworld_ml1_push", "tiny"), tmp_path, progress=False, log=None)
    assert sorted(summary.written) == [0, 1]
    stats = dataset_stats(tmp_path, "metaworld_ml1_push")
    assert all(s.episodes == 4 and s.transitions == 4 * HORIZON for s in stats)
    # noise 1.0 -> 0.1: the last episode of each lifetime returns more than the first
    assert all(s.returns[-1] > s.returns[0] for s in stats)
    dm = OfflineMetaDataModule("metaworld_ml1_push", str(tmp_path), train_ids=[0], test_ids=[1], tasks_per_batch=1,
                               support_size=16, query_size=16, batches_per_epoch=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.support["obs"].shape == (1, 16, 39)


def test_default_placements_are_valid_and_an_invalid_one_is_refused_not_looped_on():
    family = get_family("metaworld_ml1_reach")
    for task in family.default_tasks():  # every placement resets (an invalid one would loop in metaworld)
        vec = np.asarray(task["rand_vec"])
        assert np.linalg.norm(vec[:2] - vec[3:5]) >= 0.15  # reach-v3's own constraint: goal away from the object
    task = family.default_tasks()[0]
    invalid = {**task, "rand_vec": [0.0, 0.7, 0.02, 0.0, 0.8, 0.1]}  # goal 0.1 from the object
    with pytest.raises(ValueError, match="placement that reach-v3 rejects"):
        family.make_env(invalid).reset(seed=0)
