"""Offline VariBAD losses against hand computations: ELBO terms, DQN, SAC, CQL penalties; the encoder recurrence."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lit_offmeta.algorithms.borel.dqn import HyperStateDQN, cql_discrete_penalty, dqn_target
from lit_offmeta.algorithms.borel.sac import cql_uniform_penalty
from lit_offmeta.algorithms.borel.vae import (
    BeliefVAE,
    elbo_loss,
    gaussian_kl,
    kl_to_previous,
    posterior_entropy,
    task_bin,
    task_parameters,
)
from lit_offmeta.nn.belief import BeliefEncoder
from lit_offmeta.nn.grid import GridCellOneHot, grid_cell_one_hot
from lit_offmeta.nn.polyak import polyak_update


# --- ELBO ----------------------------------------------------------------------------------------------------------
def test_gaussian_kl_by_hand():
    # KL(N(1, e^0) || N(0, e^{log 4})) in 1-D = 0.5 * (log 4 - 0 + (1 + 1) / 4 - 1)
    kl = gaussian_kl(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([math.log(4.0)]))
    assert kl.item() == pytest.approx(0.5 * (math.log(4.0) + 0.5 - 1.0))
    # equals torch.distributions on a 3-D case, summed over dimensions
    mu_q, lv_q, mu_p, lv_p = torch.randn(4, 3).unbind(0)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu_q, (0.5 * lv_q).exp()), torch.distributions.Normal(mu_p, (0.5 * lv_p).exp())
    ).sum()
    assert gaussian_kl(mu_q, lv_q, mu_p, lv_p).item() == pytest.approx(ref.item(), rel=1e-5)


def test_kl_to_previous_starts_from_standard_normal():
    mu = torch.tensor([[[0.0]], [[1.0]], [[1.0]]])  # [L+1=3, B=1, D=1]
    logvar = torch.tensor([[[0.0]], [[0.0]], [[math.log(0.25)]]])
    kl = kl_to_previous(mu, logvar)[:, 0]
    # q_0 = N(0,1) vs N(0,1): 0; q_1 = N(1,1) vs q_0: 0.5; q_2 = N(1, 0.25) vs q_1 = N(1,1): 0.5(0 - log .25 + .25 - 1)
    expected = [0.0, 0.5, 0.5 * (-math.log(0.25) + 0.25 - 1.0)]
    assert kl.tolist() == pytest.approx(expected)


def test_elbo_loss_sums_all_beliefs_and_transitions_and_masks_padding():
    # L = 2 transitions, B = 2 trials; trial 1's second transition is padding.
    nll = torch.arange(12, dtype=torch.float32).reshape(3, 2, 2)  # [t, j, b]
    kl = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])  # [t, b]
    valid = torch.tensor([[True, True], [True, False]])  # [j, b]
    loss, metrics = elbo_loss(nll, kl, valid, kl_weight=0.05)
    # trial 0: all 3 beliefs x 2 transitions: nll[:, :, 0] = 0,2,4,6,8,10 -> 30; kl 1+3+5 = 9
    # trial 1: beliefs 0,1 (belief 2 follows the padded step) x transition 0: nll[0,0,1]=1, nll[1,0,1]=5 -> 6; kl 2+4
    recon = (30 + 6) / 2
    kl_term = (9 + 6) / 2
    assert metrics["reward_nll"].item() == pytest.approx(recon)
    assert metrics["kl"].item() == pytest.approx(kl_term)
    assert loss.item() == pytest.approx(recon + 0.05 * kl_term)


def test_elbo_loss_over_a_subset_of_beliefs_scales_their_reconstruction_and_keeps_every_kl():
    nll = torch.arange(12, dtype=torch.float32).reshape(3, 2, 2)  # the case above
    kl = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    valid = torch.tensor([[True, True], [True, False]])
    loss, metrics = elbo_loss(nll[[0, 2]], kl, valid, kl_weight=0.05, belief_index=torch.tensor([0, 2]),
                              recon_scale=1.5)
    # trial 0: beliefs 0 and 2 x 2 transitions: 0 + 2 + 8 + 10 = 20; trial 1: belief 0 x transition 0 = 1 (belief 2
    # follows the padded step); the KL term is the full one, (9 + 6) / 2
    assert metrics["reward_nll"].item() == pytest.approx(1.5 * 21 / 2)
    assert loss.item() == pytest.approx(1.5 * 21 / 2 + 0.05 * 7.5)


def _cheetah_trials(steps: int = 6, trials: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(steps, trials, dtype=torch.bool)
    valid[-2:, 0] = False  # trial 0 is 2 steps shorter
    return {"obs": torch.randn(steps, trials, 20, generator=g), "next_obs": torch.randn(steps, trials, 20, generator=g),
            "actions": torch.rand(steps, trials, 6, generator=g) * 2 - 1,
            "rewards": torch.randn(steps, trials, generator=g), "valid": valid}


def test_subsampled_elbo_decodes_the_drawn_beliefs_and_transitions_scaled_to_the_full_sum():
    vae = BeliefVAE("cheetah_vel", hidden_dim=16, elbo_subsample=3, decode_subsample=2)
    batch = _cheetah_trials()
    steps, trials = batch["valid"].shape
    torch.manual_seed(5)
    loss, metrics = vae.compute_loss(batch, subsample=True)
    # by hand: the same latent sample, then the two draws the module makes (beliefs, then transitions)
    torch.manual_seed(5)
    mu, logvar = vae.encoder(batch["actions"], batch["next_obs"], batch["rewards"], batch["valid"])
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    beliefs = torch.randperm(steps + 1)[:3].sort().values
    picked = torch.randperm(steps)[:2].sort().values
    nll = vae.reward_nll(z, batch)  # [L + 1, L, B], every pair
    valid = batch["valid"].float()
    belief_valid = torch.cat([torch.ones(1, trials), valid])
    recon = 0.0
    for t in beliefs.tolist():
        for j in picked.tolist():
            for b in range(trials):
                recon += (nll[t, j, b] * belief_valid[t, b] * valid[j, b]).item()
    recon *= (steps + 1) / 3 * steps / 2 / trials
    kl = float((kl_to_previous(mu, logvar) * belief_valid).sum() / trials)
    assert metrics["reward_nll"].item() == pytest.approx(recon, rel=1e-5)
    assert loss.item() == pytest.approx(recon + 0.05 * kl, rel=1e-5)


def test_subsamples_that_cover_the_trial_or_evaluation_give_the_full_elbo():
    batch = _cheetah_trials()
    full = BeliefVAE("cheetah_vel", hidden_dim=16)
    covering = BeliefVAE("cheetah_vel", hidden_dim=16, elbo_subsample=7, decode_subsample=6)
    partial = BeliefVAE("cheetah_vel", hidden_dim=16, elbo_subsample=2, decode_subsample=2)
    covering.load_state_dict(full.state_dict())
    partial.load_state_dict(full.state_dict())
    torch.manual_seed(0)
    expected = full.compute_loss(batch)[0]
    for vae, subsample in ((full, True), (covering, True), (partial, False)):
        torch.manual_seed(0)
        assert torch.equal(vae.compute_loss(batch, subsample=subsample)[0], expected)


def test_elbo_without_kl_weight_ignores_a_non_finite_kl():
    nll, valid = torch.ones(2, 1, 1), torch.ones(1, 1, dtype=torch.bool)
    loss, metrics = elbo_loss(nll, torch.tensor([[0.5], [float("nan")]]), valid, kl_weight=0.0)
    assert loss.item() == 2.0 and math.isnan(metrics["kl"].item())


def test_cells_decoder_nll_reads_the_head_of_the_arrival_cell():
    vae = BeliefVAE("grid_navi", action_embed_dim=0, reward_embed_dim=8, hidden_dim=16)
    # a decoder whose logit for cell c is c / 10 (ignores z)
    with torch.no_grad():
        for p in vae.decoder.parameters():
            p.zero_()
        vae.decoder.net[-1].bias.copy_(torch.arange(25, dtype=torch.float32) / 10)
    batch = {
        "next_obs": torch.tensor([[[0.0, 1.0]], [[2.0, 3.0]]]),  # cells 1 and 13
        "rewards": torch.tensor([[-0.1], [1.0]]),
    }
    z = torch.zeros(3, 1, 5)
    nll = vae.reward_nll(z, batch)  # [3, 2, 1]
    sig = torch.sigmoid
    expected_j0 = -torch.log(1 - sig(torch.tensor(0.1)))  # no goal at cell 1
    expected_j1 = -torch.log(sig(torch.tensor(1.3)))  # goal at cell 13
    assert nll.shape == (3, 2, 1)
    assert torch.allclose(nll[:, 0, 0], expected_j0.expand(3))
    assert torch.allclose(nll[:, 1, 0], expected_j1.expand(3))


def test_all_cells_targets_decode_the_tasks_reward_in_every_cell_once_per_belief():
    vae = BeliefVAE("grid_navi", action_embed_dim=0, reward_embed_dim=8, hidden_dim=16, cell_targets="all")
    # the target table: task i pays +1 only in its goal cell x * 5 + y
    goals = [5 * x + y for x, y in (t["goal"] for t in vae.family.default_tasks())]
    assert torch.equal(vae.cell_goal, torch.nn.functional.one_hot(torch.tensor(goals), 25).float())
    with torch.no_grad():
        for p in vae.decoder.parameters():
            p.zero_()
        vae.decoder.net[-1].bias.copy_(torch.arange(25, dtype=torch.float32) / 10)
    z = torch.zeros(3, 2, 5)
    nll = vae.all_cells_nll(z, torch.tensor([0, 20]))  # goals (0, 2) = cell 2 and (4, 4) = cell 24
    logit = torch.arange(25, dtype=torch.float32) / 10
    for b, goal in ((0, 2), (1, 24)):
        expected = -torch.log(1 - torch.sigmoid(logit))
        expected[goal] = -torch.log(torch.sigmoid(logit[goal]))
        assert torch.allclose(nll[:, :, b], expected.expand(3, 25))
    # the loss: every belief (prior included) decodes the 25 cells, mean over trials; padding removes beliefs only
    batch = {"actions": torch.zeros(2, 2, dtype=torch.long), "next_obs": torch.zeros(2, 2, 2),
             "rewards": torch.full((2, 2), -0.1), "valid": torch.tensor([[True, True], [True, False]]),
             "task_index": torch.tensor([0, 20])}
    vae.cfg.kl_weight = 0.0
    loss, _ = vae.compute_loss(batch)
    per_trial = nll[0, :, 0].sum() * 3 + nll[0, :, 1].sum() * 2  # trial 1 has 2 beliefs (prior + 1 step)
    assert loss.item() == pytest.approx(per_trial.item() / 2, rel=1e-5)
    # "both": plus the visited transitions' terms (both trials enter cell 0, no goal there: logit 0)
    vae.cfg.cell_targets = "both"
    loss_both, _ = vae.compute_loss(batch)
    visited = -math.log(0.5) * (3 * 2 + 2 * 1)  # 3 beliefs x 2 transitions + 2 beliefs x 1 transition
    assert loss_both.item() == pytest.approx((per_trial.item() + visited) / 2, rel=1e-5)
    # "goal": one categorical over the 25 cells, -log softmax(logits)[goal] per belief; the map sums to 1
    vae.cfg.cell_targets = "goal"
    log_p = torch.log_softmax(logit, -1)
    assert torch.allclose(vae.goal_nll(z, torch.tensor([0, 20])), -torch.stack([log_p[2], log_p[24]]).expand(3, 2))
    loss_goal, _ = vae.compute_loss(batch)
    assert loss_goal.item() == pytest.approx(-(3 * log_p[2] + 2 * log_p[24]).item() / 2, rel=1e-5)
    probs = vae.goal_probabilities(torch.zeros(5))
    assert torch.allclose(probs.flatten(), torch.softmax(logit, -1)) and probs[0, 2] == probs.flatten()[2]


def test_mse_decoder_nll_is_squared_error_for_every_belief_and_transition():
    vae = BeliefVAE("point_robot_sparse", hidden_dim=16)
    assert vae.decoder_kind == "next_obs"
    z = torch.randn(3, 2, 5)
    batch = {"next_obs": torch.randn(2, 2, 2), "rewards": torch.tensor([[0.0, 1.0], [1.0, 0.0]])}
    nll = vae.reward_nll(z, batch)
    t, j, b = 2, 0, 1
    pred = vae.decoder.net(torch.cat([z[t, b], batch["next_obs"][j, b]]))
    assert nll[t, j, b].item() == pytest.approx((pred.item() - 1.0) ** 2, rel=1e-5)


def test_task_parameters_are_the_tasks_one_number_or_goal_angle_and_refuse_what_bins_cannot_tell_apart():
    assert task_parameters([{"velocity": 0.5}, {"velocity": 2.0}]).tolist() == [0.5, 2.0]
    angles = task_parameters([{"goal": [1.0, 0.0]}, {"goal": [0.0, 2.0]}, {"goal": [-1.0, 0.0]}])
    np.testing.assert_allclose(angles, [0.0, math.pi / 2, math.pi])
    assert task_parameters([{"direction": 1}, {"direction": -1}]).tolist() == [1.0, -1.0]
    with pytest.raises(ValueError, match="one number or one 2-D goal"):
        task_parameters([{"body_mass_scale": [1.0, 2.0, 3.0]}])
    with pytest.raises(ValueError, match="one number or one 2-D goal"):
        task_parameters([{"velocity": 1.0, "goal": [0.0, 1.0]}])
    with pytest.raises(ValueError, match="share one parameter value"):
        task_parameters([{"goal": [1, 1]}, {"goal": [2, 2]}])  # two grid cells on one ray
    # bins of [low, high]: values mid-bin, the ends, and past the ends
    assert task_bin(np.array([0.0, 0.05, 0.15, 0.55, 0.95, 1.0, -0.3, 1.3]), 0.0, 1.0, 10).tolist() == [
        0, 0, 1, 5, 9, 9, 0, 9]


def test_task_bins_decoder_decodes_the_bin_of_the_trials_task_once_per_belief():
    """decoder="task_bins": one categorical over equal bins of the task parameter's range over the family's tasks
    (PointRobot: the goal angle), every belief decoding the bin of its trial's task, -log softmax(logits)[bin],
    summed over the trial's beliefs, mean over trials."""
    vae = BeliefVAE("point_robot_sparse", decoder="task_bins", task_bins=20, hidden_dim=16, kl_weight=0.0)
    assert vae.goal_classes == 20
    goals = [t["goal"] for t in vae.family.default_tasks()]
    angles = np.array([math.atan2(y, x) for x, y in goals])
    low, high = angles.min(), angles.max()
    assert vae.bin_range == pytest.approx((low, high))
    scaled = (angles - low) / (high - low) * 20
    inner = (angles > low) & (angles < high)
    assert all(1e-6 < x % 1 < 1 - 1e-6 for x in scaled[inner])  # random angles, none on an edge: no rounding call
    by_hand = [0 if a == low else 19 if a == high else int(x) for a, x in zip(angles, scaled)]
    assert vae.goal_class.tolist() == by_hand
    velocities = BeliefVAE("cheetah_vel", decoder="task_bins", task_bins=4, hidden_dim=8)
    v = np.array([t["velocity"] for t in velocities.family.default_tasks()])
    assert velocities.bin_range == (v.min(), v.max())
    assert np.bincount(velocities.goal_class.numpy()).tolist() == [10, 10, 10, 10]  # 40 velocities, evenly spaced
    logit = torch.arange(20, dtype=torch.float32) / 7
    with torch.no_grad():
        for p in vae.decoder.parameters():
            p.zero_()
        vae.decoder.net[-1].bias.copy_(logit)  # logits independent of the belief
    log_p = torch.log_softmax(logit, -1)
    tasks = torch.tensor([3, 81])
    bins = [by_hand[3], by_hand[81]]
    z = torch.zeros(3, 2, 5)
    assert torch.allclose(vae.goal_nll(z, tasks), -log_p[bins].expand(3, 2))
    batch = {"actions": torch.zeros(2, 2, 2), "next_obs": torch.zeros(2, 2, 2), "rewards": torch.zeros(2, 2),
             "valid": torch.tensor([[True, True], [True, False]]), "task_index": tasks}
    loss, _ = vae.compute_loss(batch)  # trial 0: prior + 2 beliefs; trial 1: prior + 1 belief
    assert loss.item() == pytest.approx(-(3 * log_p[bins[0]] + 2 * log_p[bins[1]]).item() / 2, rel=1e-5)
    goal_map = vae.goal_map(torch.zeros(4, 5))
    assert goal_map.shape == (4, 20) and torch.allclose(goal_map, torch.softmax(logit, -1).expand(4, 20))


