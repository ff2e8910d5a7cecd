"""The diagnostics of offline VariBAD (lit_offmeta.algorithms.borel.diagnostics): GridNavi's exact posterior,
PointRobot's goal-found split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_offmeta.algorithms.borel.behaviour import scripted_trials
from lit_offmeta.algorithms.borel.diagnostics.grid import (
    exact_hyperstates,
    exact_posterior_update,
    exact_prior,
    search_coverage,
)
from lit_offmeta.algorithms.borel.hyperstates import relabel_states
from lit_offmeta.data.relabel import TrialArrays, trials_from_episodes
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


def test_train_vae_then_belief_error_vae_without_an_rl_stage(tmp_path, monkeypatch, capsys):
    """``train-vae`` writes its settings with the weights, ``belief-error --vae`` scores that file on the config's
    relabelled RL trials; scripted trials stand in for a collected data folder."""
    import json

    from lit_offmeta.algorithms.borel.diagnostics import cli, grid
    from lit_offmeta.datamodules import trajectory

    family = get_family("grid_navi")
    pool = scripted_trials(family, list(range(21)), trials_per_task=2, episodes_per_trial=4, seed=0)
    monkeypatch.setattr(trajectory, "load_trials_from_storage", lambda *args, **kwargs: pool)
    out = tmp_path / "vae.pt"
    settings = '{"hidden_dim": 16, "latent_dim": 3, "kl_weight": 0.0}'
    cli.main(["train-vae", "--data", "x", "--mix-prob", "1.0", "--steps", "2", "--vae", settings,
              "--batch", '{"tasks_per_batch": 2, "trials_per_task": 2}', "--out", str(out)])
    vae = grid.load_vae(str(out))
    assert (vae.encoder.hidden_dim, vae.encoder.latent_dim, vae.cfg.kl_weight) == (16, 3, 0.0)
    assert vae.cfg.lr == 3e-3 and vae.cfg.reward_embed_dim == 8  # the rest are the config's settings
    saved = torch.load(out, weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in vae.state_dict().items())

    # A decoder with constant logits 0 decodes p = 0.5 on every cell: the normalised map is uniform over the 25
    # cells, so with k goal cells searched the total variation to the exact posterior is (4 + k) / 25 and the mass
    # on searched cells k / 25 (4 = the cells that are never a goal): TV - searched mass = 4 / 25 at every step.
    last = vae.decoder.net[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    torch.save({"settings": torch.load(out, weights_only=True)["settings"], "state_dict": vae.state_dict()}, out)
    capsys.readouterr()
    cli.main(["belief-error", "--vae", str(out), "--data", "x", "--every", "50"])
    report = json.loads(capsys.readouterr().out)
    assert report["rl_data"] == "relabelled" and report["hyperstates"] == 21 * 400 // 50 * 60
    assert report["p_searched_goal_cells"] == report["p_unsearched_goal_cells"] == 0.5
    assert report["tv_not_found_at_step"]["0"] == 0.16 and report["searched_mass_at_step"]["0"] == 0.0
    for k, tv in report["tv_not_found_at_step"].items():
        assert abs(tv - report["searched_mass_at_step"][k] - 0.16) < 2e-3
    assert report["searched_mass_at_step"]["59"] > 0.1  # the scripted paths do search
    assert set(report["posterior_std_at_step"]) == set(report["tv_not_found_at_step"])
    # --sweeps: fresh stitched searches (novelty 1), 2 per goal, scored the same way; they search further
    cli.main(["belief-error", "--vae", str(out), "--data", "x", "--sweeps", "2"])
    sweeps = json.loads(capsys.readouterr().out)
    assert sweeps["rl_data"] == "sweeps" and sweeps["hyperstates"] == 21 * 2 * 60
    for k, tv in sweeps["tv_not_found_at_step"].items():
        assert abs(tv - sweeps["searched_mass_at_step"][k] - 0.16) < 2e-3
    assert sweeps["searched_mass_at_step"]["14"] > report["searched_mass_at_step"]["14"]
    with pytest.raises(SystemExit, match="one of --on-policy and --sweeps"):
        cli.main(["belief-error", "--ckpt", "c.ckpt", "--data", "x", "--on-policy", "--sweeps", "1"])

    # belief-probe on the same file and trials: a readout of the belief, scored on held-out trials (rows lined up
    # with their trials by relabelled_row_trials)
    cli.main(["belief-probe", "--vae", str(out), "--data", "x", "--every", "50", "--steps", "5"])
    probe = json.loads(capsys.readouterr().out)
    assert probe["input"] == "belief" and probe["features"] == 2 * 3  # (mu, logvar) of a 3-dim latent
    assert 0.0 < probe["probe_tv_not_found"] < 1.0 and "0" in probe["probe_tv_not_found_at_step"]


def test_fit_probe_reads_out_a_representation_that_holds_the_posterior():
    """The probe fitted on features that ARE the exact posterior (plus noise columns) gives it back on held-out
    rows; on features without the searched set (the state only) it cannot."""
    from lit_offmeta.algorithms.borel.diagnostics.grid import fit_probe

    trials = scripted_trials(get_family("grid_navi"), list(range(21)), trials_per_task=3, episodes_per_trial=4, seed=0)
    exact = exact_hyperstates(trials, episode_time=False)
    post = exact.obs[:, 2:27]
    held_out = torch.arange(len(post)) % 5 == 0
    noise = torch.randn(len(post), 3, generator=torch.Generator().manual_seed(0))
    for features, bound in ((torch.cat([post, noise], 1), 0.1), (exact.obs[:, :2], None)):
        probe = fit_probe(features, post, ~held_out, steps=1500)
        tv = 0.5 * (probe - post).abs().sum(-1)[held_out & (post.max(-1).values < 0.999)].mean()
        assert tv < bound if bound else tv > 0.2


def test_policy_trials_are_the_policys_own_rollouts_and_feed_belief_error():
    """``belief-error --on-policy``: one recorded trial per goal of the checkpoint's policy, starting at the start
    cell, rewards as the rollout paid them, scored like the RL trials."""
    import pytest

    from lit_offmeta.algorithms.borel.diagnostics import cli, common, grid
    from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD, evaluate_trials

    torch.manual_seed(0)
    model = OfflineVariBAD("grid_navi", vae_steps=1, rl_steps=0, rl_belief_input="decoded", episode_time=True,
                           vae={"decoder": "cells", "hidden_dim": 8, "latent_dim": 3, "action_embed_dim": 0})
    trials = common.policy_trials(model)
    family = model.family
    assert trials.num_trials == 21 and trials.episodes_per_trial == 4
    assert (trials.obs[:, :, 0] == 0).all()  # every episode from the start cell
    reference = evaluate_trials(model.adapt(), family, family.default_tasks(), 4, seed=model.hparams.seed)
    np.testing.assert_allclose(trials.rewards.sum(-1), reference.returns, rtol=1e-6)
    report = grid.belief_error_report(model.vae, trials)
    assert report["hyperstates"] == 21 * 60 and 0.0 <= report["tv_not_found"] <= 1.0
    with pytest.raises(SystemExit, match="--on-policy needs --ckpt"):
        cli.main(["belief-error", "--vae", "v.pt", "--data", "x", "--on-policy"])

    # a subset of tasks keeps their indices, with the rollout seed given
    subset = common.policy_trials(model, [3, 7], seed=5)
    assert subset.num_trials == 2 and subset.task_index.tolist() == [3, 7]
    reference = evaluate_trials(model.adapt(), family, [family.default_tasks()[i] for i in (3, 7)], 4, seed=5)
    np.testing.assert_allclose(subset.rewards.sum(-1), reference.returns, rtol=1e-6)


def test_exact_eval_runs_the_agent_on_both_beliefs_and_refuses_unnormalised_maps():
    import pytest

    from lit_offmeta.algorithms.borel.diagnostics import grid
    from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD, evaluate_trials, summarise

    torch.manual_seed(0)
    vae = {"decoder": "cells", "cell_targets": "goal", "hidden_dim": 8, "latent_dim": 3, "action_embed_dim": 0}
    model = OfflineVariBAD("grid_navi", vae_steps=1, rl_steps=0, rl_belief_input="decoded", episode_time=True, vae=vae)
    report = grid.exact_eval_report(model)
    family = model.family
    assert report["learned_belief"] == summarise(evaluate_trials(model.adapt(), family, family.default_tasks(), 4))
    # the exact posterior as input: the same agent acting on the exact belief of exact-rl
    exact = grid.ExactBeliefPolicy(model.agent, family.horizon, episode_time=True)
    assert report["exact_belief"] == summarise(evaluate_trials(exact, family, family.default_tasks(), 4))
    visited = OfflineVariBAD("grid_navi", vae_steps=1, rl_steps=0, rl_belief_input="decoded",
                             vae={**vae, "cell_targets": "visited"})
    with pytest.raises(SystemExit, match="normalised goal map"):
        grid.exact_eval_report(visited)


def _grid_episode(cells: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """A 15-step GridNavi episode from (0, 0) entering ``cells`` in order, then staying on the last one."""
    path = [(0, 0), *cells] + [cells[-1]] * (15 - len(cells))
    return {"observations": np.asarray(path, np.float32), "actions": np.zeros(15, np.int64),
            "rewards": np.full(15, -0.1, np.float32), "terminations": np.zeros(15, bool),
            "truncations": np.eye(15, dtype=bool)[-1]}


def test_search_coverage_counts_distinct_cells_by_hand():
    family = get_family("grid_navi")
    row = [(1, 0), (2, 0), (3, 0), (4, 0)]  # 4 cells
    snake = row + [(4, 1), (3, 1), (2, 1), (1, 1), (0, 1), (0, 2), (1, 2)]  # 11 cells
    back_and_forth = [(1, 0), (0, 0), (1, 0), (0, 0)]  # 2 distinct cells: (1, 0) and the start (0, 0)
    episodes = [_grid_episode(c) for c in (row, snake, back_and_forth, row)]
    metadata = [{"trial_index": 0, "episode_in_trial": e} for e in range(4)]
    trials = trials_from_episodes(0, family.default_tasks()[0], episodes, metadata, 4, family.horizon)
    report = search_coverage(trials)
    assert report["episodes"] == 4
    assert report["cells_per_episode"] == round((4 + 11 + 2 + 4) / 4, 2)
    assert report["cells_per_trial"] == 12  # the snake's 11 cells and (0, 0)
    assert report["episodes_with_8_or_more"] == 0.25 and report["episodes_with_12_or_more"] == 0.0


def _point_episode(positions: list[tuple[float, float]]) -> dict[str, np.ndarray]:
    """A 60-step sparse-PointRobot episode from the origin whose next positions are ``positions``."""
    assert len(positions) == 60
    return {"observations": np.asarray([(0.0, 0.0), *positions], np.float32),
            "actions": np.zeros((60, 2), np.float32), "rewards": np.zeros(60, np.float32),
            "terminations": np.zeros(60, bool), "truncations": np.eye(60, dtype=bool)[-1]}


def test_arc_coverage_measures_the_span_of_the_upper_goal_arc_each_episode_sweeps():
    """``coverage --family point_robot_sparse``: per episode the degrees of the upper unit semicircle its positions
    span within the goal radius; positions below the x axis (where the angle wraps) and off the circle do not count."""
    from lit_offmeta.algorithms.borel.diagnostics.point import arc_coverage, arc_spans

    def at(degrees, radius=1.0):
        return (radius * np.cos(np.radians(degrees)), radius * np.sin(np.radians(degrees)))

    family = get_family("point_robot_sparse")
    sweep = [at(d) for d in np.linspace(10.0, 160.0, 60)]  # 150 degrees along the arc
    episodes = [
        _point_episode(sweep),
        _point_episode([at(80.0, 0.5)] * 20 + [at(60.0)] * 20 + [at(110.0, 1.1)] * 20),  # 60 -> 110: 50 degrees
        _point_episode([at(-170.0)] * 30 + [at(170.0)] * 30),  # below the axis left out: one angle, 0 degrees
        _point_episode([(0.0, 0.0)] * 60),  # never near the arc
    ]
    metadata = [{"trial_index": k // 2, "episode_in_trial": k % 2} for k in range(4)]
    trials = trials_from_episodes(0, {"goal": [1.0, 0.0]}, episodes, metadata, 2, family.horizon)
    np.testing.assert_allclose(arc_spans(trials), [150.0, 50.0, 0.0, np.nan], atol=0.11)  # arc_reach rounds to 0.1
    report = arc_coverage(trials)
    assert report["episodes"] == 4 and report["reach_the_arc"] == 0.75  # the one-point 170-degree episode reaches it
    assert report["span_45_or_more"] == 0.5 and report["span_90_or_more"] == 0.25
    assert report["span_140_or_more"] == 0.25 and report["span_median"] == 25.0


def test_brief_touches_counts_paid_steps_of_other_goals_by_hand():
    """``touches``: per (episode, task) pair, the steps the family's reward pays under that task; brief = 1-3 paid
    steps and the episode ending more than 0.4 from the goal."""
    from lit_offmeta.algorithms.borel.diagnostics.point import brief_touches

    family = get_family("point_robot_sparse")
    a, b = {"goal": [1.0, 0.0]}, {"goal": [0.0, 1.0]}
    far = (-1.0, 0.0)  # 2 from a, 1.41 from b
    episodes = [
        _point_episode([(1.0, 0.0)] + [far] * 59),  # a: 1 paid step, then far away -> brief
        _point_episode([(0.0, 1.0)] * 60),  # b: 60 paid steps -> touched, not brief
        _point_episode([far] * 30 + [(0.0, 0.95)] * 3 + [(0.0, 0.0)] * 27),  # b: 3 steps from step 30, ends 1.0 away
        _point_episode([(1.0, 0.1)] * 4 + [far] * 56),  # a: 4 paid steps -> not brief
    ]
    metadata = [{"trial_index": k // 2, "episode_in_trial": k % 2} for k in range(4)]
    trials = trials_from_episodes(0, a, episodes, metadata, 2, family.horizon)
    report = brief_touches(family, trials, [a, b])
    assert report["episodes"] == 4 and report["tasks"] == 2
    assert report["pairs_touched"] == 0.5  # 4 of the 8 (episode, task) pairs
    assert report["pairs_touched_briefly"] == 0.25 and report["brief_touches_per_episode"] == 0.5
    assert report["episodes_with_a_brief_touch"] == 0.5
    assert report["first_paid_step_of_brief_touches_quartiles"] == [7.5, 15.0, 22.5]  # of steps 0 and 30
    assert brief_touches(family, trials, [a, b], brief=4)["pairs_touched_briefly"] == 0.375  # episode 4 joins
    with pytest.raises(ValueError, match="brief >= 1"):
        brief_touches(family, trials, [a, b], brief=0)
    with pytest.raises(ValueError, match="point_robot_sparse"):
        brief_touches(get_family("point_robot"), trials, [a, b])


def test_second_search_rates_count_paying_second_episodes_by_hand():
    """``second-search``: episode 2's paying rate after a paid and after a missed episode 1, overall and at the goals
    near the arc's ends; an episode pays when a valid step has a positive reward."""
    from lit_offmeta.algorithms.borel.diagnostics.point import second_search_rates

    family = get_family("point_robot_sparse")
    end, middle = {"goal": [1.0, 0.0]}, {"goal": [0.0, 1.0]}  # 0 and 90 degrees
    still = _point_episode([(0.0, 0.0)] * 60)
    meta = [{"trial_index": k // 2, "episode_in_trial": k % 2} for k in range(6)]
    trials = TrialArrays.concatenate([trials_from_episodes(0, end, [still] * 4, meta[:4], 2, family.horizon),
                                      trials_from_episodes(1, middle, [still] * 6, meta, 2, family.horizon)])
    # (episode 1, episode 2) paid: end (yes, yes), (no, yes); middle (no, no), (no, yes), (yes, no)
    for n, e in [(0, 0), (0, 1), (1, 1), (3, 1), (4, 0)]:
        trials.rewards[n, e, 10] = 1.0
    trials.valid[2, 1, 20:] = False
    trials.rewards[2, 1, 30] = 1.0  # past the episode's end: does not pay
    report = second_search_rates(trials)
    assert report == {"trials": 5, "ep1_paid": 0.4, "ep2_paid_after_ep1_paid": 0.5,
                      "ep2_paid_after_ep1_missed": round(2 / 3, 3), "ends_trials": 2,
                      "ends_ep2_paid_after_ep1_missed": 1.0, "middle_ep2_paid_after_ep1_missed": 0.5}
    assert second_search_rates(trials, end_degrees=91.0)["ends_trials"] == 5  # every goal is then "near an end"
    with pytest.raises(ValueError, match="2-episode trials"):
        second_search_rates(trials_from_episodes(0, end, [still] * 3, [{"trial_index": 0, "episode_in_trial": k}
                                                                        for k in range(3)], 3, family.horizon))


def test_goal_found_splits_episode_two_by_whether_the_belief_locates_the_goal():
    """``goal-found``: with a reward decoder that peaks at the first held-out goal whatever the belief, exactly the
    goals within the goal radius of it count as located, and the episode-2 split adds up to the rollout's."""
    import pytest
    from torch import nn

    from lit_offmeta.algorithms.borel.diagnostics import common, point
    from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD, evaluate_trials
    from lit_offmeta.tasks.point_robot import GOAL_RADIUS

    torch.manual_seed(0)
    model = OfflineVariBAD("point_robot_sparse", vae_steps=1, rl_steps=0, rl={"hidden": [8]},
                           vae={"hidden_dim": 8, "latent_dim": 2, "decoder_hidden": [8]})
    family = model.family
    tasks = [family.default_tasks()[i] for i in family.split().test]
    goals = np.array([t["goal"] for t in tasks])
    peak = torch.as_tensor(goals[0], dtype=torch.float32)

    class PeakAtFirstGoal(nn.Module):
        def forward(self, z, x):
            return -(x - peak).norm(dim=-1) + 0.0 * z.sum(-1)

    model.vae.decoder = PeakAtFirstGoal()
    report = point.goal_found_report(model)
    located = np.linalg.norm(goals - goals[0], axis=-1) <= GOAL_RADIUS
    assert report["tasks"] == len(tasks) and report["located"] == round(float(located.mean()), 3)
    reference = evaluate_trials(model.adapt(), family, tasks, 2, seed=model.hparams.seed, record=True)
    found, second = reference.success[:, 0], reference.success[:, 1]
    assert report["success_ep2"] == round(float(second.mean()), 3)
    expected_not_located = round(float(second[~located].mean()), 3) if (~located).any() else None
    assert report["ep2_success_if_not_located"] == expected_not_located
    assert report["ep2_success_if_located"] == round(float(second[located].mean()), 3)
    assert report["found_in_ep1_but_not_located"] == int((found & ~located).sum())
    for key, where in (("ep2_success_if_found", found), ("ep2_success_if_not_found", ~found)):
        assert report[key] == (round(float(second[where].mean()), 3) if where.any() else None)
    rewarded = np.array([int((ep[0]["rewards"] > 0).sum()) for ep in reference.episodes])
    assert report["ep1_rewarded_steps_if_found_not_located"] == rewarded[found & ~located].tolist()
    assert report["decoded_peak_mean"] > -0.01  # the arc passes through the peak: max of -|x - g0| is ~0
    angles = np.degrees(np.arctan2(goals[:, 1], goals[:, 0]))
    assert report["ep1_missed_goal_angles"] == sorted(round(float(a), 1) for a in angles[~found])
    assert report["ep1_arc_reach"] == point.arc_reach([ep[0] for ep in reference.episodes])
    # the decoder ignores the belief, so every missed goal's belief peaks at the arc point nearest the first goal,
    # and the belief's searched / unsearched split is the prior's
    nearest = round(float(np.degrees(np.arctan2(goals[0][1], goals[0][0])) * 2)) / 2  # the arc has 0.5-degree steps
    assert report["ep1_missed_belief_peak_angles"] == [nearest] * int((~found).sum())
    assert (~found).any()  # an untrained agent misses goals, so the split below is exercised
    arc = point.goal_arc().numpy()
    by_hand = []
    for i in np.flatnonzero(~found):
        reach = point.arc_reach([reference.episodes[i][0]])
        if reach is None:
            continue
        on = (np.linspace(0, 180, len(arc)) >= reach[0]) & (np.linspace(0, 180, len(arc)) <= reach[1])
        value = -np.linalg.norm(arc - goals[0], axis=-1)
        by_hand.append([value[on].mean(), value[~on].mean()])
    expected = [round(float(x), 3) for x in np.mean(by_hand, axis=0)] if by_hand else None
    assert report["ep1_missed_decoded_searched_unsearched"] == expected
    assert report["prior_decoded_searched_unsearched"] == expected

    assert point.goal_found_report(model, paths=model) == report

    # belief_after (the encoder over recorded episodes) is the belief the online policy carries into episode 2
    recorded = evaluate_trials(model.adapt(), family, tasks[:3], 2, seed=0, record=True)
    first = [ep[0] for ep in recorded.episodes]
    online = model.adapt()
    online.reset(3)
    for t in range(family.horizon):
        online.observe(
            np.stack([ep["observations"][t] for ep in first]),
            np.stack([ep["actions"][t] for ep in first]),
            np.stack([ep["rewards"][t] for ep in first]),
            np.stack([ep["observations"][t + 1] for ep in first]),
            np.zeros(3, bool),
        )
    torch.testing.assert_close(
        common.belief_after(model.vae.encoder, family, first), online.mu, rtol=1e-5, atol=1e-6
    )
    with pytest.raises(SystemExit, match="needs a point_robot_sparse model"):
        point.goal_found_report(OfflineVariBAD("grid_navi", vae_steps=1, rl_steps=0))


def test_goal_found_can_drive_the_trials_with_a_moving_average_agent():
    import pytest

    from lit_offmeta.algorithms.borel.diagnostics import point
    from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD, evaluate_trials

    torch.manual_seed(0)
    model = OfflineVariBAD("point_robot_sparse", vae_steps=1, rl_steps=0, rl={"hidden": [8]}, rl_eval_ema=[0.5],
                           vae={"hidden_dim": 8, "latent_dim": 2, "decoder_hidden": [8]})
    with torch.no_grad():  # the average now heads up the y axis, the iterate wherever its init points
        model.rl_agent(0.5).actor.net[-1].bias.copy_(torch.tensor([0.0, 5.0, -1.0, -1.0]))
    family = model.family
    tasks = [family.default_tasks()[i] for i in family.split().test]
    for ema, policy in ((None, model.adapt()), (0.5, model.belief_policy(0.5))):
        reference = evaluate_trials(policy, family, tasks, 2, seed=model.hparams.seed)
        report = point.goal_found_report(model, ema=ema)
        assert report["success_ep1"] == round(float(reference.success[:, 0].mean()), 3)
        assert report["success_ep2"] == round(float(reference.success[:, 1].mean()), 3)
    assert point.goal_found_report(model, ema=0.5)["success_ep1"] > 0  # straight up passes the top goal
    with pytest.raises(ValueError, match="no moving average with decay 0.9"):
        point.goal_found_report(model, ema=0.9)


def test_arc_reach_is_the_span_of_angles_within_the_goal_radius_of_the_unit_circle():
    from lit_offmeta.algorithms.borel.diagnostics.point import arc_reach

    def at(degrees, radius=1.0):
        a = np.radians(degrees)
        return [radius * np.cos(a), radius * np.sin(a)]

    # the start (0, 0), a point at radius 0.5 and one at 1.3 are too far from the circle; 1.15 and 0.85 count
    first = {"observations": np.array([[0.0, 0.0], at(10, 0.5), at(30, 1.15), at(60), at(170, 1.3)])}
    second = {"observations": np.array([[0.0, 0.0], at(120, 0.85)])}
    assert arc_reach([first, second]) == [30.0, 120.0]
    below = {"observations": np.array([at(-5), at(-175)])}  # on the circle, below the axis: no goal there
    assert arc_reach([first, second, below]) == [30.0, 120.0] and arc_reach([below]) is None
    assert arc_reach([{"observations": np.zeros((3, 2))}]) is None


def test_searched_split_averages_the_decoded_reward_on_and_off_the_reached_span():
    from lit_offmeta.algorithms.borel.diagnostics.point import searched_split

    decoded = np.array([4.0, 0.0, 0.0, 0.0, 8.0])  # at 0, 45, 90, 135 and 180 degrees
    assert searched_split(decoded, [30.0, 140.0]) == [0.0, 6.0]
    assert searched_split(decoded, [0.0, 100.0]) == [4.0 / 3.0, 4.0]
    assert searched_split(decoded, None) is None
    assert searched_split(decoded, [0.0, 180.0]) is None  # nothing left unsearched


def test_fit_vae_follows_the_datamodules_per_epoch_batch_stream():
    """``fit_vae`` (``train-vae`` and the PointRobot probe) equals a plain loop over the datamodule's batches drawn
    from a generator seeded ``[seed, epoch]`` per epoch; one-batch epochs draw a fresh generator every update."""
    from lit_offmeta.algorithms.borel.diagnostics.common import fit_vae
    from lit_offmeta.algorithms.borel.vae import BeliefVAE
    from lit_offmeta.datamodules.trajectory import TrialDataModule

    dm = TrialDataModule("grid_navi", data_dir=None, tasks_per_batch=2, trials_per_task=2, steps_per_epoch=1,
                         scripted_trials_per_task=2, seed=3)
    dm.setup("fit")
    torch.manual_seed(0)
    vae = BeliefVAE("grid_navi", hidden_dim=8, latent_dim=2)
    torch.manual_seed(0)
    by_hand = BeliefVAE("grid_navi", hidden_dim=8, latent_dim=2)
    torch.manual_seed(1)  # the ELBO samples latents: both loops start from the same torch stream
    fit_vae(vae, dm, 3, seed=3)
    torch.manual_seed(1)
    opt = by_hand.configure_optimizers()
    for epoch in range(3):
        loss, _ = by_hand.compute_loss(dm.sample_batch(np.random.default_rng([3, epoch])))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for (name, a), b in zip(vae.named_parameters(), by_hand.parameters()):
        torch.testing.assert_close(a, b, msg=name)
    assert any(not torch.equal(a, b) for a, b in zip(vae.parameters(), BeliefVAE("grid_navi", hidden_dim=8,
                                                                                    latent_dim=2).parameters()))


def test_decode_on_arc_reads_each_arc_points_bin_with_the_goal_arc_decoder():
    """With decoder="goal_arc" the value at an arc point is p(goal in its bin), 0 and 180 degrees included (the
    float32 sine of pi is negative), and goal-found's prior peak is the largest bin probability."""
    from lit_offmeta.algorithms.borel.diagnostics import point
    from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD

    torch.manual_seed(0)
    model = OfflineVariBAD("point_robot_sparse", vae_steps=1, rl_steps=0, rl={"hidden": [8]},
                           vae={"decoder": "goal_arc", "goal_bins": 4, "hidden_dim": 8, "kl_weight": 0.0})
    mu = torch.randn(3, 5)
    # points inside the 45-degree bins (none on an edge, where float rounding decides), and both ends
    degrees = torch.tensor([0.0, 20.0, 60.0, 80.0, 100.0, 130.0, 150.0, 170.0, 180.0])
    arc = torch.stack([torch.cos(torch.deg2rad(degrees)), torch.sin(torch.deg2rad(degrees))], -1)
    with torch.no_grad():
        probs = torch.softmax(model.vae.decoder(mu), -1)
        prior = model.vae.encoder.belief(model.vae.encoder.initial_state(1))[0]
        prior_peak = torch.softmax(model.vae.decoder(prior), -1).max()
    decoded = point.decode_on_arc(model.vae, mu, arc)
    assert torch.allclose(decoded, probs[:, [0, 0, 1, 1, 2, 2, 3, 3, 3]])
    assert point.goal_found_report(model)["decoded_peak_prior"] == round(float(prior_peak), 3)


def test_decode_on_arc_bins_edge_points_as_the_vae_bins_its_targets():
    """On a bin edge (45 degrees in float32, where numpy's SIMD arctan2 may land either side) the diagnostic reads
    the bin that the VAE's own binning gives the same point: both go through goal_arc_bin."""
    from lit_offmeta.algorithms.borel.diagnostics import point
    from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD
    from lit_offmeta.algorithms.borel.vae import goal_arc_bin

    torch.manual_seed(0)
    model = OfflineVariBAD("point_robot_sparse", vae_steps=1, rl_steps=0, rl={"hidden": [8]},
                           vae={"decoder": "goal_arc", "goal_bins": 4, "hidden_dim": 8, "kl_weight": 0.0})
    edges = torch.deg2rad(torch.tensor([45.0, 90.0, 135.0]))
    arc = torch.stack([torch.cos(edges), torch.sin(edges)], -1)  # float32
    mu = torch.randn(2, 5)
    with torch.no_grad():
        probs = torch.softmax(model.vae.decoder(mu), -1)
    assert torch.equal(point.decode_on_arc(model.vae, mu, arc), probs[:, torch.as_tensor(goal_arc_bin(arc, 4))])


def test_exact_task_posterior_keeps_the_tasks_whose_rewards_agree_with_every_step():
    """Goals (1, 0) and (0, 1): a step far from both keeps both, a paid step at (0.95, 0) keeps the first only, a
    padding step changes nothing; a reward no task pays leaves no task."""
    from lit_offmeta.algorithms.borel.diagnostics.point import exact_task_posterior
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


def test_arc_nll_scores_a_fixed_map_the_uniform_map_and_the_exact_posterior_by_hand():
    """arc-nll with a decoder that ignores the belief: its NLL is -log p(goal bin) per belief, the uniform one log K
    per belief, and the exact one a plain loop over trials, steps and training goals."""
    import pytest

    from lit_offmeta.algorithms.borel.diagnostics.point import arc_nll_report
    from lit_offmeta.algorithms.borel.vae import BeliefVAE
    from lit_offmeta.datamodules.trajectory import TrialDataModule

    torch.manual_seed(0)
    dm = TrialDataModule("point_robot_sparse", scripted_trials_per_task=1, tasks_per_batch=3, trials_per_task=1,
                         episodes_per_trial=2, reward_relabelling=True, mix_prob=1.0, shared_paths=True,
                         steps_per_epoch=2, seed=0, split="paper")
    dm.setup("fit")
    vae = BeliefVAE("point_robot_sparse", decoder="goal_arc", goal_bins=6, latent_dim=6, hidden_dim=8,
                    decoder_hidden=(), aggregator="max", kl_weight=0.0)
    logits = torch.arange(6, dtype=torch.float32) / 3
    with torch.no_grad():
        vae.decoder.net[-1].weight.zero_()
        vae.decoder.net[-1].bias.copy_(logits)
    report = arc_nll_report(vae, dm, batches=2, seed=4)
    rng = np.random.default_rng([4, 1])
    train = sorted(int(i) for i in np.unique(dm.train_trials.task_index))
    goals = np.array([vae.family.default_tasks()[i]["goal"] for i in train])
    bins = vae.goal_class[torch.as_tensor(train)].numpy()
    log_p = torch.log_softmax(logits, -1).numpy()
    fixed = exact = beliefs = trials = 0
    for _ in range(2):
        batch = dm.sample_batch(rng)
        for b in range(batch["valid"].shape[1]):
            goal_bin = int(vae.goal_class[int(batch["task_index"][b])])
            alive = np.ones(len(train), bool)
            steps = [None] + [t for t in range(batch["valid"].shape[0]) if batch["valid"][t, b]]
            for t in steps:  # the prior, then each valid step
                if t is not None:
                    paid = np.linalg.norm(goals - batch["next_obs"][t, b].numpy(), axis=-1) <= 0.2
                    alive &= paid == (float(batch["rewards"][t, b]) > 0)
                fixed -= log_p[goal_bin]
                exact -= np.log(alive[bins == goal_bin].sum() / alive.sum())
                beliefs += 1
            trials += 1
    assert report["trials"] == trials
    assert report["vae_nll_per_trial"] == pytest.approx(fixed / trials, abs=0.06)
    assert report["uniform_nll_per_trial"] == pytest.approx(np.log(6) * beliefs / trials, abs=0.06)
    assert report["exact_nll_per_trial"] == pytest.approx(exact / trials, abs=0.06)
    assert report["exact_nll_per_trial"] < report["uniform_nll_per_trial"]


def test_python_dash_m_runs_the_diagnostics_command_line():
    """``python -m lit_offmeta.algorithms.borel.diagnostics`` (the package's ``__main__``) reaches ``cli.main``: its
    help names the program and every check, and a bad check is refused with argparse's usage error."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "lit_offmeta.algorithms.borel.diagnostics"]
    shown = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: python -m lit_offmeta.algorithms.borel.diagnostics")
    for check in ("train-vae", "belief", "exact-rl", "belief-error", "exact-eval", "belief-probe", "coverage",
                  "goal-found", "arc-nll", "touches"):
        assert check in shown.stdout
    refused = subprocess.run([*command, "no-such-check"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "invalid choice: 'no-such-check'" in refused.stderr


def test_belief_neighbours_count_the_data_beliefs_near_each_query_by_hand():
    """``belief-support``: total variation between bin maps, and per query the nearest data belief, the neighbours
    within the radius and how often their episode 2 paid."""
    from lit_offmeta.algorithms.borel.diagnostics.point import belief_neighbours, total_variation

    data = np.array([[1.0, 0.0, 0.0], [0.8, 0.2, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
    paid = np.array([True, False, True, True])
    np.testing.assert_allclose(total_variation(data[:2], data), [[0.0, 0.2, 1.0, 1.0], [0.2, 0.0, 0.8, 1.0]])
    query = np.array([[0.9, 0.1, 0.0], [0.0, 0.3, 0.7]])
    # distances: query 0 -> 0.1, 0.1, 0.9, 1.0; query 1 -> 1.0, 0.8, 0.2, 0.3
    report = belief_neighbours(query, data, paid, radius=0.25)
    assert report == {"beliefs": 2, "nearest_median": 0.15, "neighbours_median": 1.5, "with_no_neighbour": 0,
                      "neighbours_ep2_paid": round(2 / 3, 3)}  # neighbours: data 0, 1 (query 0), data 2 (query 1)
    far = belief_neighbours(query[:1], data[2:], paid[2:], radius=0.25)
    assert far["with_no_neighbour"] == 1 and far["neighbours_ep2_paid"] is None
    assert belief_neighbours(query[:0], data, paid, 0.25) == {"beliefs": 0}
    with pytest.raises(ValueError, match="radius must be in"):
        belief_neighbours(query, data, paid, radius=0.0)
    with pytest.raises(ValueError, match="need query"):
        belief_neighbours(query, data[:, :2], paid, radius=0.3)


def test_belief_support_report_splits_a_models_trials_and_measures_them_against_its_rl_data():
    """``belief-support`` end to end on a small goal_arc model: every held-out goal's trial is counted once, as found
    or missed in episode 1, and the data side is the model's RL trials (relabelled ones plus search walks)."""
    from lit_offmeta.algorithms.borel.behaviour import scripted_trials
    from lit_offmeta.algorithms.borel.diagnostics.point import belief_support_report, episode2_start_beliefs
    from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD

    family = get_family("point_robot_sparse")
    trials = scripted_trials(family, [0, 3, 9], trials_per_task=3, episodes_per_trial=2, seed=1)
    torch.manual_seed(0)
    model = OfflineVariBAD("point_robot_sparse", vae_steps=1, rl_steps=0, rl_belief_input="decoded",
                           vae={"decoder": "goal_arc", "goal_bins": 12, "hidden_dim": 16, "kl_weight": 0.0},
                           rl={"hidden": (8,)}, rl_data="relabelled", rl_trials_per_task=4, rl_search_walks_per_task=1)
    report = belief_support_report(model, trials, radius=0.5)
    assert report["data_trials"] == 3 * (4 + 1)
    tasks = len(family.split().test)
    assert report["ep1_found"].get("beliefs", 0) + report["ep1_missed"].get("beliefs", 0) == tasks
    beliefs = episode2_start_beliefs(model.vae, model.rl_trials(trials), chunk=4)  # chunks must not matter
    np.testing.assert_allclose(beliefs, episode2_start_beliefs(model.vae, model.rl_trials(trials)), atol=1e-6)
    np.testing.assert_allclose(beliefs.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(SystemExit, match="goal_arc"):
        belief_support_report(OfflineVariBAD("point_robot_sparse", vae_steps=1, rl_steps=0), trials)


def test_mean_action_gaps_by_hand_and_the_report_covers_every_step():
    """``mean-action``: with critics Q(s, a) = min(a_x, a_y), the gap is the best draw's value minus the mean action's
    (never negative), and the report's episodes split the recorded steps of the agent's own trials."""
    from torch import nn

    from lit_offmeta.algorithms.borel.diagnostics.actor import mean_action_gaps, mean_action_report
    from lit_offmeta.algorithms.borel.pipeline import OfflineVariBAD

    torch.manual_seed(0)
    model = OfflineVariBAD("point_robot_sparse", vae_steps=1, rl_steps=0, vae={"hidden_dim": 8}, rl={"hidden": (8,)})
    agent = model.agent

    class MinOfCoordinates(nn.Module):
        def forward(self, x):
            return torch.minimum(x[..., -2], x[..., -1])[..., None]

    agent.critics = nn.ModuleList([MinOfCoordinates(), MinOfCoordinates()])
    hyper = torch.randn(5, agent.cfg.input_dim)
    got = mean_action_gaps(agent, hyper, 8, torch.Generator().manual_seed(3))
    with torch.no_grad():
        mean, log_std = agent.actor.net(hyper).chunk(2, -1)
    eps = torch.randn(5, 8, 2, generator=torch.Generator().manual_seed(3))
    draws = torch.tanh(mean[:, None] + log_std.exp()[:, None] * eps)
    q_mean = torch.tanh(mean).min(-1).values
    expected = (draws.min(-1).values.max(1).values - q_mean).clamp(min=0)
    np.testing.assert_allclose(got["q_mean"], q_mean.numpy(), rtol=1e-6)
    np.testing.assert_allclose(got["gap"], expected.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["mean_norm"], torch.tanh(mean).abs().max(-1).values.numpy(), rtol=1e-6)
    report = mean_action_report(model, samples=4)
    assert report["tasks"] == len(model.family.split().test) and len(report["success"]) == 2
    assert set(report["ep1"]) == {"gap_median", "steps_gap_over_threshold", "steps_parked", "parked_gap_over_threshold"}
    assert "act" not in vars(agent)  # the recording wrapper is removed
