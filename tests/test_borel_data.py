"""Offline VariBAD data: trials, reward relabelling (reference bugs 1-3), the trajectory datamodule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_offmeta.data.relabel import mix_trials, relabel_rewards, trials_from_episodes, trials_to_batch
from lit_offmeta.data.scripted import scripted_trials
from lit_offmeta.datamodules.trajectory import TrialDataModule
from lit_offmeta.tasks import get_family


def _random_episode(family, task, seed):
    env = family.make_env(task)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards, terms, truncs = [obs], [], [], [], []
    done = False
    while not done:
        a = int(rng.integers(5)) if family.discrete_actions else rng.uniform(-1, 1, 2).astype(np.float32)
        obs, r, term, trunc, _ = env.step(a)
        observations.append(obs)
        actions.append(a)
        rewards.append(r)
        terms.append(term)
        truncs.append(trunc)
        done = term or trunc
    return {
        "observations": np.asarray(observations, np.float32),
        "actions": np.asarray(actions),
        "rewards": np.asarray(rewards, np.float32),
        "terminations": np.asarray(terms),
        "truncations": np.asarray(truncs),
    }


@pytest.mark.parametrize("name", ["grid_navi", "point_robot_sparse", "point_robot"])
def test_relabelled_rewards_equal_env_rewards(name):
    """Bug 1: relabelling with a trial's own task reproduces every reward env.step() gave, goal visits included."""
    family = get_family(name)
    # the scripted agent's last trial heads for the goal (eps_final=0), so the goal reward occurs
    trials = scripted_trials(family, [3], trials_per_task=2, episodes_per_trial=2, seed=0, eps_final=0.0)
    task = trials.tasks[3]
    rewards = relabel_rewards(family, task, trials.obs, trials.actions, trials.next_obs)
    np.testing.assert_array_equal(rewards, trials.rewards)
    success = family.success(task, trials.obs, trials.actions, trials.next_obs)
    assert success[1].any(), "the goal-directed trial should reach the goal"
    # the random-path episode of an independent env agrees too
    ep = _random_episode(family, task, seed=1)
    obs, nxt = ep["observations"][:-1], ep["observations"][1:]
    np.testing.assert_array_equal(relabel_rewards(family, task, obs, ep["actions"], nxt), ep["rewards"])


def test_relabelling_is_not_off_by_one():
    """Bug 2: the reward of step t depends on s_{t+1} of step t, not on the next step's successor."""
    family = get_family("grid_navi")
    task = {"goal": [0, 2]}
    # (0,0) -up-> (0,1) -up-> (0,2): only the SECOND step lands on the goal.
    obs = np.array([[0, 0], [0, 1]], np.float32)
    nxt = np.array([[0, 1], [0, 2]], np.float32)
    np.testing.assert_allclose(relabel_rewards(family, task, obs, np.array([1, 1]), nxt), [-0.1, 1.0])


def test_relabelling_uses_the_target_tasks_goal_and_rejects_missing_goals():
    """Bug 3: mixed trials are rewarded with the TARGET task's goal; a task without a goal fails loudly."""
    family = get_family("grid_navi")
    trials = scripted_trials(family, [0, 5, 9], trials_per_task=6, episodes_per_trial=2, seed=0)
    rng = np.random.default_rng(0)
    targets = np.array([0, 5, 9, 9])
    mixed = mix_trials(family, trials, targets, rng, mix_prob=1.0)
    tasks = family.default_tasks()
    for b, t in enumerate(targets):
        goal = np.asarray(tasks[t]["goal"], np.float32)
        on_goal = (mixed.next_obs[b] == goal).all(-1)
        np.testing.assert_allclose(mixed.rewards[b], np.where(on_goal, 1.0, -0.1))
    with pytest.raises(ValueError, match="goal"):
        relabel_rewards(family, {"target": [1, 2]}, np.zeros((1, 2)), np.zeros(1), np.zeros((1, 2)))


