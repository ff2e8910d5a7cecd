"""Plot held-out return against meta-training batches (log x axis, as MACAW's paper) from compare_baselines JSON.

    python benchmarks/plot_learning_curves.py runs/cv/main_macaw.json runs/cv/main_baselines.json \\
        --title "Cheetah-Vel (small), held-out tasks" --out docs/figures/cheetah_vel_learning_curves.png

Each algorithm's curve is the mean over the seeds found in the files (shaded: ± standard error where there are
two or more seeds at a point). Prints the path it wrote.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def curves(paths: list[Path]) -> dict[str, dict[int, list[float]]]:
    """``{algorithm: {batches: [return per seed]}}`` from compare_baselines result files."""
    out: dict[str, dict[int, list[float]]] = {}
    for path in paths:
        try:
            results = json.loads(path.read_text())["results"]
        except (OSError, ValueError, KeyError) as err:
            raise SystemExit(f"{path}: not a compare_baselines result file ({err})") from None
        for result in results:
            for batches, point in result["curve"].items():
                out.setdefault(result["algorithm"], {}).setdefault(int(batches), []).append(point["return"])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="JSON files written by compare_baselines.py --out")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--title", default="held-out return during meta-training")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, points in curves(args.results).items():
        xs = sorted(points)
        mean = np.array([np.mean(points[x]) for x in xs])
        se = np.array([np.std(points[x], ddof=1) / math.sqrt(len(points[x])) if len(points[x]) > 1 else 0.0
                       for x in xs])
        ax.plot(xs, mean, marker="o", label=name)
        ax.fill_between(xs, mean - se, mean + se, alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("meta-training task batches (log scale)")
    ax.set_ylabel("held-out return after adaptation")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.stem + ".tmp.png")  # written whole, then renamed: no half-written PNG
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
