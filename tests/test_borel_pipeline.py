"""Offline VariBAD pipeline: state relabelling, online belief policies, reference bugs 4-6, the Lightning module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback

from lit_offmeta.algorithms.borel.hyperstates import HyperStateTransitions, relabel_states
from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD, cosine_lr_decay_
from lit_offmeta.algorithms.borel.policy import BeliefPolicy, ThompsonPolicy
from lit_offmeta.callbacks import AdaptationEvaluator
from lit_offmeta.data.scripted import scripted_trials
from lit_offmeta.datamodules.trajectory import TrialDataModule
from lit_offmeta.nn.belief import BeliefEncoder
from lit_offmeta.policy import RolloutPolicy
from lit_offmeta.rollout import rollout
from lit_offmeta.tasks import get_family

GRID_VAE = {"action_embed_dim": 0, "reward_embed_dim": 8, "hidden_dim": 16}


@pytest.fixture(scope="module")
def grid_trials():
    return scripted_trials(get_family("grid_navi"), [0, 4, 11], trials_per_task=3, episodes_per_trial=4, seed=0,
                           eps_final=0.0)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return BeliefEncoder(2, 5, True, 8, 0, 4, hidden_dim=16, latent_dim=3)


def test_goal_reached_is_not_a_terminal_and_episodes_hand_over_to_the_start_state(grid_trials, encoder):
    """Bug 5: transitions onto the goal bootstrap; an episode's last step continues at the next start state."""
    hyper = relabel_states(encoder, grid_trials)
    assert len(hyper) == grid_trials.valid.sum() == 9 * 60
    assert (hyper.rewards == 1.0).any()
    assert (hyper.terminals == 0).all()  # GridNavi never terminates, even on the goal
    # successors: within an episode s_{t+1}; across episodes the next episode's start cell (0, 0)
    # transitions come time-major (all 9 trials at t = 0, then t = 1, ...): trial 0 is every 9th
    obs, nxt = hyper.obs.reshape(60, 9, -1)[:, 0], hyper.next_obs.reshape(60, 9, -1)[:, 0]
    for t in range(59):
        if (t + 1) % 15 == 0:
            assert nxt[t, :2].tolist() == [0.0, 0.0]
        else:
            assert torch.equal(nxt[t, :2], obs[t + 1, :2])
        # the belief part of the successor is the belief of the next hyper-state
        assert torch.equal(nxt[t, 2:], obs[t + 1, 2:])


def test_one_reset_rule_relabelling_equals_the_online_policy(grid_trials, encoder):
    """Bug 4: the beliefs in the relabelled data are exactly those the online policy holds along the same trial."""
    hyper = relabel_states(encoder, grid_trials)
    seen = []

    class Recorder(torch.nn.Module):
        def act(self, hyper_obs, deterministic=True):
            seen.append(hyper_obs.clone())
            return torch.zeros(hyper_obs.shape[0], dtype=torch.long)

    policy = BeliefPolicy(encoder, Recorder(), discrete_actions=True)
    policy.reset(grid_trials.num_trials)
    obs, act, rew, nxt = (grid_trials.flat(k) for k in ("obs", "actions", "rewards", "next_obs"))
    for t in range(60):
        policy.act(obs[:, t])
        dones = np.full(grid_trials.num_trials, (t + 1) % 15 == 0)
        policy.observe(obs[:, t], act[:, t], rew[:, t], nxt[:, t], dones)
    online = torch.stack(seen)  # [L, N, d]
    offline = hyper.obs.reshape(60, grid_trials.num_trials, -1)  # time-major
    assert torch.allclose(online, offline, atol=1e-6)


def test_episode_time_counts_steps_within_episodes_and_matches_the_online_policy(grid_trials, encoder):
    """``episode_time``: t / H in the hyper-state, 0 at every episode start and for a successor across an
    episode boundary; the online policy's count (restarted at ``dones``) gives the very same hyper-states."""
    plain = relabel_states(encoder, grid_trials)
    timed = relabel_states(encoder, grid_trials, episode_time=True)
    assert torch.equal(timed.obs[:, :-1], plain.obs) and torch.equal(timed.next_obs[:, :-1], plain.next_obs)
    n = grid_trials.num_trials
    t_now, t_next = timed.obs.reshape(60, n, -1)[:, :, -1], timed.next_obs.reshape(60, n, -1)[:, :, -1]
    step = torch.arange(60) % 15
    assert torch.allclose(t_now, (step / 15.0)[:, None].expand(-1, n))
    expected_next = torch.where(step == 14, 0.0, (step + 1) / 15.0)  # episode end -> the next episode's t = 0
    assert torch.allclose(t_next, expected_next[:, None].expand(-1, n))

    seen = []

    class Recorder(torch.nn.Module):
        def act(self, hyper_obs, deterministic=True):
            seen.append(hyper_obs.clone())
            return torch.zeros(hyper_obs.shape[0], dtype=torch.long)

    policy = BeliefPolicy(encoder, Recorder(), discrete_actions=True, horizon=15)
    policy.reset(n)
    obs, act, rew, nxt = (grid_trials.flat(k) for k in ("obs", "actions", "rewards", "next_obs"))
    for t in range(60):
        policy.act(obs[:, t])
        policy.observe(obs[:, t], act[:, t], rew[:, t], nxt[:, t], np.full(n, (t + 1) % 15 == 0))
    assert torch.allclose(torch.stack(seen), timed.obs.reshape(60, n, -1), atol=1e-6)
    with pytest.raises(ValueError, match="horizon"):
        BeliefPolicy(encoder, Recorder(), discrete_actions=True, horizon=0)