def test_posterior_entropy_by_hand():
    assert posterior_entropy(torch.zeros(2)).item() == pytest.approx(math.log(2 * math.pi * math.e))


def test_vae_validates_arguments():
    with pytest.raises(ValueError, match="decoder"):
        BeliefVAE("grid_navi", decoder="pixels")
    with pytest.raises(ValueError, match="grid family"):
        BeliefVAE("point_robot_sparse", decoder="cells")
    with pytest.raises(ValueError, match="kl_weight"):
        BeliefVAE("grid_navi", kl_weight=-1.0)
    with pytest.raises(ValueError, match="cell_targets"):
        BeliefVAE("grid_navi", cell_targets="some")
    with pytest.raises(ValueError, match="cell_targets='all' needs"):
        BeliefVAE("point_robot_sparse", cell_targets="all")
    with pytest.raises(ValueError, match="share one parameter value"):
        BeliefVAE("grid_navi", decoder="task_bins")
    with pytest.raises(ValueError, match="one number or one 2-D goal"):
        BeliefVAE("walker_params", decoder="task_bins")
    with pytest.raises(ValueError, match="task_bins must be >= 2"):
        BeliefVAE("point_robot_sparse", decoder="task_bins", task_bins=1)
    with pytest.raises(ValueError, match="elbo_subsample must be >= 1"):
        BeliefVAE("cheetah_vel", elbo_subsample=0)
    with pytest.raises(ValueError, match="decode_subsample subsamples the trial's transitions"):
        BeliefVAE("point_robot_sparse", decoder="task_bins", decode_subsample=10)
    with pytest.raises(ValueError, match="decode_subsample subsamples the trial's transitions"):
        BeliefVAE("grid_navi", cell_targets="all", decode_subsample=10)
    with pytest.raises(ValueError, match="goal_classes needs"):
        _ = BeliefVAE("point_robot_sparse").goal_classes


