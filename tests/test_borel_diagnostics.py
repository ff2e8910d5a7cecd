"""The exact-posterior diagnostic of offline VariBAD on GridNavi (lit_offmeta.algorithms.borel.diagnostics)."""

from __future__ import annotations

import numpy as np
import torch

from lit_offmeta.algorithms.borel.behaviour import scripted_trials
from lit_offmeta.algorithms.borel.diagnostics import exact_hyperstates, exact_posterior_update, exact_prior
from lit_offmeta.algorithms.borel.hyperstates import relabel_states
from lit_offmeta.nn.belief import BeliefEncoder
from lit_offmeta.tasks import get_family


def test_exact_posterior_by_hand():
    prior = exact_prior()
    assert np.isclose(prior.sum(), 1.0) and (prior > 0).sum() == 21 and prior[0] == 0.0  # (0, 0) is no goal cell
    after_miss = exact_posterior_update(prior, 2 * 5 + 0, -0.1)  # entered (2, 0): no goal there
    assert after_miss[10] == 0.0 and np.allclose(after_miss[after_miss > 0], 1 / 20)
    found = exact_posterior_update(after_miss, 2 * 5 + 3, 1.0)
    assert found[13] == 1.0 and found.sum() == 1.0
    assert np.array_equal(exact_posterior_update(found, 0, -0.1), found)  # a miss elsewhere keeps a found goal


def test_exact_hyperstates_share_the_pipelines_transitions_and_successors():
    trials = scripted_trials(get_family("grid_navi"), [0, 11], trials_per_task=2, episodes_per_trial=4, seed=0)
    exact = exact_hyperstates(trials, episode_time=True)
    torch.manual_seed(0)
    learned = relabel_states(BeliefEncoder(2, 5, True, 8, 0, 4, hidden_dim=16, latent_dim=3), trials,
                             episode_time=True)
    # relabel_states is time-major, exact_hyperstates trial-major: compare as sorted sets of (s, a, r, s', t)
    def key(h):
        cols = [h.obs[:, :2], h.actions[:, None].float(), h.rewards[:, None], h.next_obs[:, :2], h.obs[:, -1:],
                h.next_obs[:, -1:]]
        rows = torch.cat(cols, 1).tolist()
        return sorted(map(tuple, rows))
    assert key(exact) == key(learned)
    # the belief part, time-major [60 steps, 4 trials]: the loop of exact_posterior_update (the online update)
    beliefs = exact.obs.reshape(60, 4, -1)[..., 2:27].numpy()
    cells = (trials.flat("next_obs")[..., 0] * 5 + trials.flat("next_obs")[..., 1]).astype(int)
    for i in range(4):
        b = exact_prior()
        for t in range(60):
            assert np.allclose(beliefs[t, i], b, atol=1e-6)
            b = exact_posterior_update(b, cells[i, t], trials.flat("rewards")[i, t])
    paid = exact.rewards > 0
    assert paid.any() and torch.allclose(exact.next_obs[paid, 2:27].max(1).values, torch.ones(int(paid.sum())))