def test_pipeline_with_episode_time_sizes_the_agent_and_evaluates():
    model = OfflineVariBAD("grid_navi", vae_steps=1, rl_steps=0, vae=GRID_VAE, episode_time=True)
    assert model.agent.cfg.input_dim == 2 + 2 * 5 + 1
    family = get_family("grid_navi")
    result = rollout(model.adapt(), family, family.default_tasks()[:2], episodes=2, seed=0)
    assert result.returns.shape == (2, 2)
    assert model.thompson_policy().horizon == family.horizon


def test_evaluation_starts_every_episode_from_the_start_state():
    """Bug 6: evaluation trials start at the start state in every episode, never at a random position."""
    for name, start in (("grid_navi", [0.0, 0.0]), ("point_robot_sparse", [0.0, 0.0])):
        family = get_family(name)
        model = OfflineVariBAD(name, vae_steps=1, rl_steps=0, vae={"hidden_dim": 8})
        tasks = family.default_tasks()[:3]
        result = rollout(model.adapt(), family, tasks, episodes=2, seed=5, record=True)
        for task_eps in result.episodes:
            for ep in task_eps:
                assert ep["observations"][0].tolist() == start


def test_belief_policy_keeps_its_belief_across_episodes_and_resets_at_trial_start(encoder):
    agent = HyperAgentStub()
    policy = BeliefPolicy(encoder, agent, discrete_actions=True)
    policy.reset(1)
    prior = policy.mu.clone()
    policy.observe(np.zeros((1, 2)), np.array([1]), np.array([1.0]), np.array([[0.0, 1.0]]), np.array([True]))
    after = policy.mu.clone()
    assert not torch.allclose(after, prior)  # dones=True did not reset it
    policy.reset(1)
    assert torch.allclose(policy.mu, prior)
    assert isinstance(policy, RolloutPolicy)


def test_thompson_policy_resamples_only_at_episode_ends(encoder):
    policy = ThompsonPolicy(encoder, HyperAgentStub(), True, logvar_confident=torch.full((3,), -4.0), seed=0)
    policy.reset(2)
    z0 = policy.z.clone()
    args = (np.zeros((2, 2)), np.array([1, 2]), np.array([-0.1, -0.1]), np.ones((2, 2)))
    policy.observe(*args, np.array([False, False]))
    assert torch.equal(policy.z, z0)
    policy.observe(*args, np.array([False, True]))
    assert torch.equal(policy.z[0], z0[0]) and not torch.equal(policy.z[1], z0[1])
    mu, logvar = policy._latent()
    assert torch.equal(mu, policy.z) and (logvar == -4.0).all()


def test_thompson_policy_on_a_goal_map_samples_one_cell_per_episode(encoder):
    """With a decoded goal map the sample is a goal cell drawn from the map (at the belief mean), shown to the agent
    as the one-hot map for the whole episode and redrawn only at an episode end."""
    seen = []

    class Recorder(torch.nn.Module):
        def act(self, hyper_obs, deterministic=True):
            seen.append(hyper_obs.clone())
            return torch.zeros(hyper_obs.shape[0], dtype=torch.long)

    # env 0's map is sure of cell 3; env 1's splits 0.25 / 0.75 between cells 1 and 4
    fixed = torch.tensor([[0.0, 0, 0, 1, 0], [0, 0.25, 0, 0, 0.75]])
    policy = ThompsonPolicy(encoder, Recorder(), True, logvar_confident=torch.zeros(3), seed=0,
                            goal_map=lambda mu: fixed[: len(mu)] if len(mu) == 2 else fixed[1:].expand(len(mu), -1))
    counts = torch.zeros(5)
    for _ in range(400):
        policy.reset(2)
        assert policy.z[0].tolist() == [0, 0, 0, 1, 0] and policy.z[1].sum() == 1
        counts += policy.z[1]
    assert counts[[0, 2, 3]].sum() == 0 and abs(counts[4] / 400 - 0.75) < 0.07
    policy.act(np.zeros((2, 2)))
    assert torch.equal(seen[-1][:, 2:], policy.z)  # the agent reads (s, one-hot map)
    z0 = policy.z.clone()
    args = (np.zeros((2, 2)), np.array([1, 2]), np.array([-0.1, -0.1]), np.ones((2, 2)))
    for _ in range(30):  # within an episode the sample stays
        policy.observe(*args, np.array([False, False]))
        assert torch.equal(policy.z, z0)
    redrawn = set()
    for _ in range(30):  # env 1 ends an episode every step: redrawn from its map each time
        policy.observe(*args, np.array([False, True]))
        assert torch.equal(policy.z[0], z0[0])
        redrawn.add(int(policy.z[1].argmax()))
    assert redrawn == {1, 4}