def test_mix_prob_zero_keeps_each_tasks_own_episodes_and_rewards():
    family = get_family("grid_navi")
    trials = scripted_trials(family, [2, 7], trials_per_task=4, episodes_per_trial=2, seed=3)
    mixed = mix_trials(family, trials, np.array([2, 7, 7]), np.random.default_rng(1), mix_prob=0.0)
    for b in range(3):
        for e in range(2):
            # the episode is one of the task's own logged episodes, with its logged rewards
            own = trials.task_index == mixed.task_index[b]
            match = (trials.obs[own][:, e] == mixed.obs[b, e]).all(axis=(1, 2)) & (
                trials.rewards[own][:, e] == mixed.rewards[b, e]
            ).all(axis=1)
            assert match.any()


def test_mixing_across_tasks_is_refused_when_dynamics_depend_on_the_task():
    """Walker-Params changes masses and friction per task: another task's path is not a path of the target task."""
    from lit_offmeta.tasks import FAMILIES

    varying = {name for name in FAMILIES if get_family(name).dynamics_vary_with_task}
    assert varying == {"walker_params"}
    trials = scripted_trials(get_family("grid_navi"), [2, 7], trials_per_task=2, episodes_per_trial=2, seed=0)
    with pytest.raises(ValueError, match="walker_params.*task-dependent dynamics"):
        mix_trials(get_family("walker_params"), trials, np.array([2]), np.random.default_rng(0), mix_prob=0.5)


def test_trials_from_episodes_groups_orders_and_drops_incomplete_trials():
    family = get_family("grid_navi")
    task = family.default_tasks()[0]
    eps = [_random_episode(family, task, seed=s) for s in range(5)]
    # trial 0 logged out of order, trial 1 incomplete (only episode 0)
    meta = [
        {"trial_index": 0, "episode_in_trial": 1},
        {"trial_index": 0, "episode_in_trial": 0},
        {"trial_index": 1, "episode_in_trial": 0},
        {"trial_index": 2, "episode_in_trial": 0},
        {"trial_index": 2, "episode_in_trial": 1},
    ]
    trials = trials_from_episodes(0, task, eps, meta, episodes_per_trial=2, horizon=15)
    assert trials.num_trials == 2
    np.testing.assert_array_equal(trials.obs[0, 0], eps[1]["observations"][:-1])
    np.testing.assert_array_equal(trials.next_obs[0, 1], eps[0]["observations"][1:])
    np.testing.assert_array_equal(trials.rewards[1, 1], eps[4]["rewards"])
    assert trials.valid.all()


def test_trials_from_episodes_errors_name_the_problem():
    family = get_family("grid_navi")
    task = family.default_tasks()[0]
    ep = _random_episode(family, task, seed=0)
    with pytest.raises(ValueError, match="trial_index"):
        trials_from_episodes(0, task, [ep], [{}], 2, 15, source="data/x")
    bad = dict(ep, observations=ep["observations"][:-1])
    with pytest.raises(ValueError, match="T\\+1 observations"):
        trials_from_episodes(0, task, [bad], [{"trial_index": 0, "episode_in_trial": 0}], 1, 15)
    with pytest.raises(ValueError, match="horizon"):
        trials_from_episodes(0, task, [ep], [{"trial_index": 0, "episode_in_trial": 0}], 1, 10)


