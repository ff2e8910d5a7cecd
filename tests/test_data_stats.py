"""``lit-offmeta data stats``: lifetime windows and return quantiles against hand computations, the CLI's files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lit_offmeta.data.stats import dataset_stats, families_in, lifetime_windows, return_quantiles
from lit_offmeta.data.storage import write_task_dataset
from lit_offmeta.data_cli import main, smoothed
from lit_offmeta.tasks import get_family


def _episodes(returns: list[float], horizon: int = 4) -> list[dict]:
    """PointRobot-shaped episodes whose rewards are ``return / horizon`` at every step (exact in float32)."""
    out = []
    for e, ret in enumerate(returns):
        obs = np.zeros((horizon + 1, 2), np.float32)
        obs[:, 0] = np.arange(horizon + 1) * 0.01
        truncations = np.zeros(horizon, bool)
        truncations[-1] = True
        out.append({"observations": obs, "actions": np.zeros((horizon, 2), np.float32),
                    "rewards": np.full(horizon, ret / horizon, np.float32), "terminations": np.zeros(horizon, bool),
                    "truncations": truncations, "behaviour_step": e * horizon})
    return out


def test_lifetime_windows_are_thirds_with_the_middle_taking_the_remainder():
    assert lifetime_windows(7) == {"first": slice(0, 2), "middle": slice(2, 5), "last": slice(5, 7)}
    assert lifetime_windows(9) == {"first": slice(0, 3), "middle": slice(3, 6), "last": slice(6, 9)}


def test_return_quantiles_by_hand():
    returns = np.array([-8.0, -4.0, 0.0, 4.0, 8.0, 12.0, 20.0])
    q = return_quantiles(returns)
    assert q["first"] == [-8.0, -7.0, -6.0, -5.0, -4.0]  # [-8, -4]: linear interpolation
    assert q["middle"] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert q["last"] == [12.0, 14.0, 16.0, 18.0, 20.0]


def test_smoothed_is_a_trailing_mean():
    np.testing.assert_allclose(smoothed(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])


@pytest.fixture
def root(tmp_path):
    family = get_family("point_robot")
    tasks = family.default_tasks()
    write_task_dataset(tmp_path, "point_robot", 0, tasks[0], _episodes([-8, -4, 0, 4, 8, 12, 20]), {})
    write_task_dataset(tmp_path, "point_robot", 3, tasks[3], _episodes([0, 0, 4, 4, 4, 8]),
                       {"behaviour_agent": "goal_seeker"})
    return tmp_path


def test_dataset_stats_reads_every_task(root):
    stats = dataset_stats(root, "point_robot")
    assert [s.task_index for s in stats] == [0, 3]
    first, second = stats
    assert (first.transitions, first.episodes, first.behaviour_steps) == (28, 7, (0, 24))
    assert first.return_quantiles["last"] == [12.0, 14.0, 16.0, 18.0, 20.0]
    assert second.return_quantiles["first"][2] == 0.0 and second.return_quantiles["last"][2] == 6.0
    assert second.behaviour_agent == "goal_seeker"
    assert second.dataset_id == "point_robot/task_0003-v0"
    assert json.loads(second.action_space)["shape"] == [2]
    assert families_in(root) == ["point_robot"]


def test_data_stats_command_prints_writes_json_and_plot(root, tmp_path, capsys):
    out = tmp_path / "report" / "stats.json"
    main(["stats", str(root), "--json", str(out)])
    printed = capsys.readouterr().out
    assert "point_robot: 2 task(s), 52 transitions, 13 episodes" in printed
    report = json.loads(out.read_text())
    assert [row["task_index"] for row in report["point_robot"]] == [0, 3]
    assert report["point_robot"][0]["return_quantiles"]["middle"] == [0.0, 2.0, 4.0, 6.0, 8.0]
    png = root / "point_robot" / "behaviour_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_data_stats_errors_name_the_problem(tmp_path):
    with pytest.raises(SystemExit, match="no finished datasets"):
        main(["stats", str(tmp_path)])
    with pytest.raises(SystemExit, match="no finished 'cheetah_vel' datasets"):
        main(["stats", str(tmp_path), "--family", "cheetah_vel"])
    with pytest.raises(SystemExit, match="is not a directory"):
        main(["stats", str(tmp_path / "missing")])
