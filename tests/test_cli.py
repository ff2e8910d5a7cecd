"""The ``lit-offmeta`` console script: LightningCLI subcommands plus ``collect``."""

import subprocess
import sys


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
