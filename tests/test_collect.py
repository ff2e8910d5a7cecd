"""Behaviour-data collection: per-task agents, the runner (resume, atomicity) and the ``collect`` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lit_offmeta.collect import cli
from lit_offmeta.collect.episodes import EpisodeBuilder, early_late_returns, episode_returns
from lit_offmeta.collect.presets import PRESETS, get_preset
from lit_offmeta.collect.q_learning import QLearningAgent, QLearningConfig
from lit_offmeta.collect.runner import MANIFEST_NAME, collect, task_seed
from lit_offmeta.data import storage
from lit_offmeta.data.scripted import AnnealedGoalSeeker, GoalSeekerConfig
from lit_offmeta.data.storage import list_task_datasets, load_task_buffers
from lit_offmeta.tasks import get_family


def run(family: str, preset: str, out, **kw):
    return collect(get_preset(family, preset), out, progress=False, log=None, **kw)


# --- agents ------------------------------------------------------------------------------------------------


def test_goal_seeker_schedule_and_late_actions_point_at_goal():
    """Skill rises linearly to 1 at 80% of the lifetime; at skill 1 the goal estimate is exact."""
    agent = AnnealedGoalSeeker([0.0, 1.0], lifetime=11, config=GoalSeekerConfig(noise_end=0.0),
                               rng=np.random.default_rng(0))
    assert agent.skill(0) == 0.0
    assert agent.skill(4) == pytest.approx(0.5)  # 4 / (0.8 * 10)
    assert agent.skill(8) == 1.0 and agent.skill(10) == 1.0
    agent.begin_episode(10)
    np.testing.assert_allclose(agent.goal_estimate, [0.0, 1.0])
    assert agent.noise_std == 0.0
    # From the origin the goal is 1.0 above: 10 steps of 0.1, so the first action saturates at +1 in y.
    np.testing.assert_allclose(agent.act(np.zeros(2)), [0.0, 1.0])
    # 0.05 below the goal: the action that lands exactly on it is 0.5.
    np.testing.assert_allclose(agent.act(np.array([0.0, 0.95])), [0.0, 0.5], atol=1e-6)


def test_q_learning_update_matches_hand_computation():
    """Q(s,a) += lr * (r + gamma * max Q(s') - Q(s,a)); no bootstrap at a true terminal."""
    agent = QLearningAgent(5, lifetime=10, config=QLearningConfig(learning_rate=0.5, discount=0.9),
                           rng=np.random.default_rng(0))
    s, s2 = np.array([0.0, 0.0]), np.array([0.0, 1.0])
    agent.q[agent._key(s2)][:] = [0.0, 2.0, 1.0, 0.0, 0.0]
    agent.learn(s, 1, -0.1, s2, terminated=False)
    assert agent.q[agent._key(s)][1] == pytest.approx(0.5 * (-0.1 + 0.9 * 2.0))  # 0.85
    agent.learn(s, 2, 1.0, s2, terminated=True)
    assert agent.q[agent._key(s)][2] == pytest.approx(0.5)
    assert agent.epsilon_at(0) == 1.0
    assert agent.epsilon_at(9) == pytest.approx(0.05)  # decays over 60% of the lifetime, then stays
    assert agent.greedy(s) == 1


def test_episode_builder_layout_and_early_late_returns():
    builder = EpisodeBuilder(np.zeros(2), behaviour_step=40, discrete=True, trial_index=3, episode_in_trial=1)
    builder.add(2, -0.1, np.ones(2), False, False)
    builder.add(1, 1.0, np.full(2, 2.0), False, True)
    ep = builder.finish()
    assert ep["observations"].shape == (3, 2) and ep["observations"].dtype == np.float32
    assert ep["actions"].tolist() == [2, 1] and ep["actions"].dtype == np.int64
    assert ep["truncations"].tolist() == [False, True]
    assert (ep["behaviour_step"], ep["trial_index"], ep["episode_in_trial"]) == (40, 3, 1)
    eps = [{"rewards": np.full(2, float(r))} for r in range(10)]  # returns 0, 2, ..., 18
    np.testing.assert_allclose(episode_returns(eps), np.arange(10) * 2.0)
    assert early_late_returns(eps, 0.2) == (1.0, 17.0)
    with pytest.raises(ValueError, match="no steps"):
        EpisodeBuilder(np.zeros(2), 0).finish()


# --- end to end --------------------------------------------------------------------------------------------


def test_point_robot_tiny_writes_loadable_datasets_that_show_learning(tmp_path):
    summary = run("point_robot", "tiny", tmp_path)
    assert sorted(summary.written) == [0, 1, 2] and summary.skipped == []
    buffers = load_task_buffers(tmp_path, "point_robot")
    tasks = get_family("point_robot").default_tasks()
    for index, buffer in enumerate(buffers):
        assert buffer.task == tasks[index]
        assert buffer.num_episodes == 20 and len(buffer) == 20 * 20
        np.testing.assert_array_equal(buffer.behaviour_steps, np.arange(20) * 20)
        # The stored rewards are the family's reward of the stored transitions.
        np.testing.assert_allclose(
            buffer.rewards, get_family("point_robot").reward(buffer.task, buffer.obs, buffer.actions, buffer.next_obs),
            rtol=1e-6,
        )
        early, late = summary.early_late[index]
        assert late > early + 5.0, (early, late)  # e.g. about -17 early vs -4 late
    meta = json.loads((summary.written[0] / "data" / "metadata.json").read_text())["lit_offmeta"]["metadata"]
    assert meta["behaviour_agent"] == "goal_seeker" and meta["collect_preset"] == "tiny"
    assert meta["num_episodes"] == 20 and meta["return_last_10pct"] > meta["return_first_10pct"]


def test_sparse_point_robot_and_grid_navi_record_trials_and_learn(tmp_path):
    sparse = run("point_robot_sparse", "tiny", tmp_path)
    grid = run("grid_navi", "tiny", tmp_path)
    for early, late in [*sparse.early_late.values(), *grid.early_late.values()]:
        assert late > early + 5.0, (early, late)
    buffer = load_task_buffers(tmp_path, "grid_navi", [0])[0]
    assert buffer.num_episodes == 80 and buffer.actions.dtype == np.int64
    np.testing.assert_array_equal(buffer.trial_index, np.repeat(np.arange(20), 4))
    np.testing.assert_array_equal(buffer.episode_in_trial, np.tile(np.arange(4), 20))
    sparse_buffer = load_task_buffers(tmp_path, "point_robot_sparse", [0])[0]
    np.testing.assert_array_equal(sparse_buffer.episode_in_trial, np.tile(np.arange(2), 10))
    # BOReL collects sparse PointRobot data from random starts, so episodes do not all start at the origin.
    assert np.abs(sparse_buffer.obs[sparse_buffer.episode_starts[:-1]]).sum() > 0


def test_same_seed_same_data_and_task_seed_independent_of_subset(tmp_path):
    run("point_robot", "tiny", tmp_path / "a", seed=3)
    run("point_robot", "tiny", tmp_path / "b", seed=3, task_indices=[2])
    run("point_robot", "tiny", tmp_path / "c", seed=4, task_indices=[2])
    a, b, c = (load_task_buffers(tmp_path / d, "point_robot", [2])[0] for d in "abc")
    np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.array_equal(a.actions, c.actions)
    assert task_seed(3, 2) != task_seed(3, 1)


# --- resumability and atomicity ----------------------------------------------------------------------------


def test_rerun_skips_finished_tasks_and_removes_stale_temporaries(tmp_path):
    first = run("point_robot", "tiny", tmp_path, task_indices=[1])
    stamp = os.stat(first.written[1] / "data" / "main_data.hdf5").st_mtime_ns
    # A killed write leaves a hidden temp folder; its pid no longer exists.
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
    stale = tmp_path / "point_robot" / f".tmp-task_0000-v0-{storage.owner_tag().rsplit('-', 1)[0]}-{dead_pid}-0123abcd"
    (stale / "point_robot" / "task_0000-v0" / "data").mkdir(parents=True)
    assert 0 not in list_task_datasets(tmp_path, "point_robot")  # never loaded
    second = run("point_robot", "tiny", tmp_path)
    assert second.skipped == [1] and sorted(second.written) == [0, 2]
    assert os.stat(first.written[1] / "data" / "main_data.hdf5").st_mtime_ns == stamp
    assert not stale.exists()
    assert sorted(list_task_datasets(tmp_path, "point_robot")) == [0, 1, 2]


def test_kill_during_collection_keeps_finished_tasks_and_resume_completes(tmp_path, monkeypatch):
    real_write = storage.write_task_dataset
    calls = []

    def dying_write(root, family, task_index, *args, **kwargs):
        calls.append(task_index)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user's Ctrl-C while the second task is being written
        return real_write(root, family, task_index, *args, **kwargs)

    monkeypatch.setattr(storage, "write_task_dataset", dying_write)
    with pytest.raises(KeyboardInterrupt):
        run("point_robot", "tiny", tmp_path)
    assert sorted(list_task_datasets(tmp_path, "point_robot")) == [0]
    monkeypatch.setattr(storage, "write_task_dataset", real_write)
    resumed = run("point_robot", "tiny", tmp_path)
    assert resumed.skipped == [0] and sorted(resumed.written) == [1, 2]
    # The resumed tasks hold exactly what an uninterrupted run writes.
    run("point_robot", "tiny", tmp_path / "fresh")
    for index in (1, 2):
        np.testing.assert_array_equal(load_task_buffers(tmp_path, "point_robot", [index])[0].actions,
                                      load_task_buffers(tmp_path / "fresh", "point_robot", [index])[0].actions)


def test_rerun_with_other_settings_is_refused(tmp_path):
    run("point_robot", "tiny", tmp_path, task_indices=[0])
    with pytest.raises(ValueError, match="other settings"):
        run("point_robot", "tiny", tmp_path, seed=1)
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["point_robot"]["seed"] == 0


def test_output_directory_that_is_not_collect_output_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="non-empty directory that was not written by `lit-offmeta collect`"):
        run("point_robot", "tiny", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_bad_task_indices_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"--tasks: indices \[40\] are outside the 40 default tasks"):
        run("point_robot", "tiny", tmp_path, task_indices=[0, 40])


# --- the command -------------------------------------------------------------------------------------------


def cli_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_cli_relative_out_directory_works(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli.main(["--family", "grid_navi", "--preset", "tiny", "--out", "data", "--tasks", "4", "--no_progress"])
    assert sorted(list_task_datasets(tmp_path / "data", "grid_navi")) == [4]


def test_cli_config_file_with_overrides_writes_datasets(tmp_path, capsys):
    config = tmp_path / "collect.yaml"
    out = tmp_path / "data"
    config.write_text(f"family: grid_navi\npreset: tiny\nout: {out}\nseed: 5\ntasks: [0, 2]\n"
                      "settings:\n  episodes_per_task: 8\n  agent_kwargs: {epsilon_end: 0.0}\n")
    cli.main(["--config", str(config), "--no_progress"])
    assert sorted(list_task_datasets(out, "grid_navi")) == [0, 2]
    buffer = load_task_buffers(out, "grid_navi", [2])[0]
    assert buffer.num_episodes == 8
    manifest = json.loads((out / MANIFEST_NAME).read_text())["grid_navi"]
    assert manifest["seed"] == 5 and manifest["config"]["agent_kwargs"] == {"epsilon_end": 0.0}
    # Command-line options override the file.
    capsys.readouterr()
    cli.main(["--config", str(config), "--tasks", "1-3", "--set", "num_tasks=4", "--print_config"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["tasks"] == [1, 2, 3] and printed["config"]["num_tasks"] == 4 and printed["seed"] == 5


@pytest.mark.parametrize(
    "path", sorted(p.name for p in (cli.Path(__file__).parents[1] / "configs" / "collect").glob("*.yaml"))
)
def test_shipped_collect_configs_resolve(path, capsys):
    config_path = cli.Path(__file__).parents[1] / "configs" / "collect" / path
    cli.main(["--config", str(config_path), "--print_config"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["config"]["family"] in PRESETS and printed["out"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--family", "nope", "--preset", "small", "--out", "x"], "no collection presets for family 'nope'"),
        (["--family", "point_robot", "--preset", "huge", "--out", "x"], "has no preset 'huge'; available"),
        (["--family", "point_robot", "--out", "x"], "--family and --preset are required"),
        (["--family", "point_robot", "--preset", "tiny"], "--out DIR is required"),
        (["--family", "point_robot", "--preset", "tiny", "--out", "x", "--tasks", "3-1"], "--tasks: cannot read"),
        (["--family", "point_robot", "--preset", "tiny", "--out", "x", "--set", "episodes=3"], "unknown setting"),
        (["--family", "point_robot", "--preset", "tiny", "--out", "x", "--set", "agent=dqn"], "agent must be one of"),
        (["--config", "/nonexistent/c.yaml"], "does not exist"),
    ],
)
def test_cli_rejects_bad_input_with_clear_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert message in cli_error(argv, capsys)


def test_cli_rejects_unknown_config_keys_and_foreign_out_dir(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("family: point_robot\npreset: tiny\nepisodes: 3\n")
    assert "unknown key(s) ['episodes']" in cli_error(["--config", str(config)], capsys)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.csv").write_text("1,2\n")
    err = cli_error(["--family", "point_robot", "--preset", "tiny", "--out", str(foreign), "--no_progress"], capsys)
    assert "not written by `lit-offmeta collect`" in err


def test_cli_help_lists_families_and_presets(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for family, presets in PRESETS.items():
        assert f"{family}: {', '.join(sorted(presets))}" in text
    assert "--config FILE" in text and "resume" in text
