"""An :class:`~lit_offmeta.algorithms.borel.pipeline.OfflineVariBAD` run's evaluations against RL updates, read from
its TensorBoard logs: a table, and optionally a plot comparing runs.

    python -m lit_offmeta.algorithms.borel.curves runs/seed0 runs/seed1 --plot docs/figures/curves.png

Why RL updates: Lightning's logged step counts batches, VAE stage included, and the checkpoint names count optimizer
steps (SAC takes two per update), so neither says how far the RL stage got. The
:class:`~lit_offmeta.callbacks.AdaptationEvaluator` logs each evaluation at an epoch's end, at batch ``vae_steps +
rl_updates - 1`` (counted from 0; ``vae_steps`` read from the run's ``hparams.yaml``); evaluations still in the VAE
stage are left out.
A resumed run writes a new ``lightning_logs/version_*`` folder; the folders are merged in order, a later one's value
winning at the same step.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_offmeta.figures import plt, save_figure

TAGS = ("rollout/success_ep1", "rollout/success_ep2", "rollout/return_mean")


def _versions(run_dir: Path) -> list[Path]:
    """The folders holding the run's event files, oldest version first (``version_10`` after ``version_9``)."""
    folders = {p.parent for p in run_dir.rglob("events.out.tfevents.*")}

    def key(folder: Path) -> tuple[int, str]:
        match = re.fullmatch(r"version_(\d+)", folder.name)
        return (int(match.group(1)) if match else -1, str(folder))

    return sorted(folders, key=key)


def _vae_steps(folder: Path) -> int:
    path = folder / "hparams.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no hparams.yaml beside the event file, so the VAE steps are unknown")
    hparams = yaml.safe_load(path.read_text()) or {}
    if "vae_steps" not in hparams:
        raise ValueError(f"{path}: no vae_steps; is this an OfflineVariBAD run?")
    return int(hparams["vae_steps"])


def load_curves(run_dir: str | Path, tags: tuple[str, ...] = TAGS) -> dict[str, dict[int, float]]:
    """``{tag: {rl_updates: value}}`` for the evaluations of the RL stage logged under ``run_dir`` (every version
    merged)."""
    run_dir = Path(run_dir)
    folders = _versions(run_dir)
    if not folders:
        raise FileNotFoundError(f"{run_dir}: no TensorBoard event files (events.out.tfevents.*) under it")
    curves: dict[str, dict[int, float]] = {tag: {} for tag in tags}
    for folder in folders:
        vae_steps = _vae_steps(folder)
        for events in sorted(folder.glob("events.out.tfevents.*")):
            acc = EventAccumulator(str(events), size_guidance={"scalars": 0})  # 0: keep every point
            acc.Reload()
            for tag in set(curves) & set(acc.Tags()["scalars"]):
                for event in acc.Scalars(tag):
                    if event.step + 1 > vae_steps:
                        curves[tag][event.step + 1 - vae_steps] = float(event.value)
    return {tag: dict(sorted(points.items())) for tag, points in curves.items()}


def format_table(name: str, curves: dict[str, dict[int, float]]) -> str:
    """One row per evaluation: RL updates, then each tag's value."""
    steps = sorted({s for points in curves.values() for s in points})
    heads = [tag.removeprefix("rollout/").removeprefix("rollout_") for tag in curves]
    widths = [max(14, len(head)) for head in heads]
    lines = [f"{name}", "rl_updates  " + "  ".join(f"{head:>{w}}" for head, w in zip(heads, widths))]
    for step in steps:
        values = (curves[tag].get(step) for tag in curves)
        lines.append(f"{step:>10}  " + "  ".join(f"{v:>{w}.3f}" if v is not None else f"{'-':>{w}}"
                                                 for v, w in zip(values, widths)))
    return "\n".join(lines)


def plot_curves(
    runs: dict[str, dict[int, float]], out: str | Path, ylabel: str, title: str = "", target: float | None = None
) -> Path:
    """One line per run (``{label: {rl_updates: value}}``) in a PNG at ``out``, written atomically; ``target``: a
    dashed horizontal line (an issue's goal, say)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, points in runs.items():
        ax.plot(list(points), list(points.values()), marker="o", label=label)
    if target is not None:
        ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set_xlabel("RL updates")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (a trainer's default_root_dir or below)")
    parser.add_argument("--tag", default="rollout/success_ep2", help="the scalar to plot (default: %(default)s)")
    parser.add_argument("--plot", type=Path, help="write a PNG comparing the runs' --tag")
    parser.add_argument("--labels", nargs="+", help="the runs' names in the plot's legend (default: their paths)")
    parser.add_argument("--target", type=float, help="draw this value as a dashed line")
    parser.add_argument("--title", default="")
    args = parser.parse_args(argv)
    if args.labels is not None and len(args.labels) != len(args.runs):
        parser.error(f"--labels: {len(args.labels)} labels for {len(args.runs)} runs")
    tags = tuple(dict.fromkeys((*TAGS, args.tag)))
    names = args.labels or [str(run) for run in args.runs]
    if len(set(names)) != len(names):
        parser.error("two runs share a name; give --labels")
    loaded = {name: load_curves(run, tags) for name, run in zip(names, args.runs)}
    print("\n\n".join(format_table(name, curves) for name, curves in loaded.items()))
    if args.plot:
        runs = {name: curves[args.tag] for name, curves in loaded.items()}
        path = plot_curves(runs, args.plot, args.tag, args.title, args.target)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
