"""The SAC behaviour agent: losses against hand computations, the squashed Gaussian, target averaging, and the
task-conditioned collector end to end (Cheetah-Vel tiny preset; SAC learning PointRobot)."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
import torch

from lit_offmeta.algorithms.sac import (
    SquashedGaussianActor,
    actor_loss,
    critic_loss,
    soft_td_target,
    temperature_loss,
)
from lit_offmeta.collect import checkpoint
from lit_offmeta.collect.checkpoint import load_checkpoint, save_checkpoint
from lit_offmeta.collect.episodes import early_late_returns
from lit_offmeta.collect.presets import CollectConfig, get_preset
from lit_offmeta.collect.runner import collect
from lit_offmeta.collect.sac import SAC, SACConfig
from lit_offmeta.collect.sac_collect import ReplayBuffer, collect_sac
from lit_offmeta.data.storage import list_task_datasets, load_task_buffers
from lit_offmeta.tasks import get_family, task_features


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_soft_td_target_hand_computation():
    """y = r + gamma (1 - d) (min(Q1', Q2') - alpha log pi'); no bootstrap after a true terminal."""
    target = soft_td_target(t(1.0, 0.5), t(0.0, 1.0), t(2.0, 3.0), t(1.5, 4.0), t(-1.0, 0.5), alpha=0.2, discount=0.9)
    # row 0: min = 1.5, soft value 1.5 + 0.2 = 1.7, y = 1 + 0.9 * 1.7 = 2.53; row 1: terminal, y = r = 0.5
    torch.testing.assert_close(target, t(2.53, 0.5))


def test_critic_loss_hand_computation():
    # mean((1-1)^2, (2-1)^2) + mean((0-1)^2, (2-1)^2) = 0.5 + 1.0
    assert critic_loss(t(1.0, 2.0), t(0.0, 2.0), t(1.0, 1.0)).item() == pytest.approx(1.5)


def test_actor_loss_hand_computation():
    # alpha log pi - min(Q1, Q2): [0.5 * -1 - 2, 0.5 * 2 - 1] = [-2.5, 0.0] -> mean -1.25
    assert actor_loss(t(-1.0, 2.0), t(3.0, 1.0), t(2.0, 4.0), alpha=0.5).item() == pytest.approx(-1.25)


def test_temperature_loss_value_and_gradient():
    """-alpha (log pi + H_target): alpha shrinks when the policy is more random than the target entropy."""
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    log_pi = t(-1.0, 2.0).requires_grad_(True)
    loss = temperature_loss(log_alpha, log_pi, target_entropy=-2.0)
    # -(0.5 * (-1 - 2) + 0.5 * (2 - 2)) / 2 = 0.75
    assert loss.item() == pytest.approx(0.75)
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(0.75)  # d/dlog_alpha = the loss itself here
    assert log_pi.grad is None  # log pi is a constant in this loss


def test_squashed_gaussian_log_prob_matches_change_of_variables():
    """log pi(a) = log N(u; mu, sigma) - sum log(scale (1 - tanh(u)^2)) with a = scale tanh(u) + bias."""
    torch.manual_seed(0)
    actor = SquashedGaussianActor(3, 2, [8], action_low=t(-2.0, 0.0), action_high=t(2.0, 1.0))
    obs = torch.randn(5, 3)
    actions, log_pi = actor.sample(obs)
    mean, log_std = actor(obs)
    scale, bias = t(2.0, 0.5), t(0.0, 0.5)
    assert ((actions >= t(-2.0, 0.0)) & (actions <= t(2.0, 1.0))).all()
    u = torch.atanh((actions - bias) / scale)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(u) - torch.log(scale * (1 - torch.tanh(u) ** 2))
    torch.testing.assert_close(log_pi, expected.sum(-1), atol=2e-3, rtol=1e-3)
    assert ((log_std >= -5.0) & (log_std <= 2.0)).all()
    torch.testing.assert_close(actor.deterministic(obs), torch.tanh(mean) * scale + bias)


def test_sac_update_polyak_averages_the_target_critics():
    torch.manual_seed(0)
    agent = SAC(3, 2, [-1, -1], [1, 1], SACConfig(hidden=[16], batch_size=4, tau=0.1))
    before_target = [p.clone() for p in agent.critic_target.parameters()]
    batch = {"obs": torch.randn(4, 3), "actions": torch.rand(4, 2) * 2 - 1, "rewards": torch.randn(4),
             "next_obs": torch.randn(4, 3), "terminals": torch.zeros(4)}
    metrics = agent.update(batch)
    for old, new_target, online in zip(before_target, agent.critic_target.parameters(), agent.critic.parameters()):
        torch.testing.assert_close(new_target, 0.9 * old + 0.1 * online)
    assert set(metrics) == {"losses/critic", "losses/actor", "losses/alpha", "charts/q_mean", "charts/alpha"}


def test_sac_config_rejects_bad_values():
    with pytest.raises(ValueError, match="tau"):
        SACConfig(tau=0.0)
    with pytest.raises(ValueError, match="hidden"):
        SACConfig(hidden=[])


def test_trials_from_sac_need_recording_apart_from_learning():
    """Only the snapshot recorder writes multi-episode trials; a preset that records while it learns refuses them
    instead of writing episodes without trial structure."""
    with pytest.raises(ValueError, match="episodes_per_trial=2 with the sac agent needs recording apart"):
        get_preset("cheetah_vel", "tiny").replace(episodes_per_trial=2)
    trials = get_preset("cheetah_vel", "medium").replace(episodes_per_trial=2)
    assert trials.episodes_per_trial == 2 and trials.learn_steps_per_task > 0


def test_task_features_and_replay_ring_buffer():
    np.testing.assert_array_equal(task_features({"velocity": 1.5}), [1.5])
    np.testing.assert_array_equal(task_features({"goal": [1, 2], "a": 3}), [3.0, 1.0, 2.0])  # sorted keys
    with pytest.raises(ValueError, match="'name'"):
        task_features({"name": "fast"})
    replay = ReplayBuffer(3, 1, 1, np.random.default_rng(0))
    for i in range(5):
        replay.add(np.array([i]), np.array([0.0]), float(i), np.array([i + 1]), False)
    assert replay.size == 3 and sorted(replay.rewards.tolist()) == [2.0, 3.0, 4.0]  # oldest two overwritten
    assert set(replay.sample(50)["rewards"].tolist()) <= {2.0, 3.0, 4.0}


@pytest.mark.slow
def test_cheetah_vel_tiny_preset_writes_loadable_datasets(tmp_path):
    """One task-conditioned agent, per-task buffers: 6 episodes of 200 steps each, stored rewards = family's."""
    summary = collect(get_preset("cheetah_vel", "tiny"), tmp_path, progress=False, log=None)
    assert sorted(summary.written) == [0, 1]
    family = get_family("cheetah_vel")
    buffers = load_task_buffers(tmp_path, "cheetah_vel")
    steps = []
    for index, buffer in enumerate(buffers):
        assert buffer.task == family.default_tasks()[index]
        assert buffer.num_episodes == 6 and len(buffer) == 1200 and buffer.obs.shape[1] == 20
        assert np.abs(buffer.actions).max() <= 1.0
        assert buffer.truncations[buffer.episode_starts[1:] - 1].all() and not buffer.terminals.any()
        np.testing.assert_allclose(
            buffer.rewards,
            family.reward(buffer.task, buffer.obs, buffer.actions, buffer.next_obs),
            rtol=1e-5,
            atol=1e-5,
        )
        steps.append(buffer.behaviour_steps)
    # Two environments step the two tasks side by side: each episode starts at the agent's global step count
    # (0, 400, 800, ...; the first environment's reset comes one step before the second's step is counted).
    assert all(np.all(np.diff(s) > 0) for s in steps)
    np.testing.assert_allclose(np.sort(np.concatenate(steps)), np.repeat(np.arange(6) * 400, 2), atol=1)


@pytest.mark.slow
def test_sac_learns_point_robot_from_scratch():
    """The data shows learning: returns of the last 10% of episodes far above the first 10% (about -21 -> -7)."""
    family = get_family("point_robot")
    config = CollectConfig(
        "point_robot", "test", "sac", num_tasks=1, steps_per_task=1500, num_envs=1,
        agent_kwargs={"hidden": [64, 64], "batch_size": 64, "learning_starts": 300, "updates_per_step": 1.0,
                      "discount": 0.9, "initial_alpha": 0.1, "actor_lr": 1e-3, "critic_lr": 1e-3},
    )
    written = {}
    collect_sac(family, config, {3: family.default_tasks()[3]}, 1, written.__setitem__, progress=False)
    early, late = early_late_returns(written[3])
    assert late > early + 8.0, (early, late)


def _small_sac_config(**changes) -> CollectConfig:
    config = CollectConfig(
        "point_robot", "test", "sac", num_tasks=3, steps_per_task=200, num_envs=2, checkpoint_every=120,
        agent_kwargs={"hidden": [16, 16], "batch_size": 16, "learning_starts": 60, "updates_per_step": 0.5},
    )
    return config.replace(**changes)


def test_sac_checkpoint_resume_records_exactly_what_an_uninterrupted_run_records(tmp_path, monkeypatch):
    """Kill the collector after its second checkpoint; the resumed run's datasets equal the uninterrupted ones."""
    family = get_family("point_robot")
    tasks = {i: family.default_tasks()[i] for i in range(3)}
    config = _small_sac_config()
    reference: dict = {}
    collect_sac(family, config, tasks, 7, reference.__setitem__, progress=False, checkpoint_dir=tmp_path / "ref")
    assert sorted(reference) == [0, 1, 2] and not (tmp_path / "ref").exists()  # removed when done

    real_update = SAC.update
    calls = {"n": 0}

    def dying_update(self, batch):
        calls["n"] += 1
        if calls["n"] == 200:  # past the first two checkpoints (about 120 and 240 steps)
            raise KeyboardInterrupt
        return real_update(self, batch)

    monkeypatch.setattr(SAC, "update", dying_update)
    first: dict = {}
    with pytest.raises(KeyboardInterrupt):
        collect_sac(family, config, tasks, 7, first.__setitem__, progress=False, checkpoint_dir=tmp_path / "ck")
    assert (tmp_path / "ck" / "state.json").is_file() and first == {}
    monkeypatch.setattr(SAC, "update", real_update)
    resumed: dict = {}
    collect_sac(family, config, tasks, 7, resumed.__setitem__, progress=False, checkpoint_dir=tmp_path / "ck")
    assert sorted(resumed) == [0, 1, 2]
    for index in range(3):
        assert len(resumed[index]) == len(reference[index]) == 10
        for ours, theirs in zip(resumed[index], reference[index]):
            for key in ("observations", "actions", "rewards", "truncations"):
                np.testing.assert_array_equal(ours[key], theirs[key])
            assert ours["behaviour_step"] == theirs["behaviour_step"]


def test_sac_checkpoint_of_another_run_is_refused(tmp_path, monkeypatch):
    family = get_family("point_robot")
    tasks = {i: family.default_tasks()[i] for i in range(3)}
    real_update = SAC.update

    def dying_update(self, batch):
        raise KeyboardInterrupt

    monkeypatch.setattr(SAC, "update", dying_update)
    config = _small_sac_config(
        agent_kwargs={**_small_sac_config().agent_kwargs, "learning_starts": 170}
    )  # checkpoint first
    with pytest.raises(KeyboardInterrupt):
        collect_sac(family, config, tasks, 7, lambda *_: None, progress=False, checkpoint_dir=tmp_path)
    monkeypatch.setattr(SAC, "update", real_update)
    with pytest.raises(ValueError, match="belongs to another run"):
        collect_sac(family, config, tasks, 8, lambda *_: None, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="belongs to another run"):
        collect_sac(family, config, {0: tasks[0]}, 7, lambda *_: None, progress=False, checkpoint_dir=tmp_path)


def test_collect_command_resumes_sac_from_its_checkpoint(tmp_path, monkeypatch):
    """Through the runner: the checkpoint lives in DIR/<family>/.sac-checkpoint, is never listed as a dataset,
    and the rerun finishes every task and removes it."""
    config = _small_sac_config()
    real_update = SAC.update
    calls = {"n": 0}

    def dying_update(self, batch):
        calls["n"] += 1
        if calls["n"] == 200:
            raise KeyboardInterrupt
        return real_update(self, batch)

    monkeypatch.setattr(SAC, "update", dying_update)
    with pytest.raises(KeyboardInterrupt):
        collect(config, tmp_path, progress=False, log=None)
    assert (tmp_path / "point_robot" / ".sac-checkpoint" / "state.json").is_file()
    assert list_task_datasets(tmp_path, "point_robot") == {}
    monkeypatch.setattr(SAC, "update", real_update)
    folder = tmp_path / "point_robot" / ".sac-checkpoint"
    step = json.loads((folder / "state.json").read_text())["global_step"]
    messages: list[str] = []
    summary = collect(config, tmp_path, progress=False, log=messages.append)
    assert f"collect: resumed from the SAC checkpoint in {folder} at {step} env steps of 600" in messages
    assert sorted(summary.written) == [0, 1, 2]
    assert not (tmp_path / "point_robot" / ".sac-checkpoint").exists()
    assert [b.num_episodes for b in load_task_buffers(tmp_path, "point_robot")] == [10, 10, 10]



def _save(folder, step):
    save_checkpoint(folder, {"global_step": step}, {"w": torch.full((2,), float(step))},
                    {"obs": np.full((3, 2), step, dtype=np.float32)}, {})


def _replace_failing_at(monkeypatch, call, and_after=False):
    """os.replace that raises KeyboardInterrupt at its ``call``-th call (and every later one if ``and_after``)."""
    real_replace, calls = os.replace, {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == call or (and_after and calls["n"] > call):
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", replace)


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith((".tmp-", ".old-")))


def test_an_interrupt_between_the_checkpoint_renames_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / ".sac-checkpoint"
    _save(folder, 1)
    _replace_failing_at(monkeypatch, 2)  # folder -> .old- succeeds, .tmp- -> folder is interrupted
    with pytest.raises(KeyboardInterrupt):
        _save(folder, 2)
    monkeypatch.undo()
    assert _leftovers(tmp_path) == []
    assert load_checkpoint(folder)[0] == {"global_step": 1}


def test_load_checkpoint_restores_the_checkpoint_a_kill_between_the_renames_left_aside(tmp_path, monkeypatch):
    """A SIGKILL between the renames: no cleanup runs, so only .old- (previous) and .tmp- (new) folders remain.
    Loading renames the .old- one back and deletes the leftovers of dead writers, and only those."""
    folder = tmp_path / ".sac-checkpoint"
    _save(folder, 1)
    real_replace, real_rmtree = os.replace, shutil.rmtree
    _replace_failing_at(monkeypatch, 2, and_after=True)  # the rollback's rename fails too, as after a kill
    monkeypatch.setattr(checkpoint.shutil, "rmtree", lambda *a, **k: None)
    with pytest.raises(KeyboardInterrupt):
        _save(folder, 2)
    monkeypatch.setattr(checkpoint.os, "replace", real_replace)
    monkeypatch.setattr(checkpoint.shutil, "rmtree", real_rmtree)
    assert not folder.exists()
    assert [name[:20] for name in _leftovers(tmp_path)] == [".old-.sac-checkpoint", ".tmp-.sac-checkpoint"]
    host = checkpoint.owner_tag().rsplit("-", 1)[0]
    kept = [
        f".tmp-.sac-checkpoint-{host}-{os.getppid()}-0123abcd",  # another process of this host, still running
        ".old-.sac-checkpoint-elsewhere-999999999-0123abcd",  # another host: its writer may be alive
        f".old-.sac-checkpoint2-{host}-999999999-0123abcd",  # another checkpoint's leftover
        ".sac-checkpoint2",
    ]
    removed = [f".tmp-.sac-checkpoint-{host}-999999999-0123abcd", ".tmp-.sac-checkpoint-999999999-0123abcd",
               ".old-.sac-checkpoint-0123abcd"]
    for name in kept + removed:
        (tmp_path / name).mkdir()
    messages: list[str] = []
    state, tensors, replay, _ = load_checkpoint(folder, log=messages.append)
    assert state == {"global_step": 1}
    torch.testing.assert_close(tensors["w"], torch.full((2,), 1.0))
    np.testing.assert_array_equal(replay["obs"], np.full((3, 2), 1, dtype=np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".sac-checkpoint", *kept])
    assert messages[0].startswith(f"collect: restored the SAC checkpoint {folder} from .old-.sac-checkpoint-")
    assert len(messages) == 1 + 1 + len(removed)  # restored; removed the new .tmp- and the three stale ones


def test_load_checkpoint_restores_the_newest_complete_old_checkpoint(tmp_path):
    folder = tmp_path / "ck"
    host = checkpoint.owner_tag().rsplit("-", 1)[0]
    for step, tag in ((5, "0000aaaa"), (9, "0000bbbb"), (7, "0000cccc")):
        _save(tmp_path / "built", step)
        (tmp_path / "built").rename(tmp_path / f".old-ck-{host}-999999999-{tag}")
    (folder / "data").mkdir(parents=True)  # an incomplete folder (no state.json) is replaced
    assert load_checkpoint(folder)[0] == {"global_step": 9}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]
    assert not (folder / "data").exists()


