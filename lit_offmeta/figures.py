"""Saving matplotlib figures: headless (Agg backend) and atomic, for every module that draws one.

Import ``plt`` from here rather than ``matplotlib.pyplot`` directly, so that the headless backend is chosen
before pyplot is first used.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training and evaluation run on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt", "save_figure"]


def save_figure(fig, path: str | Path, dpi: float | None = None) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (a temporary file in the same folder, then a rename, so no
    half-written image is left behind), creating the folder, and close ``fig``; returns the path."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, format="png", dpi=dpi)
            os.chmod(tmp, 0o644)  # mkstemp makes the file private; a figure is for reading
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    finally:
        plt.close(fig)
    return path
