"""Files a user may be handed (checkpoints, exported weights) are never unpickled: a payload that would run code
on load is refused and does not run."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from lit_offmeta.cli import main
from lit_offmeta.export import load_exported

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this writes a marker file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def _evil_file(path: Path, marker: Path, wrap) -> Path:
    torch.save(wrap(_Payload(marker)), path, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    return path


def test_a_checkpoint_with_a_code_payload_is_refused_by_the_cli(tmp_path):
    marker = tmp_path / "pwned.txt"
    ckpt = _evil_file(tmp_path / "evil.ckpt", marker, lambda p: {"state_dict": {}, "hyper_parameters": {"x": p}})
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|global"):
        main(["test", "--config", str(ROOT / "configs" / "macaw" / "point_robot_tiny.yaml"), f"--ckpt_path={ckpt}",
              "--trainer.enable_progress_bar=false", f"--trainer.logger.init_args.save_dir={tmp_path / 'logs'}"])
    assert not marker.exists()


def test_exported_weights_with_a_code_payload_are_refused(tmp_path):
    from torch import nn

    from lit_offmeta.export import export_policy

    export_policy(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), tmp_path / "p", obs_dim=2, formats=["torchscript"])
    marker = tmp_path / "pwned.txt"
    _evil_file(tmp_path / "p" / "weights.pt", marker, lambda p: {"0.weight": p})
    with pytest.raises(ValueError, match="weights.pt does not load"):
        load_exported(tmp_path / "p")
    assert not marker.exists()
