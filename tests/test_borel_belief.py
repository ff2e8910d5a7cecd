"""The trained belief concentrates on the true goal as evidence arrives (GridNavi)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_offmeta.algorithms.borel.vae import BeliefVAE, posterior_entropy
from lit_offmeta.datamodules.trajectory import TrialDataModule


@pytest.mark.slow
def test_gridnavi_belief_sharpens_on_the_true_goal():
    """After 600 VAE updates on relabelled scripted data, searched cells lose belief, walking onto the goal makes
    the decoded reward map put its mass on that cell, and the posterior entropy falls below the prior's."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    dm = TrialDataModule("grid_navi", split="all", scripted_trials_per_task=20, mix_prob=0.5, seed=0)
    dm.setup("fit")
    vae = BeliefVAE("grid_navi", action_embed_dim=0, reward_embed_dim=8, hidden_dim=64, lr=3e-3)
    opt = vae.configure_optimizers()
    rng = np.random.default_rng(0)
    for _ in range(600):
        loss, _ = vae.compute_loss(dm.sample_batch(rng))
        opt.zero_grad()
        loss.backward()
        opt.step()

    goal = (3, 4)
    # search path along the bottom row, then up to the goal, then stay: (a, s', r) per step
    path = [(1, 0), (2, 0), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4), (3, 4)]
    next_obs = torch.tensor(path, dtype=torch.float32)[:, None]
    rewards = torch.tensor([1.0 if p == goal else -0.1 for p in path])[:, None]
    actions = torch.zeros(len(path), 1, dtype=torch.long)  # GridNavi's encoder ignores actions (embedding 0)
    with torch.no_grad():
        mu, logvar = vae.encoder(actions, next_obs, rewards)
        probs = vae.goal_probabilities(mu[:, 0])  # [T + 1, 5, 5]
    share = probs / probs.sum(dim=(-2, -1), keepdim=True)  # the decoded map as a distribution over goal cells
    prior, searched, found = share[0], share[3], share[-1]
    # cells already searched without reward lose probability
    assert searched[1, 0] < prior[1, 0] and searched[2, 0] < prior[2, 0] and searched[3, 0] < prior[3, 0]
    # once the goal is found, its share of the belief at least doubles and its decoded probability is high
    assert found[goal] > 2 * prior[goal]
    assert probs[-1][goal] > 0.5
    entropy = posterior_entropy(logvar[:, 0])
    assert entropy[-1] < entropy[0]
