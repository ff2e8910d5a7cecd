"""Reading an OfflineVariBAD run's evaluation curves from its TensorBoard logs (lit_offmeta.algorithms.borel.curves)."""

from __future__ import annotations

import pytest
import yaml
from torch.utils.tensorboard import SummaryWriter

from lit_offmeta.algorithms.borel import curves


def _version(root, name: str, vae_steps: int | None, points: dict[str, dict[int, float]], **hparams) -> None:
    folder = root / "lightning_logs" / name
    folder.mkdir(parents=True)
    if vae_steps is not None:
        hparams = {"vae_steps": vae_steps} | hparams
        (folder / "hparams.yaml").write_text(yaml.safe_dump(hparams))
    writer = SummaryWriter(str(folder))
    for tag, values in points.items():
        for step, value in values.items():
            writer.add_scalar(tag, value, step)
    writer.close()


def test_steps_become_rl_updates_and_resumed_versions_merge(tmp_path):
    # An evaluation after u RL updates is logged at batch vae_steps + u - 1 (Lightning counts batches from 0); those of
    # the VAE stage are left out.
    _version(tmp_path, "version_0", 300, {"rollout/success_ep2": {299: 0.0, 799: 0.25, 1299: 0.5},
                                          "rollout/other": {799: 9.0}})
    # Resumed from 1000 updates: the re-evaluation at 1500 replaces nothing, the one at 1000 wins over version_0's.
    _version(tmp_path, "version_1", 300, {"rollout/success_ep2": {1299: 0.75, 1799: 1.0}})
    got = curves.load_curves(tmp_path, ("rollout/success_ep2", "rollout/success_ep1"))
    assert got == {"rollout/success_ep2": {500: 0.25, 1000: 0.75, 1500: 1.0}, "rollout/success_ep1": {}}


def test_versions_sort_numerically(tmp_path):
    _version(tmp_path, "version_9", 0, {"rollout/success_ep2": {9: 0.1}})
    _version(tmp_path, "version_10", 0, {"rollout/success_ep2": {9: 0.9}})
    assert curves.load_curves(tmp_path)["rollout/success_ep2"] == {10: pytest.approx(0.9)}


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        curves.load_curves(tmp_path)
    _version(tmp_path / "a", "version_0", None, {"rollout/success_ep2": {9: 0.1}})
    with pytest.raises(FileNotFoundError, match="no hparams.yaml"):
        curves.load_curves(tmp_path / "a")
    folder = tmp_path / "b" / "lightning_logs" / "version_0"
    _version(tmp_path / "b", "version_0", None, {"rollout/success_ep2": {9: 0.1}})
    (folder / "hparams.yaml").write_text("lr: 0.1\n")
    with pytest.raises(ValueError, match="no vae_steps"):
        curves.load_curves(tmp_path / "b")


def test_cli_prints_a_table_and_writes_the_plot(tmp_path, capsys):
    _version(tmp_path / "s0", "version_0", 100, {"rollout/success_ep2": {104: 0.5, 109: 0.85}})
    _version(tmp_path / "s1", "version_0", 100, {"rollout/success_ep2": {104: 0.25}})
    out = tmp_path / "fig" / "curves.png"
    runs = [str(tmp_path / "s0"), str(tmp_path / "s1")]
    curves.main([*runs, "--labels", "seed 0", "seed 1", "--plot", str(out), "--target", "0.8"])
    printed = capsys.readouterr().out
    assert "seed 0" in printed and "seed 1" in printed
    rows = [line.split() for line in printed.splitlines() if line.strip()[:1].isdigit()]
    assert rows[0][0] == "5" and float(rows[0][2]) == pytest.approx(0.5)  # rl_updates, success_ep1 "-", ep2
    assert rows[0][1] == "-"
    assert rows[1][0] == "10" and float(rows[1][2]) == pytest.approx(0.85)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    with pytest.raises(SystemExit):
        curves.main([str(tmp_path / "s0"), "--labels", "a", "b"])
