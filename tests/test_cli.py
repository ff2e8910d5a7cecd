"""The ``lit-offmeta`` console script: LightningCLI subcommands plus ``collect``."""

import subprocess
import sys

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


def test_a_tiny_fit_prints_no_warnings(tmp_path):
    """A newcomer's first run shows no warning: no override warning from the library, and the upstream
    deprecations in lit_offmeta.cli.UPSTREAM_WARNINGS filtered (Lightning's warnings print as `file:line: text`)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {"cwd": tmp_path}
    collect = subprocess.run([sys.executable, "-m", "lit_offmeta.cli", "collect", "--config",
                              str(root / "configs" / "collect" / "point_robot_tiny.yaml"), "--no_progress"],
                             capture_output=True, text=True, timeout=120, **env)
    assert collect.returncode == 0, collect.stderr
    fit = subprocess.run([sys.executable, "-m", "lit_offmeta.cli", "fit", "--config",
                          str(root / "configs" / "macaw" / "point_robot_tiny.yaml"), "--trainer.max_steps=25",
                          "--trainer.enable_progress_bar=false"], capture_output=True, text=True, timeout=300, **env)
    assert fit.returncode == 0, fit.stderr
    warnings = [line for line in (fit.stdout + fit.stderr).splitlines()
                if re.search(r"\.py:\d+: ", line) or "Warning" in line]
    assert warnings == []