@pytest.mark.parametrize("family_name", ["ant_dir", "walker_params"])
def test_terminating_mujoco_tiny_presets_write_datasets_whose_rewards_and_ends_match_the_family(tmp_path, family_name):
    """Ant-Dir and Walker-Params terminate: stored rewards equal the family's reward function, every stored
    terminal is one the family's termination rule confirms, and each episode ends in a terminal or a cut."""
    summary = collect(get_preset(family_name, "tiny"), tmp_path, progress=False, log=None)
    assert sorted(summary.written) == [0, 1]
    family = get_family(family_name)
    for index, buffer in enumerate(load_task_buffers(tmp_path, family_name)):
        assert buffer.task == family.default_tasks()[index]
        assert len(buffer) >= 600 and buffer.obs.shape[1] == family.obs_dim  # whole episodes past the budget
        np.testing.assert_allclose(
            buffer.rewards,
            family.reward(buffer.task, buffer.obs, buffer.actions, buffer.next_obs),
            rtol=1e-5,
            atol=1e-5,
        )
        expected_terminals = family.terminated(buffer.task, buffer.obs, buffer.actions, buffer.next_obs)
        np.testing.assert_array_equal(buffer.terminals.astype(bool), np.asarray(expected_terminals, dtype=bool))
        ends = np.append(buffer.episode_starts[1:] - 1, len(buffer) - 1)
        assert np.all(buffer.terminals[ends].astype(bool) | buffer.truncations[ends].astype(bool))