# --- encoder: one recurrence ---------------------------------------------------------------------------------------
def test_grid_one_hot_state_embedding_reads_the_cells_column():
    enc = BeliefEncoder(2, 5, True, 8, 0, 0, hidden_dim=16, latent_dim=3, grid_size=5)
    out = enc.embed(torch.zeros(2, dtype=torch.long), torch.tensor([[2.0, 3.0], [0.0, 1.0]]), torch.zeros(2))
    lin = enc.embed_state[0]
    assert torch.allclose(out, torch.relu(lin.weight[:, [13, 1]].T + lin.bias))  # cells 2 * 5 + 3 and 0 * 5 + 1
    with pytest.raises(ValueError, match="grid_size"):
        BeliefEncoder(3, 5, True, 8, 0, 0, grid_size=5)
    with pytest.raises(ValueError, match="state_one_hot"):
        BeliefVAE("point_robot_sparse", state_one_hot=True)
    vae = BeliefVAE("grid_navi", action_embed_dim=0, reward_embed_dim=8, hidden_dim=16, state_one_hot=True)
    assert vae.encoder.grid_size == 5 and vae.encoder.embed_state[0].in_features == 25


def test_max_aggregator_is_the_running_max_of_the_features():
    torch.manual_seed(0)
    enc = BeliefEncoder(2, 5, True, 8, 0, 4, hidden_dim=16, latent_dim=3, aggregator="max")
    actions, next_obs, rewards = torch.zeros(4, 1, dtype=torch.long), torch.randn(4, 1, 2), torch.randn(4, 1)
    feats = enc.features(enc.embed(actions, next_obs, rewards))[:, 0]  # [4, 16]
    mu, _ = enc(actions, next_obs, rewards)
    expected = [torch.zeros(16)] + [feats[: t + 1].max(0).values for t in range(4)]
    assert torch.allclose(mu[:, 0], enc.head_mu(torch.stack(expected)), atol=1e-6)
    # the order of the transitions does not matter for the last belief
    mu_rev, _ = enc(actions.flip(0), next_obs.flip(0), rewards.flip(0))
    assert torch.allclose(mu_rev[-1], mu[-1], atol=1e-6)
    with pytest.raises(ValueError, match="aggregator"):
        BeliefEncoder(2, 5, True, 8, 0, 4, aggregator="mean")