class HyperAgentStub(torch.nn.Module):
    def act(self, hyper_obs, deterministic=True):
        return torch.zeros(hyper_obs.shape[0], dtype=torch.long)


def test_hyperstate_cache_roundtrip_and_bad_file(tmp_path, grid_trials, encoder):
    hyper = relabel_states(encoder, grid_trials)
    path = hyper.save(tmp_path / "cache" / "hyper.pt")
    back = HyperStateTransitions.load(path)
    assert torch.equal(back.obs, hyper.obs) and torch.equal(back.task_index, hyper.task_index)
    torch.save({"obs": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a hyper-state cache"):
        HyperStateTransitions.load(tmp_path / "bad.pt")
    batch = hyper.sample(4, 8, torch.Generator().manual_seed(0))
    assert batch["obs"].shape == (32, 2 + 6)
    # each block of 8 comes from one task
    assert all(len(set(batch["task_index"][i * 8 : (i + 1) * 8].tolist())) == 1 for i in range(4))


def _end_cells(trials):
    """``[N, E]`` the cell (x * 5 + y) each episode ends in: a fingerprint of the behaviour."""
    last = trials.next_obs[:, :, -1]
    return (last[..., 0] * 5 + last[..., 1]).astype(int)


def test_relabelled_rl_data_replays_in_the_target_tasks_env_and_is_independent_of_the_behaviour():
    """rl_data="relabelled": each RL trial's rewards are what the env of ITS task pays for those actions, and the
    behaviour (where episodes end) no longer depends on the trial's task; in the logged data it does."""
    family = get_family("grid_navi")
    tasks = [0, 10, 20]  # goals (0, 2), (3, 0), (4, 4)
    logged = scripted_trials(family, tasks, trials_per_task=40, episodes_per_trial=4, seed=0, eps_final=0.0)
    model = OfflineVariBAD("grid_navi", vae_steps=1, rl_steps=0, vae=GRID_VAE, rl_data="relabelled",
                           rl_trials_per_task=300)
    rl = model.rl_trials(logged)
    assert np.bincount(rl.task_index).tolist() == [300 if t in tasks else 0 for t in range(21)]
    for i in range(0, rl.num_trials, 97):  # replay in the environment of the trial's task
        env = family.make_env(rl.tasks[int(rl.task_index[i])])
        for e in range(4):
            obs, _ = env.reset(seed=0)
            for t in range(15):
                assert np.array_equal(obs, rl.obs[i, e, t])
                obs, reward, *_ = env.step(int(rl.actions[i, e, t]))
                assert np.array_equal(obs, rl.next_obs[i, e, t]) and np.isclose(reward, rl.rewards[i, e, t])
    goal_cells = [5 * g[0] + g[1] for g in (family.default_tasks()[t]["goal"] for t in tasks)]

    def ends_at(trials):
        """P(an episode ends on goal cell j | the trial's task is i), [3, 3]."""
        ends = _end_cells(trials)
        return np.array([[(ends[trials.task_index == i] == c).mean() for c in goal_cells] for i in tasks])

    own, relabelled = ends_at(logged), ends_at(rl)
    assert np.diag(own).min() > 0.4 and (own - np.diag(np.diag(own))).max() < 0.15  # logged: task -> behaviour
    assert np.abs(relabelled - relabelled.mean(0)).max() < 0.06  # relabelled: the same for every task
    assert np.allclose(relabelled.mean(0), own.mean(0), atol=0.06)  # drawn from the whole pool
    assert model.rl_trials(logged).num_trials == rl.num_trials and np.array_equal(model.rl_trials(logged).obs, rl.obs)
    with pytest.raises(ValueError, match="rl_data"):
        OfflineVariBAD("grid_navi", rl_data="mixed")


@pytest.mark.parametrize(("rl_data", "one_hot"), [("own", False), ("relabelled", False), ("relabelled", True)])
def test_pipeline_runs_both_stages_logs_rollouts_and_checkpoints(tmp_path, rl_data, one_hot):
    dm = TrialDataModule("grid_navi", scripted_trials_per_task=2, tasks_per_batch=2, trials_per_task=2,
                         steps_per_epoch=4)
    model = OfflineVariBAD(
        "grid_navi",
        vae_steps=3,
        rl_steps=3,
        vae=GRID_VAE,
        rl={"hidden": (8,), "state_one_hot": one_hot, "tasks_per_batch": 2, "batch_per_task": 4},
        hyperstate_cache=str(tmp_path / "h.pt"),
        rl_data=rl_data,
        rl_trials_per_task=5,
    )
    evaluator = AdaptationEvaluator(every_n_epochs=1, episodes=4, curve_steps=[], random_episodes=1)
    trainer = Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, callbacks=[evaluator])
    trainer.fit(model, dm)
    assert int(model.updates) == 6  # 4 + 2 batches: the module stops itself mid-epoch, and is evaluated there
    # the RL data: the training tasks' 2 logged trials each, or 5 relabelled trials per task; 60 steps per trial
    assert len(model.hyperstates) == len(dm.split.train) * (2 if rl_data == "own" else 5) * 60
    assert (tmp_path / "h.pt").is_file()
    # the shared evaluator: one 4-episode trial per held-out goal (the default split's 4), each episode's mean logged
    assert evaluator.num_evaluations == 2 and [r["task_id"] for r in evaluator.last_evaluation["tasks"]] == list(
        dm.test_task_ids) and len(dm.test_task_ids) == 4
    assert {f"rollout/{k}_ep{e}" for k in ("return", "success") for e in (1, 2, 3, 4)} <= set(trainer.callback_metrics)
    rows = evaluator.last_evaluation["tasks"]
    assert float(trainer.callback_metrics["rollout/success_ep2"]) == pytest.approx(
        np.mean([r["episode_success"][1] for r in rows]))
    assert not any(p.requires_grad for p in model.vae.parameters())  # the encoder is frozen for RL
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = OfflineVariBAD.load_from_checkpoint(tmp_path / "m.ckpt")
    assert torch.equal(loaded.updates, model.updates)
    assert torch.equal(loaded.logvar_confident, model.logvar_confident)
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    result = rollout(loaded.adapt(), loaded.family, loaded.family.default_tasks()[:2], episodes=4)
    assert result.returns.shape == (2, 4)
    # `test`: the VAE's loss on each held-out goal's logged trials, and the same evaluator, here on Thompson sampling
    assert isinstance(loaded.adapt(policy="thompson"), ThompsonPolicy) and type(loaded.adapt()) is BeliefPolicy
    evaluator.adapt_kwargs = {"policy": "thompson"}
    trainer.test(loaded, dm)
    assert {"test/vae/loss", "rollout/success_ep2"} <= set(trainer.callback_metrics)
    assert evaluator.last_evaluation["settings"]["stage"] == "test"
    rows = evaluator.last_evaluation["tasks"]
    for r in rows:  # each task gets its own Thompson policy (its own sample stream) in the evaluator
        one = rollout(loaded.thompson_policy(loaded.hparams.seed), loaded.family, [r["task"]], episodes=4,
                      seed=r["task_id"])
        np.testing.assert_allclose(r["episode_returns"], one.returns[0])


def test_cosine_lr_decay_anneals_from_the_initial_rate_and_survives_a_state_dict_round_trip():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.4)
    for progress, expected in [(0.0, 0.4), (0.5, 0.2), (0.25, 0.2 * (1 + np.sqrt(0.5))), (1.0, 0.0), (2.0, 0.0)]:
        cosine_lr_decay_([opt], progress)  # always from the initial rate, never compounding
        assert opt.param_groups[0]["lr"] == pytest.approx(expected)
    fresh = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.4)
    fresh.load_state_dict(opt.state_dict())  # a resumed run: lr 0 now, the initial rate kept
    cosine_lr_decay_([fresh], 0.5)
    assert fresh.param_groups[0]["lr"] == pytest.approx(0.2)


