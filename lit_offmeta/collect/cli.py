"""``lit-offmeta collect``: make one offline dataset per task with a behaviour agent that learns the task.

Examples::

    lit-offmeta collect --family point_robot --preset small --out data/
    lit-offmeta collect --config configs/collect/point_robot_small.yaml
    lit-offmeta collect --family cheetah_vel --preset small --out data/ --tasks 0-9 --seed 1
    lit-offmeta collect --family grid_navi --preset small --out data/ --set episodes_per_task=800
    torchrun --nproc_per_node 4 -m lit_offmeta.cli collect --family cheetah_vel --preset medium --out data/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from lit_offmeta.collect.distributed import launched_ranks
from lit_offmeta.collect.presets import PRESETS, CollectConfig, available_presets, get_preset
from lit_offmeta.collect.runner import collect

CONFIG_KEYS = ("family", "preset", "out", "seed", "tasks", "settings")
"""Top-level keys of a collect config file; ``settings`` overrides fields of the preset."""

EPILOG = """presets (family: presets):
{presets}

Each preset's settings: `lit-offmeta collect --family F --preset P --print_config`.
A config file is YAML with the keys {keys}; command-line options override it, e.g.
  family: point_robot
  preset: small
  out: data/
  seed: 0
  settings: {{episodes_per_task: 200}}

The output directory holds one dataset per task (task parameters and behaviour metadata included). A rerun
with the same --out and settings skips finished tasks, so a killed run resumes where it stopped.
"""


def parse_tasks(text: str | list[int] | None) -> list[int] | None:
    """``"0,3,5-9"`` (or a list of ints from a config file) -> sorted unique indices; ``None`` passes through."""
    if text is None:
        return None
    if isinstance(text, list):
        items: list[Any] = text
    else:
        items = [part.strip() for part in str(text).split(",") if part.strip()]
    indices: list[int] = []
    for item in items:
        try:
            if isinstance(item, str) and "-" in item:
                low, high = (int(v) for v in item.split("-", 1))
                if high < low:
                    raise ValueError
                indices.extend(range(low, high + 1))
            else:
                indices.append(int(item))
        except ValueError:
            raise ValueError(f"--tasks: cannot read {item!r}; use indices and ranges like '0,3,5-9'") from None
    if not indices:
        raise ValueError("--tasks: no task indices given")
    return sorted(set(indices))


def parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` with a YAML value (``episodes_per_task=200``, ``agent_kwargs={noise_end: 0.2}``)."""
    if "=" not in text:
        raise ValueError(f"--set: expected key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a collect config YAML and check its keys."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config: {path} does not exist or is not a file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"--config: {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config: {path} must hold a mapping with keys {list(CONFIG_KEYS)}")
    unknown = sorted(set(data) - set(CONFIG_KEYS))
    if unknown:
        raise ValueError(f"--config: {path} has unknown key(s) {unknown}; allowed: {list(CONFIG_KEYS)}")
    if "settings" in data and not isinstance(data["settings"], dict):
        raise ValueError(f"--config: {path}: 'settings' must be a mapping of preset fields to values")
    return data


def build_parser() -> argparse.ArgumentParser:
    presets = "\n".join(f"  {family}: {', '.join(names)}" for family, names in available_presets().items())
    parser = argparse.ArgumentParser(
        prog="lit-offmeta collect",
        description=(
            "Record offline meta-RL data: for each task of a family, a behaviour agent learns the task from "
            "scratch and its whole lifetime of episodes (early poor, late near-expert) is saved as that "
            "task's dataset."
        ),
        epilog=EPILOG.format(presets=presets, keys=", ".join(CONFIG_KEYS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="YAML config file (see below); options override it")
    parser.add_argument("--family", help=f"task family, one of: {', '.join(sorted(PRESETS))}")
    parser.add_argument("--preset", help="size preset: tiny (tests), small (a 2-core CPU), paper (a big box)")
    parser.add_argument("--out", metavar="DIR", help="dataset root directory (created if missing; reused to resume)")
    parser.add_argument("--seed", type=int, help="run seed (default 0)")
    parser.add_argument("--tasks", help="task indices into the family's default tasks, e.g. '0,3,5-9' "
                                        "(default: the preset's first num_tasks)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="override one preset setting (repeatable), e.g. --set episodes_per_task=200")
    parser.add_argument("--print_config", action="store_true", help="print the resolved settings and exit")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    return parser


def resolve(args: argparse.Namespace) -> tuple[CollectConfig, dict[str, Any]]:
    """Merge config file, preset and command line into a :class:`CollectConfig` plus run options."""
    file_values = load_config_file(args.config) if args.config else {}
    family = args.family or file_values.get("family")
    preset = args.preset or file_values.get("preset")
    if not family or not preset:
        raise ValueError("collect: --family and --preset are required (on the command line or in --config)")
    config = get_preset(str(family), str(preset))
    settings = dict(file_values.get("settings") or {})
    settings.update(parse_setting(s) for s in args.settings)
    for key in ("family", "preset"):
        if key in settings:
            raise ValueError(f"collect: set {key!r} with --{key}, not as a setting")
    if settings:
        config = config.replace(**settings)
    seed = args.seed if args.seed is not None else file_values.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"--seed: must be an integer, got {seed!r}")
    options = {
        "out": args.out or file_values.get("out"),
        "seed": seed,
        "tasks": parse_tasks(args.tasks if args.tasks is not None else file_values.get("tasks")),
    }
    return config, options


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``lit-offmeta collect``; exits with status 2 and a one-line message on bad input."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config, options = resolve(args)
        if args.print_config:
            print(json.dumps({"config": config.to_dict(), **options}, indent=2))
            return
        if not options["out"]:
            raise ValueError("collect: --out DIR is required (on the command line or as 'out' in --config)")
        ranks = launched_ranks()  # torchrun: this process's share (lit_offmeta/collect/distributed.py)
        collect(config, options["out"], seed=options["seed"], task_indices=options["tasks"],
                progress=not args.no_progress and ranks.rank == 0,
                log=print if ranks.rank == 0 else (lambda msg: print(f"[rank {ranks.rank}] {msg}")), ranks=ranks)
    except ValueError as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