def test_datamodule_batches_whole_trials_with_and_without_relabelling():
    dm = TrialDataModule("grid_navi", scripted_trials_per_task=3, tasks_per_batch=2, trials_per_task=3,
                         reward_relabelling=False, steps_per_epoch=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["obs"].shape == (60, 6, 2) and batch["actions"].shape == (60, 6)
    assert batch["actions"].dtype == torch.int64 and batch["valid"].all()
    # without relabelling each trial is a logged trial of its own task: rewards are the logged rewards
    family, tasks = dm.family, dm.family.default_tasks()
    for b in range(6):
        task = tasks[int(batch["task_index"][b])]
        expected = relabel_rewards(family, task, batch["obs"][:, b].numpy(), batch["actions"][:, b].numpy(),
                                   batch["next_obs"][:, b].numpy())
        np.testing.assert_array_equal(batch["rewards"][:, b].numpy(), expected)
    # episode ends every 15 steps; episodes restart at the start cell
    ends = batch["episode_ends"][:, 0].nonzero().squeeze(1).tolist()
    assert ends == [14, 29, 44, 59]
    assert (batch["obs"][[0, 15, 30, 45]] == 0).all()
    assert set(batch["task_index"].tolist()) <= set(dm.split.train)


def test_shared_paths_relabel_one_path_for_every_task_of_the_batch():
    """``path_index``: trials of one path share their episodes (any task), and rewards are each task's own."""
    family = get_family("grid_navi")
    trials = scripted_trials(family, [2, 7, 11], trials_per_task=4, episodes_per_trial=2, seed=3)
    targets, paths = np.array([2, 7, 11, 2, 7, 11]), np.array([0, 0, 0, 1, 1, 1])
    mixed = mix_trials(family, trials, targets, np.random.default_rng(1), mix_prob=1.0, path_index=paths)
    for b in (1, 2):
        np.testing.assert_array_equal(mixed.obs[b], mixed.obs[0])
        np.testing.assert_array_equal(mixed.actions[b], mixed.actions[0])
        np.testing.assert_array_equal(mixed.obs[3 + b], mixed.obs[3])
    assert not np.array_equal(mixed.obs[0], mixed.obs[3])  # two paths drawn (different with this seed)
    for b, t in enumerate(targets):
        np.testing.assert_array_equal(
            mixed.rewards[b], relabel_rewards(family, trials.tasks[int(t)], mixed.obs[b], mixed.actions[b],
                                              mixed.next_obs[b]))
    with pytest.raises(ValueError, match="path_index needs mix_prob=1"):
        mix_trials(family, trials, targets, np.random.default_rng(1), mix_prob=0.5, path_index=paths)
    with pytest.raises(ValueError, match="path_index must be 6"):
        mix_trials(family, trials, targets, np.random.default_rng(1), mix_prob=1.0, path_index=paths[:3])

    dm = TrialDataModule("grid_navi", scripted_trials_per_task=3, tasks_per_batch=4, trials_per_task=2,
                         mix_prob=1.0, shared_paths=True, steps_per_epoch=2)
    dm.setup("fit")
    batch = dm.sample_batch(np.random.default_rng(0))
    obs = batch["obs"].reshape(60, 4, 2, 2)  # [time, task, path, xy]
    assert (obs == obs[:, :1]).all()  # every task of the batch sees the same two paths
    assert len(set(batch["task_index"].tolist())) == 4  # distinct tasks (21 to draw from)
    with pytest.raises(ValueError, match="shared_paths needs"):
        TrialDataModule("grid_navi", mix_prob=0.5, shared_paths=True)


def test_datamodule_validates_arguments():
    with pytest.raises(ValueError, match="tasks_per_batch"):
        TrialDataModule("grid_navi", tasks_per_batch=0)
    with pytest.raises(ValueError, match="data_dir"):
        TrialDataModule("grid_navi", scripted_trials_per_task=0)
    with pytest.raises(ValueError, match="not a folder"):
        TrialDataModule("grid_navi", data_dir="/nonexistent/borel").prepare_data()


def test_trials_to_batch_is_time_major():
    family = get_family("point_robot_sparse")
    trials = scripted_trials(family, [0], trials_per_task=2, episodes_per_trial=2, seed=0)
    batch = trials_to_batch(trials)
    assert batch["obs"].shape == (120, 2, 2) and batch["actions"].shape == (120, 2, 2)
    np.testing.assert_array_equal(batch["obs"][61, 1].numpy(), trials.obs[1, 1, 1])