def test_pipeline_rl_lr_decay_ends_at_zero_and_leaves_the_vae_rate_alone(tmp_path):
    dm = TrialDataModule("grid_navi", scripted_trials_per_task=2, tasks_per_batch=2, trials_per_task=2,
                         steps_per_epoch=4)
    model = OfflineVariBAD("grid_navi", vae_steps=2, rl_steps=4, vae=GRID_VAE,
                           rl={"hidden": (8,), "lr": 0.01, "tasks_per_batch": 2, "batch_per_task": 4, "lr_decay": True})
    rates = []
    original = model.agent.update

    def spy(batch, optimizers, backward):
        rates.append(optimizers[0].param_groups[0]["lr"])
        return original(batch, optimizers, backward)

    model.agent.update = spy
    Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=tmp_path).fit(model, dm)
    # RL update i (0-based) of 4 runs at 0.01 * (1 + cos(pi * i / 4)) / 2
    assert rates == pytest.approx([0.01 * (1 + np.cos(np.pi * i / 4)) / 2 for i in range(4)])
    assert all(type(rate) is float for rate in rates)  # a plain float in the optimiser's state, not a tensor
    assert model.optimizers()[0].param_groups[0]["lr"] == model.vae.cfg.lr


def test_pipeline_vae_lr_decay_anneals_the_vae_rate_over_its_stage(tmp_path):
    dm = TrialDataModule("grid_navi", scripted_trials_per_task=2, tasks_per_batch=2, trials_per_task=2,
                         steps_per_epoch=4)
    model = OfflineVariBAD("grid_navi", vae_steps=4, rl_steps=1, vae={**GRID_VAE, "lr": 0.01, "lr_decay": True},
                           rl={"hidden": (8,), "tasks_per_batch": 2, "batch_per_task": 4})
    rates = []
    original = model.vae.compute_loss

    def spy(batch, subsample=False):
        rates.append(model.optimizers()[0].param_groups[0]["lr"])
        return original(batch, subsample)

    model.vae.compute_loss = spy
    Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=tmp_path).fit(model, dm)
    # VAE update i (0-based) of 4 runs at 0.01 * (1 + cos(pi * i / 4)) / 2; the RL rate is left alone
    assert rates == pytest.approx([0.01 * (1 + np.cos(np.pi * i / 4)) / 2 for i in range(4)])
    assert model.optimizers()[1].param_groups[0]["lr"] == model.agent.cfg.lr


