"""``lit-offmeta data``: look at a data root.

    lit-offmeta data stats DIR                      every family under DIR: table + behaviour-curve PNG
    lit-offmeta data stats DIR --family cheetah_vel --json stats.json --plot curves.png

``stats`` prints, per task, the transitions, episodes and the median episode return in the first, middle and last
third of the behaviour agent's lifetime (the full quantiles, the spaces and the Minari fields go to ``--json``),
and draws each task's return along its lifetime (MACAW's Figs. 8-9), by default to
``DIR/<family>/behaviour_curves.png``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from lit_offmeta.data.stats import TaskStats, dataset_stats, families_in, format_table
from lit_offmeta.data.storage import write_json_atomic
from lit_offmeta.figures import plt, save_figure

CURVES_NAME = "behaviour_curves.png"


def smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` values (shorter at the start), the same length as ``values``."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot_behaviour_curves(family: str, stats: list[TaskStats], path: str | os.PathLike) -> Path:
    """Each task's episode return along its lifetime (smoothed over 2% of its episodes), their mean in black."""
    fig, ax = plt.subplots(figsize=(7, 4))
    longest = max(s.episodes for s in stats)
    padded = np.full((len(stats), longest), np.nan)
    for row, s in enumerate(stats):
        curve = smoothed(np.asarray(s.returns), max(1, s.episodes // 50))
        padded[row, : s.episodes] = curve
        ax.plot(np.arange(s.episodes), curve, lw=0.6, alpha=0.35)
    ax.plot(np.arange(longest), np.nanmean(padded, axis=0), color="black", lw=2, label=f"mean over {len(stats)} tasks")
    ax.set_xlabel("episode in the task's lifetime (recording order)")
    ax.set_ylabel("episode return")
    ax.set_title(f"{family}: behaviour data along each task's lifetime")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def stats_main(args: argparse.Namespace) -> None:
    root = Path(args.dir)
    families = [args.family] if args.family else families_in(root)
    if not families:
        raise ValueError(f"data stats: no finished datasets under {root}; make some with `lit-offmeta collect`")
    if args.plot and len(families) > 1:
        raise ValueError(f"data stats: --plot names one file but {root} holds {families}; add --family")
    report = {}
    for family in families:
        stats = dataset_stats(root, family)
        print(format_table(family, stats))
        report[family] = [s.row() for s in stats]
        if not args.no_plot:
            path = plot_behaviour_curves(family, stats, args.plot or root / family / CURVES_NAME)
            print(f"behaviour curves: {path}")
        print()
    if args.json:
        write_json_atomic(args.json, report, indent=1)
        print(f"statistics: {args.json}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lit-offmeta data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    stats = commands.add_parser("stats", help="per-task sizes, lifetime return quantiles and behaviour curves")
    stats.add_argument("dir", help="a data root written by `lit-offmeta collect` (or an importer)")
    stats.add_argument("--family", help="one family (default: every family under DIR)")
    stats.add_argument("--json", help="also write every figure (quantiles, spaces, Minari fields) to this file")
    stats.add_argument("--plot", help=f"where the behaviour-curve PNG goes (default: DIR/<family>/{CURVES_NAME})")
    stats.add_argument("--no-plot", action="store_true", help="print the table only")
    return parser


def main(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    try:
        stats_main(args)
    except ValueError as err:
        raise SystemExit(f"lit-offmeta data {args.command}: {err}") from None