def test_sum_aggregator_is_the_running_sum_of_signed_evidence():
    """aggregator="sum": h_t = sum of e(x_j), j <= t, with e = Linear -> ReLU -> Linear (values of either sign);
    the last belief does not depend on the order of the transitions."""
    torch.manual_seed(0)
    enc = BeliefEncoder(2, 2, False, 8, 4, 4, hidden_dim=16, latent_dim=3, aggregator="sum")
    actions, next_obs, rewards = torch.randn(5, 1, 2), torch.randn(5, 1, 2), torch.randn(5, 1)
    x = enc.embed(actions, next_obs, rewards)[:, 0]  # [5, 16]
    first, last = enc.features[0], enc.features[2]
    evidence = torch.relu(x @ first.weight.T + first.bias) @ last.weight.T + last.bias  # by hand
    assert (evidence < 0).any()
    mu, _ = enc(actions, next_obs, rewards)
    expected = [torch.zeros(16)] + [evidence[: t + 1].sum(0) for t in range(5)]
    assert torch.allclose(mu[:, 0], enc.head_mu(torch.stack(expected)), atol=1e-5)
    mu_rev, _ = enc(actions.flip(0), next_obs.flip(0), rewards.flip(0))
    assert torch.allclose(mu_rev[-1], mu[-1], atol=1e-5)