def test_pipeline_validates_arguments():
    with pytest.raises(ValueError, match="DQN needs discrete"):
        OfflineVariBAD("point_robot_sparse", rl={"algorithm": "dqn"})
    with pytest.raises(ValueError, match="SAC needs continuous"):
        OfflineVariBAD("grid_navi", rl={"algorithm": "sac"})
    with pytest.raises(ValueError, match="double_q and state_one_hot are DQN settings"):
        OfflineVariBAD("point_robot_sparse", rl={"double_q": True})
    with pytest.raises(ValueError, match="actor_lr and alpha are SAC settings"):
        OfflineVariBAD("grid_navi", vae=GRID_VAE, rl={"alpha": 0.1})
    with pytest.raises(ValueError, match=r"rl: unknown key\(s\) \['grid_size'\]"):
        OfflineVariBAD("grid_navi", vae=GRID_VAE, rl={"grid_size": 5})
    with pytest.raises(ValueError, match="policy must be 'belief' or 'thompson'"):
        OfflineVariBAD("grid_navi", vae=GRID_VAE).adapt(policy="greedy")
    with pytest.raises(ValueError, match="belief_input='decoded' needs"):
        OfflineVariBAD("point_robot_sparse", vae={"hidden_dim": 8}, belief_input="decoded")
    with pytest.raises(ValueError, match="vae_steps"):
        OfflineVariBAD("grid_navi", vae_steps=0)


