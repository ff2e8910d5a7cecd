"""Pictures of evaluation results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lit_offmeta.figures import plt, save_figure


def plot_adaptation_curve(
    curve: Mapping[int, np.ndarray],
    path: str | os.PathLike,
    ylabel: str = "return",
    title: str = "Held-out return after k adaptation steps",
    reference: Mapping[str, float] | None = None,
) -> Path:
    """Draw :func:`adaptation_curve_figure` to a PNG at ``path``, written to a temporary name first, then renamed
    (never half-written); returns the path. Raises ``ValueError`` as :func:`adaptation_curve_figure` does."""
    return save_figure(adaptation_curve_figure(curve, ylabel, title, reference), path)


def adaptation_curve_figure(
    curve: Mapping[int, np.ndarray],
    ylabel: str = "return",
    title: str = "Held-out return after k adaptation steps",
    reference: Mapping[str, float] | None = None,
):
    """Per-task values (thin lines) and their mean (thick) against the number of adaptation steps.

    Args:
        curve: ``{steps: [num_tasks] values}`` (e.g. returns after 0, 1, 5, 20 steps).
        ylabel: the y axis label.
        title: the figure title.
        reference: horizontal reference lines, ``{label: value}`` (e.g. random policy, best behaviour).

    Returns:
        The matplotlib figure; the caller closes it (:func:`save_figure` does).

    Raises:
        ValueError: an empty curve or per-step arrays of different lengths.
    """
    if not curve:
        raise ValueError("plot_adaptation_curve: curve is empty; pass {steps: values}")
    steps = sorted(int(s) for s in curve)
    values = np.stack([np.asarray(curve[s], dtype=np.float64).reshape(-1) for s in steps], axis=1)  # [task, k]
    fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=120)
    try:
        for row in values:
            ax.plot(steps, row, color="tab:blue", alpha=0.25, linewidth=1)
        ax.plot(steps, values.mean(axis=0), color="tab:blue", marker="o", linewidth=2.5, label="mean over tasks")
        for i, (label, value) in enumerate((reference or {}).items()):
            ax.axhline(value, linestyle="--", color=f"C{i + 1}", label=label)
        ax.set_xscale("symlog", linthresh=1)  # 0 steps (the meta-policy) stays on the axis
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.set_xlabel("adaptation steps")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    return fig
