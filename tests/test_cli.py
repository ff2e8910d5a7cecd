"""The ``lit-offmeta`` console script: LightningCLI subcommands plus ``collect``."""

import subprocess
import sys

import pytest
import yaml


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lit_offmeta.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_lightning_subcommands_and_collect():
    """`lit-offmeta --help` names fit/validate/test/predict and the collect command."""
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    for subcommand in ("fit", "validate", "test", "predict", "collect"):
        assert subcommand in result.stdout


def test_unknown_subcommand_fails_with_usage():
    """A typo in the subcommand is an error that shows the usage line, not a traceback."""
    result = _run("fitt")
    assert result.returncode != 0
    assert "usage" in (result.stdout + result.stderr).lower()
    assert "Traceback" not in result.stderr


def test_short_class_names_resolve_to_the_library_classes():
    """`--model MACAW --data OfflineMetaDataModule` (no module path) builds the library's classes' config."""
    result = _run(
        "fit", "--model", "MACAW", "--model.obs_dim=2", "--model.action_dim=2", "--data", "OfflineMetaDataModule",
        "--data.family=point_robot", "--data.data_dir=data/", "--print_config",
    )
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["model"]["class_path"] == "lit_offmeta.algorithms.MACAW"
    assert printed["model"]["init_args"]["obs_dim"] == 2
    assert printed["data"]["class_path"] == "lit_offmeta.datamodules.OfflineMetaDataModule"


def test_fit_help_lists_the_library_models_and_datamodules():
    result = _run("fit", "--help")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # the help wraps lines
    for name in (
        "lit_offmeta.algorithms.MACAW", "lit_offmeta.algorithms.MetaBC", "lit_offmeta.algorithms.MultiTaskAWR",
        "lit_offmeta.algorithms.OfflinePEARL", "lit_offmeta.algorithms.borel.pipeline.OfflineVariBAD",
        "lit_offmeta.datamodules.OfflineMetaDataModule", "lit_offmeta.datamodules.trajectory.TrialDataModule",
    ):
        assert name in text, f"{name} missing from `fit --help`"


@pytest.mark.slow
def test_the_readme_first_run_works_verbatim_and_prints_no_warnings(tmp_path):
    """The README's first run, as a newcomer types it (collect, fit, test, predict, export from the repository's
    configs): each step writes what the README says, and none prints a warning: no override warning from the
    library, and the upstream ones in lit_offmeta.cli filtered (Lightning's print as `file:line: text`)."""
    import json
    import re
    from pathlib import Path

    import numpy as np

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## First run"):]
    block = section[section.index("```bash") + len("```bash"):section.index("```", section.index("```bash") + 7)]
    commands = [c.split("#")[0].strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]
    assert [c.split()[1] for c in commands] == ["collect", "fit", "test", "predict", "export"]
    for command in commands:
        args = command.split()[1:]
        args = [str(root / a) if a.startswith("configs/") else a for a in args]  # run from tmp_path
        result = subprocess.run([sys.executable, "-m", "lit_offmeta.cli", *args, *(
            ["--no_progress"] if args[0] == "collect" else ["--trainer.enable_progress_bar=false"]
            if args[0] in ("fit", "test", "predict") else [])], capture_output=True, text=True, timeout=300,
            cwd=tmp_path)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
        noise = [line for line in (result.stdout + result.stderr).splitlines()
                 if re.search(r"\.py:\d+: ", line) or "Warning" in line or "Tip:" in line]
        assert noise == [], command
    run = tmp_path / "lightning_logs" / "macaw_point_robot_tiny"
    assert json.loads((run / "version_1" / "metrics.json").read_text())["settings"]["global_step"] == 60
    actions = np.load(tmp_path / "predictions" / "task_2.actions.npy")
    assert actions.shape == (64, 2) and np.isfinite(actions).all()
    assert sorted(p.name for p in (tmp_path / "policy_task2").iterdir()) == [
        "architecture.json", "policy.onnx", "policy.pt", "weights.pt"]