@pytest.mark.parametrize(("grid_size", "aggregator"), [(0, "gru"), (5, "gru"), (0, "max"), (5, "max"), (0, "sum")])
def test_sequence_encoding_equals_online_steps_and_padding_keeps_the_belief(grid_size, aggregator):
    torch.manual_seed(0)
    enc = BeliefEncoder(2, 5, True, 8, 4, 4, hidden_dim=16, latent_dim=3, grid_size=grid_size, aggregator=aggregator)
    actions = torch.randint(0, 5, (6, 2))
    next_obs = torch.randint(0, 5, (6, 2, 2)).float() if grid_size else torch.randn(6, 2, 2)
    rewards = torch.randn(6, 2)
    mu, logvar = enc(actions, next_obs, rewards)
    h = enc.initial_state(2)
    for t in range(6):
        h = enc.step(h, actions[t], next_obs[t], rewards[t])
        m, lv = enc.belief(h)
        assert torch.allclose(m, mu[t + 1], atol=1e-6) and torch.allclose(lv, logvar[t + 1], atol=1e-6)
    # padding at steps 2 and 3 of trial 1: its beliefs there repeat the previous one, later beliefs equal
    # the encoding of the trial without the padding
    valid = torch.ones(6, 2, dtype=torch.bool)
    valid[2:4, 1] = False
    mu_m, _ = enc(actions, next_obs, rewards, valid)
    assert torch.allclose(mu_m[:, 0], mu[:, 0], atol=1e-6)
    assert torch.allclose(mu_m[3, 1], mu_m[2, 1]) and torch.allclose(mu_m[4, 1], mu_m[2, 1])
    keep = torch.tensor([0, 1, 4, 5])
    mu_c, _ = enc(actions[keep, 1:], next_obs[keep, 1:], rewards[keep, 1:])
    assert torch.allclose(mu_m[[0, 1, 2, 5, 6], 1], mu_c[:, 0], atol=1e-6)


