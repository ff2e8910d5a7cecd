"""The shipped MACAW and baseline configs are complete: each lists every argument of its model and datamodule
(the nested ``net`` / ``inner`` blocks every field), as ``--print_config`` writes them, so a config shows every
setting it runs with."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted([*(ROOT / "configs" / "macaw").rglob("*.yaml"), *(ROOT / "configs" / "baselines").rglob("*.yaml"),
                  *(ROOT / "configs" / "focal").rglob("*.yaml"), *(ROOT / "configs" / "corro").rglob("*.yaml"),
                  *(ROOT / "configs" / "unicorn").rglob("*.yaml")])


def _missing(spec: dict) -> list[str]:
    module, _, name = spec["class_path"].rpartition(".")
    parameters = inspect.signature(getattr(importlib.import_module(module), name).__init__).parameters
    given = spec.get("init_args") or {}
    missing = [p for p in parameters if p != "self" and p not in given]
    for key, value in given.items():
        default = parameters[key].default if key in parameters else None
        if dataclasses.is_dataclass(default):
            missing += [f"{key}.{f.name}" for f in dataclasses.fields(default) if f.name not in (value or {})]
    return missing


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_lists_every_model_and_data_argument(path):
    config = yaml.safe_load(path.read_text())
    for part in ("model", "data"):
        assert _missing(config[part]) == [], f"{path.name}: {part}.init_args lacks these arguments"


def test_the_check_sees_a_missing_nested_field():
    spec = {"class_path": "lit_offmeta.algorithms.MultiTaskAWR",
            "init_args": {"obs_dim": 2, "action_dim": 2, "net": {"width": 8}}}
    missing = _missing(spec)
    assert "net.depth" in missing and "lr_value" in missing and "obs_dim" not in missing
