"""``make demo`` end to end at tiny sizes: data collected, MACAW trained, report, metrics and plot written."""

from __future__ import annotations

import json

import pytest

from lit_offmeta import demo


@pytest.mark.slow
def test_demo_runs_end_to_end_and_writes_its_outputs(tmp_path):
    out = tmp_path / "demo"
    argv = ["--out", str(out), "--preset", "tiny", "--train-ids", "0,1", "--test-ids", "2", "--batch-size", "32",
            "--width", "16", "--max-meta-steps", "4", "--evals", "1", "--train-minutes", "1", "--no_progress",
            "--min-score", "-1000"]
    assert demo.main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["demo"]["meta_updates"] == 4 and metrics["demo"]["passed"] is True
    assert [t["task_id"] for t in metrics["tasks"]] == [2]
    assert set(metrics["curve"]) == {"0", "1", "5", "20"}
    report = (out / "report.md").read_text()
    assert "Held-out normalised score after one adaptation step" in report and "| 2 |" in report
    assert (out / "adaptation.png").stat().st_size > 1000
    assert len(list((out / "data" / "point_robot").glob("task_*"))) == 3

    # a second run reuses the data and fails loudly below the threshold
    assert demo.main([*argv[:-1], "1000"]) == 1


def test_demo_rejects_a_config_that_is_not_macaw(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  class_path: x.Other\ndata:\n  class_path: y.OfflineMetaDataModule\n")
    with pytest.raises(ValueError, match="must name MACAW"):
        demo.read_config(bad)
    with pytest.raises(ValueError, match="does not exist"):
        demo.read_config(tmp_path / "missing.yaml")