@pytest.mark.parametrize("config", sorted((Path(__file__).parents[1] / "configs" / "borel").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_borel_config_builds_its_model_and_datamodule(config):
    """Each YAML's model and data sections are valid arguments (what `lit-offmeta fit --config` instantiates)."""
    cfg = yaml.safe_load(config.read_text())
    model = OfflineVariBAD(**cfg["model"]["init_args"])
    dm = TrialDataModule(**cfg["data"]["init_args"])
    assert model.family.name == dm.family.name
    (evaluator,) = [c for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith("AdaptationEvaluator")]
    assert evaluator["init_args"]["episodes"] == dm.episodes_per_trial  # one whole trial per evaluated task
    assert cfg["trainer"]["max_steps"] == -1  # the module stops itself; optimizer-step counts differ by stage


def test_distinct_cells_counts_the_cells_entered_per_episode():
    from types import SimpleNamespace

    from lit_offmeta.algorithms.borel.plots import distinct_cells

    walk = {"observations": np.array([[0, 0], [1, 0], [2, 0], [1, 0], [1, 0]], np.float32)}  # enters 2 cells
    stay = {"observations": np.zeros((5, 2), np.float32)}  # enters (0, 0) only
    result = SimpleNamespace(episodes=[[walk, stay], [stay, stay]])  # [task][episode]
    assert distinct_cells(result) == [1.5, 1.0]


def test_decoded_belief_input_is_the_goal_map_offline_and_online(grid_trials):
    """belief_input="decoded": the hyper-state holds p(goal at cell) at the belief mean instead of (mu, logvar),
    the same in the relabelled data and in the online policy along the same trial."""
    torch.manual_seed(0)
    model = OfflineVariBAD("grid_navi", vae_steps=1, rl_steps=0, vae={**GRID_VAE, "decoder": "cells"},
                           episode_time=True, belief_input="decoded")
    assert model.agent.cfg.input_dim == 2 + 25 + 1
    hyper = model.build_hyperstates(grid_trials)
    latent = relabel_states(model.vae.encoder, grid_trials, episode_time=True)
    goal_map = model.vae.goal_probabilities(latent.obs[:, 2:7]).flatten(-2)
    assert torch.allclose(hyper.obs[:, 2:27], goal_map) and torch.equal(hyper.obs[:, -1], latent.obs[:, -1])
    assert torch.equal(hyper.obs[:, :2], latent.obs[:, :2]) and torch.equal(
        hyper.next_obs[:, :2], latent.next_obs[:, :2]
    )
    seen = []

    class Recorder(torch.nn.Module):
        def act(self, hyper_obs, deterministic=True):
            seen.append(hyper_obs.clone())
            return torch.zeros(hyper_obs.shape[0], dtype=torch.long)

    policy = model.adapt()
    policy.agent = Recorder()
    n = grid_trials.num_trials
    policy.reset(n)
    obs, act, rew, nxt = (grid_trials.flat(k) for k in ("obs", "actions", "rewards", "next_obs"))
    for t in range(60):
        policy.act(obs[:, t])
        policy.observe(obs[:, t], act[:, t], rew[:, t], nxt[:, t], np.full(n, (t + 1) % 15 == 0))
    assert torch.allclose(torch.stack(seen), hyper.obs.reshape(60, n, -1), atol=1e-6)
    # its Thompson comparison samples goal cells: the agent sees (s, one-hot map, t / H)
    thompson = model.thompson_policy()
    thompson.agent = Recorder()
    seen.clear()
    rollout(thompson, model.family, model.family.default_tasks()[:3], episodes=2)
    maps = torch.stack(seen)[..., 2:27]  # [steps, 3, 25]
    assert ((maps == 0) | (maps == 1)).all() and (maps.sum(-1) == 1).all()
    with pytest.raises(ValueError, match="decoder='cells'"):
        OfflineVariBAD("grid_navi", vae={**GRID_VAE, "decoder": "next_obs"}, belief_input="decoded")


def test_oracle_belief_input_is_the_true_task_offline_and_online(tmp_path, grid_trials):
    """belief_input="oracle": every hyper-state holds its own task's parameters (a GridNavi goal cell) in place of the
    belief, the same in the relabelled data, in the online policy, and through the shared evaluator."""
    torch.manual_seed(0)
    model = OfflineVariBAD("grid_navi", vae_steps=1, rl_steps=0, vae=GRID_VAE, episode_time=True,
                           belief_input="oracle")
    assert model.agent.cfg.input_dim == 2 + 2 + 1
    hyper = model.build_hyperstates(grid_trials)
    latent = relabel_states(model.vae.encoder, grid_trials, episode_time=True)
    goals = torch.tensor([model.family.default_tasks()[i]["goal"] for i in hyper.task_index.tolist()],
                         dtype=torch.float32)
    assert set(hyper.task_index.tolist()) == {0, 4, 11}
    assert torch.equal(hyper.obs[:, 2:4], goals) and torch.equal(hyper.next_obs[:, 2:4], goals)
    for key in ("obs", "next_obs"):  # state and episode time as in the belief hyper-states
        assert torch.equal(getattr(hyper, key)[:, :2], getattr(latent, key)[:, :2])
        assert torch.equal(getattr(hyper, key)[:, -1], getattr(latent, key)[:, -1])
    seen = []

    class Recorder(torch.nn.Module):
        def act(self, hyper_obs, deterministic=True):
            seen.append(hyper_obs.clone())
            return torch.zeros(hyper_obs.shape[0], dtype=torch.long)

    dm = TrialDataModule("grid_navi", scripted_trials_per_task=1, split="all")
    context = dm.adaptation_batch(11)
    assert context["task_features"].tolist() == [model.family.default_tasks()[11]["goal"]]
    policy = model.adapt(context)
    policy.agent = Recorder()
    rollout(policy, model.family, [model.family.default_tasks()[11]], episodes=2)
    assert all(s[:, 2:4].tolist() == [model.family.default_tasks()[11]["goal"]] for s in seen)
    # through the shared evaluator, which hands each task's policy that task
    model = OfflineVariBAD("grid_navi", vae_steps=1, rl_steps=40, vae=GRID_VAE, belief_input="oracle",
                           rl={"hidden": (16,), "tasks_per_batch": 2, "batch_per_task": 16})
    dm = TrialDataModule("grid_navi", scripted_trials_per_task=2, tasks_per_batch=2, trials_per_task=2,
                         steps_per_epoch=41)
    evaluator = AdaptationEvaluator(every_n_epochs=1, episodes=2, curve_steps=[], random_episodes=1)
    trainer = Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, callbacks=[evaluator])
    trainer.fit(model, dm)
    assert {"rollout/return_ep1", "rollout/return_ep2"} <= set(trainer.callback_metrics)
    with pytest.raises(ValueError, match="told the task"):
        model.adapt(context, policy="thompson")
    with pytest.raises(ValueError, match=r"context\['task_features'\]"):
        model.adapt({})


def test_decoded_task_bins_belief_input_is_the_bin_map_offline_and_online():
    """PointRobot with decoder="task_bins" and belief_input="decoded": the hyper-state holds p(goal in bin) at the
    belief mean (task_bins numbers summing to 1), the same in the relabelled data and in the online policy; its
    Thompson comparison samples one bin per episode."""
    family = get_family("point_robot_sparse")
    trials = scripted_trials(family, [0, 3], trials_per_task=2, episodes_per_trial=2, seed=1, eps_final=0.0)
    torch.manual_seed(0)
    model = OfflineVariBAD("point_robot_sparse", vae_steps=1, rl_steps=0, belief_input="decoded",
                           vae={"decoder": "task_bins", "task_bins": 12, "hidden_dim": 16, "kl_weight": 0.0})
    assert model.agent.cfg.input_dim == 2 + 12
    hyper = model.build_hyperstates(trials)
    latent = relabel_states(model.vae.encoder, trials)
    bins = hyper.obs[:, 2:]
    assert torch.allclose(bins, torch.softmax(model.vae.decoder(latent.obs[:, 2:7]), -1), atol=1e-6)
    assert torch.allclose(bins.sum(-1), torch.ones(len(bins))) and torch.equal(hyper.obs[:, :2], latent.obs[:, :2])
    seen = []

    class Recorder(torch.nn.Module):
        def act(self, hyper_obs, deterministic=True):
            seen.append(hyper_obs.clone())
            return torch.zeros(hyper_obs.shape[0], family.action_dim)

    policy = model.adapt()
    policy.agent = Recorder()
    h, n = family.horizon, trials.num_trials
    policy.reset(n)
    for t in range(2 * h):
        policy.act(trials.flat("obs")[:, t])
        policy.observe(trials.flat("obs")[:, t], trials.flat("actions")[:, t], trials.flat("rewards")[:, t],
                       trials.flat("next_obs")[:, t], np.full(n, (t + 1) % h == 0))
    assert torch.allclose(torch.stack(seen), hyper.obs.reshape(2 * h, n, -1), atol=1e-6)
    thompson = model.thompson_policy()
    thompson.agent = Recorder()
    seen.clear()
    rollout(thompson, family, family.default_tasks()[:3], episodes=2)
    maps = torch.stack(seen)[..., 2:]  # [steps, 3, 12]
    assert ((maps == 0) | (maps == 1)).all() and (maps.sum(-1) == 1).all()
    assert (maps[:h] == maps[0]).all() and (maps[h:] == maps[h]).all()  # one sample per episode
    with pytest.raises(ValueError, match="or 'task_bins'"):
        OfflineVariBAD("point_robot_sparse", vae={"hidden_dim": 8}, belief_input="decoded")


def test_arc_belief_figure_and_its_exact_posterior_over_the_training_goals(tmp_path):
    """arc_beliefs: an episode that walks straight right to (1, 0) with no reward rules out the training goals
    within the goal radius of its path; the exact map is uniform over the others' bins."""
    from lit_offmeta.algorithms.borel.plots import arc_beliefs, plot_arc_belief
    from lit_offmeta.tasks.point_robot import GOAL_RADIUS

    torch.manual_seed(0)
    model = OfflineVariBAD("point_robot_sparse", vae_steps=1, rl_steps=0,
                           vae={"decoder": "task_bins", "task_bins": 9, "hidden_dim": 8, "kl_weight": 0.0})
    family = model.family
    path = np.stack([np.linspace(0, 1.0, family.horizon + 1), np.zeros(family.horizon + 1)], -1).astype(np.float32)
    episode = {"observations": path, "actions": np.tile([1.0, 0.0], (family.horizon, 1)).astype(np.float32),
               "rewards": np.zeros(family.horizon, np.float32), "terminations": np.zeros(family.horizon, bool),
               "truncations": np.arange(family.horizon) == family.horizon - 1}
    train = family.split().train
    goals = np.array([family.default_tasks()[i]["goal"] for i in train])
    ruled_out = (np.linalg.norm(goals[:, None] - path[None, 1:], axis=-1) <= GOAL_RADIUS).any(1)
    assert ruled_out.any() and not ruled_out.all()
    every = np.array([t["goal"] for t in family.default_tasks()], dtype=np.float64)
    all_angles = np.arctan2(every[:, 1], every[:, 0])  # the bins span the family's goal angles
    low, high = all_angles.min(), all_angles.max()
    angles = np.arctan2(goals[:, 1], goals[:, 0])
    bins = np.minimum(((angles - low) / (high - low) * 9).astype(int), 8)
    by_hand = np.bincount(bins[~ruled_out], minlength=9) / (~ruled_out).sum()
    beliefs = arc_beliefs(model, episode)
    np.testing.assert_allclose(beliefs["exact"], by_hand, atol=1e-9)
    mu = plots_belief_after(model, episode)
    np.testing.assert_allclose(beliefs["learned"], model.vae.goal_map(mu)[0].numpy(), atol=1e-6)
    assert beliefs["prior"].shape == (9,) and beliefs["prior"].sum() == pytest.approx(1.0, abs=1e-5)
    out = plot_arc_belief(model, [episode], [family.default_tasks()[80]["goal"]], tmp_path / "arc.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="1 goals for 2 episodes"):
        plot_arc_belief(model, [episode, episode], [[1.0, 0.0]], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="'task_bins' decoder"):
        arc_beliefs(OfflineVariBAD("point_robot_sparse", vae_steps=1, rl_steps=0, vae={"hidden_dim": 8}), episode)


def plots_belief_after(model, episode):
    from lit_offmeta.algorithms.borel.plots import belief_after

    return belief_after(model.vae.encoder, model.family, [episode])


def test_point_paths_figure_draws_every_tasks_trial(tmp_path):
    from lit_offmeta.algorithms.borel.plots import plot_point_paths
    from lit_offmeta.tasks.point_robot import GOAL_RADIUS

    torch.manual_seed(0)
    model = OfflineVariBAD("point_robot_sparse", vae_steps=1, rl_steps=0, vae={"hidden_dim": 8})
    tasks = model.family.default_tasks()[80:83]
    result = rollout(model.adapt(), model.family, tasks, episodes=2, record=True)
    out = plot_point_paths(result, [t["goal"] for t in tasks], GOAL_RADIUS, tmp_path / "fig" / "paths.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="2 goals for 3 recorded trials"):
        plot_point_paths(result, [t["goal"] for t in tasks[:2]], GOAL_RADIUS, tmp_path / "bad.png")


def test_chunked_relabelling_keeps_every_trials_valid_steps_in_time_order(grid_trials, encoder):
    """Chunked relabelling (3 chunks of 4 trials): rows come chunk by chunk, each chunk time-major over its trials'
    valid steps, so each trial's rows, in order, are its valid steps in time order."""
    hyper = relabel_states(encoder, grid_trials, batch_size=4)
    valid_t = torch.as_tensor(grid_trials.flat("valid"))
    rows = torch.cat([torch.arange(s, min(s + 4, 9))[None].expand(valid_t.shape[1], -1)[valid_t[s:s + 4].T]
                      for s in range(0, 9, 4)])
    assert rows.shape == (len(hyper),) and grid_trials.num_trials == 9
    obs, valid = grid_trials.flat("obs"), grid_trials.flat("valid")
    for i in range(grid_trials.num_trials):
        np.testing.assert_array_equal(hyper.obs[rows == i, :2].numpy(), obs[i][valid[i]])
        assert (hyper.task_index[rows == i] == int(grid_trials.task_index[i])).all()


class _StopAfterEpoch(Callback):
    """Save a checkpoint at the end of epoch ``epoch`` (as the default ModelCheckpoint does) and stop there."""

    def __init__(self, epoch: int, path) -> None:
        self.epoch, self.path = epoch, path

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = True


@pytest.mark.parametrize("stop_epoch", [0, 2], ids=["in-vae-stage", "in-rl-stage"])
def test_a_run_resumed_from_an_epoch_end_checkpoint_equals_the_uninterrupted_run(tmp_path, stop_epoch):
    # 4 VAE + 6 SAC updates, 2 batches per epoch: epoch 0 ends inside the VAE stage, epoch 2 inside the RL stage.
    # Exact resumption needs the VAE batch stream's position, the RL sampler's stream and SAC's action noise.
    def run(ckpt_path=None, callbacks=()):
        torch.manual_seed(0)
        dm = TrialDataModule("point_robot_sparse", scripted_trials_per_task=2, tasks_per_batch=2, trials_per_task=1,
                             steps_per_epoch=2, seed=3)
        model = OfflineVariBAD("point_robot_sparse", vae_steps=4, rl_steps=6, vae={"hidden_dim": 8, "latent_dim": 2},
                               rl={"hidden": (8,), "tasks_per_batch": 2, "batch_per_task": 4},
                               rl_data="relabelled", rl_trials_per_task=2, seed=5)
        torch.manual_seed(1)  # the run's stream, as seed_everything before fit
        Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False, default_root_dir=tmp_path, callbacks=list(callbacks)).fit(
            model, dm, ckpt_path=ckpt_path)
        return model

    whole = run()
    assert int(whole.updates) == 10
    ckpt = tmp_path / "epoch_end.ckpt"
    first = run(callbacks=[_StopAfterEpoch(stop_epoch, ckpt)])
    assert int(first.updates) == 2 * (stop_epoch + 1)
    torch.manual_seed(123)  # a resumed process starts from another global stream; the checkpoint must not care
    resumed = run(ckpt_path=ckpt)
    assert int(resumed.updates) == 10
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_point_robot_arc_belief_config_builds_the_task_bins_pipeline():
    """configs/borel/point_robot_sparse_arc_belief.yaml: the point_robot_sparse config with the task_bins belief
    (max encoder, linear decoder over 20 bins) and an agent that reads the 20 bin probabilities."""
    root = Path(__file__).resolve().parents[1]
    arc = yaml.safe_load((root / "configs/borel/point_robot_sparse_arc_belief.yaml").read_text())
    base = yaml.safe_load((root / "configs/borel/point_robot_sparse.yaml").read_text())
    assert arc["data"] == base["data"] and arc["model"]["init_args"]["rl"] == base["model"]["init_args"]["rl"]
    args = {**arc["model"]["init_args"], "vae_steps": 1, "rl_steps": 0}
    model = OfflineVariBAD(**args)
    assert model.vae.decoder_kind == "task_bins" and model.vae.encoder.aggregator == "max"
    assert model.vae.goal_classes == 20 and model.agent.cfg.input_dim == 2 + 20


def test_exact_task_posterior_keeps_the_tasks_whose_rewards_agree_with_every_step():
    """Goals (1, 0) and (0, 1): a step far from both keeps both, a paid step at (0.95, 0) keeps the first only, a
    padding step changes nothing; a reward no task pays leaves no task."""
    from lit_offmeta.algorithms.borel.plots import exact_task_posterior
    from lit_offmeta.tasks import get_family

    family = get_family("point_robot_sparse")
    tasks = [{"goal": [1.0, 0.0]}, {"goal": [0.0, 1.0]}]
    nxt = torch.tensor([[[0.5, 0.0], [0.0, 0.0]], [[0.95, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]])
    batch = {"obs": torch.zeros(3, 2, 2), "actions": torch.zeros(3, 2, 2), "next_obs": nxt,
             "rewards": torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]),
             "valid": torch.tensor([[True, True], [True, True], [False, True]])}
    post = exact_task_posterior(family, tasks, batch)
    assert post.shape == (4, 2, 2)
    np.testing.assert_allclose(post[:, 0], [[0.5, 0.5], [0.5, 0.5], [1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(post[:, 1], [[0.5, 0.5], [0.5, 0.5], [0.0, 0.0], [0.0, 0.0]])
