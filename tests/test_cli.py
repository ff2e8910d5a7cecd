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