def test_learning_apart_from_recording_writes_lifetimes_of_snapshots_that_replay_exactly(tmp_path):
    """learn_steps_per_task > 0: the datasets are recorded from the actor snapshots, ordered by snapshot step, and
    every recorded action is the snapshot's own sample with the episode's noise; the environment, reset with the
    episode's seed and stepped with those actions, gives back the recorded observations. A second run finds the
    snapshot file, skips learning and records the same data."""
    from lit_offmeta.collect.recorder import Snapshots, episode_generator, sample_actions

    family = get_family("point_robot")
    tasks = {i: family.default_tasks()[i] for i in range(2)}
    config = _small_sac_config(checkpoint_every=0, learn_steps_per_task=150, num_snapshots=3, steps_per_task=50)
    first: dict = {}
    collect_sac(family, config, tasks, 7, first.__setitem__, progress=False, checkpoint_dir=tmp_path / ".ck")
    snapshots = Snapshots.load(tmp_path / "behaviour_snapshots.pt")
    assert snapshots.steps == [0, 150, 300]  # 2 tasks x 150 learning steps; the first before any update
    horizon = family.horizon
    for i, episodes in first.items():
        # 50 steps per task: 16 or 17 per snapshot, so one episode of the 20-step horizon from each snapshot
        assert [ep["behaviour_step"] for ep in episodes] == [0, 150, 300]
        assert all(len(ep["rewards"]) == horizon for ep in episodes)
        for k, ep in enumerate(episodes):
            rng = episode_generator(7, i, k, 0)
            env = family.make_env(tasks[i])
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            np.testing.assert_array_equal(obs.astype(np.float32), ep["observations"][0])
            actor = snapshots.actor(k)
            for t in range(horizon):
                noise = rng.standard_normal(2)[None]
                action = sample_actions(actor, snapshots.agent_input(ep["observations"][t], i)[None], noise)[0]
                np.testing.assert_allclose(ep["actions"][t], action, rtol=0, atol=1e-6)
                obs, *_ = env.step(ep["actions"][t])
                np.testing.assert_allclose(ep["observations"][t + 1], obs, atol=1e-6)
    # the later snapshots differ from the untrained one: learning happened between them
    assert not np.allclose(first[0][0]["actions"], first[0][2]["actions"])
    again: dict = {}
    collect_sac(family, config, tasks, 7, again.__setitem__, progress=False, checkpoint_dir=tmp_path / ".ck")
    for i in tasks:
        for a, b in zip(first[i], again[i]):
            np.testing.assert_array_equal(a["actions"], b["actions"])


def test_learning_apart_from_recording_needs_snapshots():
    with pytest.raises(ValueError, match="num_snapshots >= 2"):
        _small_sac_config(learn_steps_per_task=100, num_snapshots=1)


def test_collect_records_from_snapshots_into_datasets_the_storage_layer_reads(tmp_path):
    """The collect runner with learning apart from recording: datasets next to the snapshot file load as
    buffers, one snapshot step per episode."""
    from lit_offmeta.collect.runner import collect
    from lit_offmeta.data.storage import load_task_buffers

    config = _small_sac_config(num_tasks=2, checkpoint_every=0, learn_steps_per_task=100, num_snapshots=2,
                               steps_per_task=40)
    collect(config, tmp_path, seed=3, progress=False)
    assert (tmp_path / "point_robot" / "behaviour_snapshots.pt").is_file()
    buffers = load_task_buffers(tmp_path, "point_robot", [0, 1])
    assert [len(b.obs) for b in buffers] == [40, 40]  # 2 snapshots x one 20-step episode each