# --- DQN -------------------------------------------------------------------------------------------------------------
def test_dqn_target_by_hand_and_goal_is_not_terminal():
    rewards = torch.tensor([1.0, -0.1])
    terminals = torch.tensor([0.0, 1.0])
    next_q = torch.tensor([[1.0, 3.0], [5.0, 2.0]])
    y = dqn_target(rewards, terminals, next_q, gamma=0.9)
    assert y.tolist() == pytest.approx([1.0 + 0.9 * 3.0, -0.1])
    # double DQN: the online net picks action 0 for row 0, evaluated by the target net
    y2 = dqn_target(rewards, terminals, next_q, 0.9, next_q_online=torch.tensor([[9.0, 0.0], [0.0, 9.0]]))
    assert y2.tolist() == pytest.approx([1.0 + 0.9 * 1.0, -0.1])


def test_cql_discrete_penalty_by_hand():
    q = torch.tensor([[0.0, math.log(3.0)]])
    # logsumexp = log(1 + 3) = log 4; data action 0 -> log 4 - 0
    assert cql_discrete_penalty(q, torch.tensor([0])).item() == pytest.approx(math.log(4.0))


def test_dqn_loss_and_soft_update_by_hand():
    dqn = HyperStateDQN(3, 2, hidden=(4,), gamma=0.5, tau=0.25, cql_alpha=0.1)
    batch = {
        "obs": torch.randn(5, 3),
        "actions": torch.randint(0, 2, (5,)),
        "rewards": torch.randn(5),
        "next_obs": torch.randn(5, 3),
        "terminals": torch.tensor([0.0, 0, 1, 0, 0]),
    }
    loss, metrics = dqn.loss(batch)
    q = dqn.q(batch["obs"]).gather(1, batch["actions"][:, None]).squeeze(1)
    y = batch["rewards"] + 0.5 * (1 - batch["terminals"]) * dqn.q_target(batch["next_obs"]).max(1).values
    expected = ((q - y) ** 2).mean() + 0.1 * cql_discrete_penalty(dqn.q(batch["obs"]), batch["actions"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    before = [p.clone() for p in dqn.q_target.parameters()]
    with torch.no_grad():
        for p in dqn.q.parameters():
            p.add_(1.0)
    polyak_update(dqn.q_target.parameters(), dqn.q.parameters(), 0.25)
    for b, t, o in zip(before, dqn.q_target.parameters(), dqn.q.parameters()):
        assert torch.allclose(t, 0.75 * b + 0.25 * o)


def test_grid_cell_one_hot_by_hand_and_the_dqn_reads_it():
    cells = torch.tensor([[2.0, 3.0], [0.0, 1.0], [4.2, -0.3]])  # off-grid coordinates round and clamp onto it
    hot = grid_cell_one_hot(cells, 5)
    assert hot.shape == (3, 25) and hot.sum(-1).tolist() == [1.0, 1.0, 1.0]
    assert hot.argmax(-1).tolist() == [13, 1, 20]
    x = torch.cat([cells, torch.randn(3, 4)], dim=-1)
    assert torch.equal(GridCellOneHot(5)(x), torch.cat([hot, x[:, 2:]], dim=-1))
    # the Q-network is an MLP over (one-hot cell, rest of the hyper-state); target starts equal to online
    torch.manual_seed(0)
    dqn = HyperStateDQN(6, 5, hidden=(8,), grid_size=5)
    first = dqn.q[1][0]
    assert first.in_features == 25 + 4
    expected = dqn.q[1](torch.cat([hot, x[:, 2:]], dim=-1))
    assert torch.allclose(dqn.q(x), expected) and torch.allclose(dqn.q_target(x), expected)
    # two hyper-states that differ only in the cell differ in exactly the cells' first-layer columns
    assert torch.allclose(
        first(torch.cat([hot, x[:, 2:]], -1))[0] - first(torch.cat([hot, x[:, 2:]], -1))[1],
        first.weight[:, 13] - first.weight[:, 1] + first.weight[:, 25:] @ (x[0, 2:] - x[1, 2:]),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="grid_size"):
        HyperStateDQN(6, 5, grid_size=-1)
    with pytest.raises(ValueError, match="grid_size"):
        GridCellOneHot(0)


# --- SAC -------------------------------------------------------------------------------------------------------------
def test_cql_uniform_penalty_by_hand():
    q_random = torch.tensor([[0.0], [math.log(3.0)]])  # K=2 uniform actions, B=1
    d = 2
    # logsumexp(q + d log 2) - log 2 - q_data = log(4 * 4) - log 2 - 1
    val = cql_uniform_penalty(q_random, torch.tensor([1.0]), d)
    assert val.item() == pytest.approx(math.log(16.0) - math.log(2.0) - 1.0)


def test_sac_update_steps_critics_then_actor_and_moves_targets_by_tau():
    from lit_offmeta.algorithms.borel.sac import HyperStateSAC

    torch.manual_seed(0)
    sac = HyperStateSAC(4, 2, hidden=(8,), tau=0.5, cql_alpha=0.5, cql_samples=3)
    batch = {
        "obs": torch.randn(6, 4),
        "actions": torch.rand(6, 2) * 2 - 1,
        "rewards": torch.randn(6),
        "next_obs": torch.randn(6, 4),
        "terminals": torch.zeros(6),
    }
    critic_before = [p.clone() for p in sac.critics.parameters()]
    target_before = [p.clone() for p in sac.critics_target.parameters()]
    actor_before = [p.clone() for p in sac.actor.parameters()]
    metrics = sac.update(batch, sac.configure_optimizers(), lambda loss: loss.backward())
    assert {"loss_critic", "loss_actor", "cql_penalty", "entropy"} <= set(metrics)
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, sac.critics.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, sac.actor.parameters()))
    for t0, t1, c in zip(target_before, sac.critics_target.parameters(), sac.critics.parameters()):
        assert torch.allclose(t1, 0.5 * t0 + 0.5 * c, atol=1e-6)
    assert all(p.requires_grad for p in sac.critics.parameters())  # re-enabled after the actor step


def test_sac_acts_with_the_squashed_mean_or_a_policy_draw():
    from lit_offmeta.algorithms.borel.sac import HyperStateSAC

    torch.manual_seed(0)
    sac = HyperStateSAC(3, 2, hidden=(8,))
    states = torch.randn(4, 3)
    mean, _ = sac.actor(states)
    torch.testing.assert_close(sac.act(states), torch.tanh(mean))  # the evaluation protocol: the mean action
    torch.manual_seed(1)
    drawn = sac.act(states, deterministic=False)
    torch.manual_seed(1)
    torch.testing.assert_close(drawn, sac.actor.sample(states)[0])
    assert drawn.abs().max() < 1 and not torch.allclose(drawn, torch.tanh(mean))
