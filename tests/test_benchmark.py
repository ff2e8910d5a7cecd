"""``lit-offmeta benchmark``: a tiny suite end to end (cells, resume, workers, report), aggregation by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lit_offmeta import benchmark
from lit_offmeta.benchmark import Cell, Suite, load_suite, mean_se, run_suite, summary_table
from lit_offmeta.cli import main as cli_main
from lit_offmeta.collect import collect, get_preset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmark_data")
    collect(get_preset("point_robot", "tiny"), root, progress=False, log=None)
    return root


def _suite_file(tmp_path, data_dir, **changes) -> Path:
    suite = {
        "name": "tiny",
        "description": "MACAW and meta-BC on three PointRobot goals (tests).",
        "methods": {"MACAW": str(REPO / "configs/macaw/{family}_tiny.yaml"),
                    "Meta-BC": str(REPO / "configs/baselines/meta_bc/{family}.yaml")},
        "families": {"point_robot": {"data": str(data_dir)}},
        "settings": {"two_train_goals": {"train_ids": [0, 1], "test_ids": [2], "split": None, "tasks_per_batch": 2,
                                         "support_size": 32, "query_size": 32}},
        "seeds": [0, 1],
        "meta_updates": 4,
        "curve_at": [2],
        "evaluation": {"episodes": 1, "batch_size": 32, "adaptation_steps": [0, 1]},
        **changes,
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_mean_and_standard_error_by_hand():
    mean, se = mean_se([1.0, 2.0, 6.0])
    assert mean == 3.0
    assert se == pytest.approx((7.0 ** 0.5) / 3 ** 0.5)  # sample std sqrt(7), over sqrt(3)
    assert mean_se([4.0])[0] == 4.0


def test_summary_table_rows_are_means_over_seeds(tmp_path, data_dir):
    suite = load_suite(_suite_file(tmp_path, data_dir))
    rows = [{"method": "MACAW", "family": "point_robot", "setting": "two_train_goals", "return": r, "score": s,
             "train_seconds": 10.0} for r, s in ((-4.0, 0.5), (-6.0, 0.7))]
    rows += [{"method": "Meta-BC", "family": "point_robot", "setting": "two_train_goals", "return": -8.0,
              "score": 0.1, "train_seconds": 4.0}] * 2
    table = summary_table(suite, rows, "point_robot", "two_train_goals")
    assert "| MACAW | -5.00 ± 1.00 | 0.600 ± 0.100 | 2 | 10 |" in table
    assert "| Meta-BC | -8.00 ± 0.00 | 0.100 ± 0.000 | 2 | 4 |" in table
    assert "success" not in table
    rows = [dict(r, success=s) for r, s in zip(rows, (0.25, 0.75, 1.0, 1.0))]  # a family that defines success
    table = summary_table(suite, rows, "point_robot", "two_train_goals")
    assert "| method | held-out return | normalised score | success rate | seeds | train s / seed |" in table
    assert "| MACAW | -5.00 ± 1.00 | 0.600 ± 0.100 | 0.500 ± 0.250 | 2 | 10 |" in table
    # a resumed suite mixes cells from before success was recorded: the rate is over the seeds that have it
    rows = [{k: v for k, v in r.items() if k != "success"} if i > 0 else r for i, r in enumerate(rows)]
    table = summary_table(suite, rows, "point_robot", "two_train_goals")
    assert "| MACAW | -5.00 ± 1.00 | 0.600 ± 0.100 | 0.250 | 2 | 10 |" in table
    assert "| Meta-BC | -8.00 ± 0.00 | 0.100 ± 0.000 | – | 2 | 4 |" in table


@pytest.mark.slow
def test_a_tiny_suite_runs_resumes_and_reports(tmp_path, data_dir, monkeypatch):
    suite = load_suite(_suite_file(tmp_path, data_dir))
    out = tmp_path / "run"
    results = run_suite(suite, out, progress=False)
    assert len(results) == 4
    for result in results:
        assert set(result["learning"]) == {"2", "4"} and set(result["adaptation"]) == {"0", "1"}
        assert result["learning"]["4"]["return"] == result["return"]
        assert result["adaptation"]["1"]["return"] == pytest.approx(result["return"])  # both tiny configs adapt 1 step
        # PointRobot defines success (within 0.2 of the goal): the held-out tasks' mean is kept beside the return
        assert set(result["per_task_success"]) == set(result["per_task_return"]) == {"2"}
        assert result["success"] == result["per_task_success"]["2"] and 0 <= result["success"] <= 1
    report = (out / "report.md").read_text()
    assert "## point_robot, two_train_goals" in report and "| MACAW |" in report and "| Meta-BC |" in report
    assert (out / "point_robot_two_train_goals_learning.png").is_file()
    assert (out / "point_robot_two_train_goals_adaptation.png").is_file()

    ran = []
    monkeypatch.setattr(benchmark, "run_cell", lambda suite, cell: ran.append(cell) or results[0])
    run_suite(suite, out, progress=False)
    assert ran == []  # every cell was finished: nothing reruns
    removed = Cell("Meta-BC", "point_robot", "two_train_goals", 1)
    (out / removed.path).unlink()
    run_suite(suite, out, progress=False)
    assert ran == [removed]  # a killed run resumes with the missing cell only


@pytest.mark.slow
def test_workers_give_the_same_results_as_one_process(tmp_path, data_dir):
    path = _suite_file(tmp_path, data_dir, methods={"MACAW": str(REPO / "configs/macaw/{family}_tiny.yaml")})
    cli_main(["benchmark", "--suite", str(path), "--out", str(tmp_path / "one"), "--no_progress"])
    cli_main(["benchmark", "--suite", str(path), "--out", str(tmp_path / "two"), "--workers", "2", "--no_progress"])
    for seed in (0, 1):
        cell = Cell("MACAW", "point_robot", "two_train_goals", seed).path
        a, b = (json.loads((tmp_path / run / cell).read_text()) for run in ("one", "two"))
        assert a["per_task_return"] == b["per_task_return"] and a["learning"] == b["learning"]


def test_bad_suites_are_refused_naming_the_problem(tmp_path, data_dir):
    with pytest.raises(ValueError, match="unknown key"):
        load_suite(_suite_file(tmp_path, data_dir, metods={}))
    with pytest.raises(ValueError, match="'seeds' is required"):
        load_suite(_suite_file(tmp_path, data_dir, seeds=[]))
    with pytest.raises(ValueError, match="method 'X' has no config"):
        load_suite(_suite_file(tmp_path, data_dir, methods={"X": "configs/none/{family}.yaml"}))
    with pytest.raises(ValueError, match="unknown evaluation key"):
        load_suite(_suite_file(tmp_path, data_dir, evaluation={"episode": 3}))
    macaw = str(REPO / "configs/macaw/{family}_tiny.yaml")
    with pytest.raises(ValueError, match="method 'MACAW' must be a config path or"):
        load_suite(_suite_file(tmp_path, data_dir, methods={"MACAW": {"config": macaw, "model": {}}}))
    # a cell that cannot run is refused before any cell runs, naming it: a quality window without its size
    with pytest.raises(ValueError, match="method 'MACAW' on family 'point_robot' in setting 'two_train_goals': "
                                         ".*needs window_trajectories >= 1"):
        load_suite(_suite_file(tmp_path, data_dir, methods={"MACAW": {"config": macaw, "data": {"window": "last"}}}))
    with pytest.raises(ValueError, match="in setting 'two_train_goals': tasks_per_batch=3 exceeds the 2 training"):
        load_suite(_suite_file(tmp_path, data_dir, settings={"two_train_goals": {
            "train_ids": [0, 1], "test_ids": [2], "split": None, "tasks_per_batch": 3}}))


def test_a_methods_data_arguments_come_before_the_settings_and_the_cells_own():
    suite = Suite(name="s", methods={"A": "a.yaml", "B": "b.yaml"}, families={"f": {"data": "D"}},
                  settings={"one": {"split": "x", "support_size": 8}}, seeds=[3], meta_updates=7,
                  method_data={"A": {"support_size": 4, "tasks_per_batch": 2, "seed": 99}})
    assert suite.data_arguments(Cell("A", "f", "one", 3)) == {
        "support_size": 8, "tasks_per_batch": 2, "split": "x", "data_dir": "D", "batches_per_epoch": 7, "seed": 3}
    assert suite.data_arguments(Cell("B", "f", "one", 3)) == {
        "split": "x", "support_size": 8, "data_dir": "D", "batches_per_epoch": 7, "seed": 3}


@pytest.mark.parametrize("path", sorted((REPO / "configs/benchmarks").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_suites_load(path):
    suite = load_suite(path, root=REPO)
    assert suite.cells() and suite.description
    assert path.read_text().startswith("#")  # the header says what it reproduces, how long it takes, the command


@pytest.mark.slow
def test_cells_go_through_submitit_in_its_local_mode(tmp_path, data_dir):
    pytest.importorskip("submitit")
    path = _suite_file(tmp_path, data_dir, methods={"MACAW": str(REPO / "configs/macaw/{family}_tiny.yaml")},
                       seeds=[0])
    cli_main(["benchmark", "--suite", str(path), "--out", str(tmp_path / "local"), "--no_progress"])
    cli_main(["benchmark", "--suite", str(path), "--out", str(tmp_path / "cluster"), "--no_progress",
              "--submitit", str(tmp_path / "logs"), "--submitit_cluster", "local", "--submitit_set", "timeout_min=10"])
    cell = Cell("MACAW", "point_robot", "two_train_goals", 0).path
    a, b = (json.loads((tmp_path / run / cell).read_text()) for run in ("local", "cluster"))
    assert a["per_task_return"] == b["per_task_return"]
    assert any((tmp_path / "logs").iterdir())  # submitit's job logs


def test_step_sizes_are_validated_on_training_tasks_only(tmp_path, data_dir):
    """``step_size_grid``: MACAW's test-time Adam steps take the size whose adaptation returns most on the TRAINING
    tasks (here 0 and 1; the held-out task 2 is never used to choose); meta-BC has no such steps and is left alone."""
    suite = load_suite(_suite_file(tmp_path, data_dir, seeds=[0], evaluation={
        "episodes": 1, "batch_size": 32, "adaptation_steps": [0, 1, 3], "step_size_grid": [1e-5, 1e-2],
        "validation_tasks": 5}))
    macaw = benchmark.run_cell(suite, Cell("MACAW", "point_robot", "two_train_goals", 0))
    chosen = macaw["step_size"]
    assert chosen["names"] == ["extra_step_lr"] and chosen["tasks"] == [0, 1] and chosen["steps"] == 3
    assert set(chosen["validation_return"]) == {"1e-05", "0.01"}
    best = max(chosen["grid"], key=lambda size: chosen["validation_return"][str(size)])
    assert chosen["chosen"] == best
    meta_bc = benchmark.run_cell(suite, Cell("Meta-BC", "point_robot", "two_train_goals", 0))
    assert "step_size" not in meta_bc


def test_methods_restricts_the_cells_and_names_unknown_ones(tmp_path, data_dir):
    suite = load_suite(_suite_file(tmp_path, data_dir))
    only = benchmark.only_methods(suite, ["Meta-BC"])
    assert {cell.method for cell in only.cells()} == {"Meta-BC"} and len(only.cells()) == 2
    with pytest.raises(ValueError, match=r"--methods: \['PEARL'\] not in the suite's methods"):
        benchmark.only_methods(suite, ["PEARL"])


def test_report_only_writes_the_report_of_the_finished_cells(tmp_path, data_dir, monkeypatch):
    suite_file = _suite_file(tmp_path, data_dir)
    suite = load_suite(suite_file)
    out = tmp_path / "run"
    cell = Cell("MACAW", "point_robot", "two_train_goals", 0)
    result = {"method": "MACAW", "family": "point_robot", "setting": "two_train_goals", "seed": 0, "return": -5.0,
              "score": 0.5, "train_seconds": 1.0, "learning": {"4": {"return": -5.0, "score": 0.5}},
              "adaptation": {"0": {"return": -9.0, "score": 0.1}, "1": {"return": -5.0, "score": 0.5}}}
    benchmark.write_result(out, cell, result)
    monkeypatch.setattr(benchmark, "run_cell", lambda *a: pytest.fail("--report_only must not run a cell"))
    cli_main(["benchmark", "--suite", str(suite_file), "--out", str(out), "--report_only", "--no_progress"])
    report = (out / "report.md").read_text()
    assert "| MACAW | -5.00 | 0.500 | 1 | 1 |" in report and "| Meta-BC |" not in report  # one seed, no s.e.
    assert benchmark.finished_results(suite, out) == [result]
    with pytest.raises(SystemExit):
        cli_main(["benchmark", "--suite", str(suite_file), "--out", str(tmp_path / "empty"), "--report_only"])
