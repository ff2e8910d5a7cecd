"""A progress bar for work done inside a callback hook (the evaluator's rollouts), shown where the trainer's is.

Lightning's progress bars only follow its own loops (train/val/test batches); evaluation rollouts run inside one
hook call and would otherwise look like a hang. :class:`HookProgress` draws one more bar in the trainer's
display: a task in :class:`~lightning.pytorch.callbacks.RichProgressBar`'s live table (a second writer under its
live display would garble it), or a ``tqdm`` bar under any other progress bar. It shows nothing when the
trainer's progress bar is disabled (``enable_progress_bar=False``), on ranks other than 0, and without a trainer.
"""

from __future__ import annotations

import sys
from typing import Any

from lightning.pytorch.callbacks import RichProgressBar
from tqdm.auto import tqdm


class HookProgress:
    """``with HookProgress(trainer, total, "rollouts") as bar: ... bar.advance(n)``."""

    def __init__(self, trainer: Any, total: int, description: str) -> None:
        self._rich: RichProgressBar | None = None
        self._task: Any = None
        self._tqdm: Any = None
        bar = getattr(trainer, "progress_bar_callback", None) if trainer is not None else None
        if bar is None or not bar.is_enabled or not trainer.is_global_zero:
            return
        if isinstance(bar, RichProgressBar):
            if bar.progress is not None:  # None before the loop started its live display: draw nothing then
                self._rich = bar
                self._task = bar.progress.add_task(description, total=total)
                bar.refresh()
        else:
            # stdout and no trace left behind, as Lightning's TQDMProgressBar does for its validation bar
            self._tqdm = tqdm(total=total, desc=description, leave=False, dynamic_ncols=True, file=sys.stdout)

    @property
    def shown(self) -> bool:
        """Whether a bar is drawn."""
        return self._rich is not None or self._tqdm is not None

    def advance(self, n: int = 1) -> None:
        if self._rich is not None and self._rich.progress is not None:
            self._rich.progress.update(self._task, advance=n)
            self._rich.refresh()
        elif self._tqdm is not None:
            self._tqdm.update(n)

    def close(self) -> None:
        if self._rich is not None and self._rich.progress is not None:
            self._rich.progress.remove_task(self._task)
            self._rich.refresh()
        elif self._tqdm is not None:
            self._tqdm.close()
        self._rich = self._tqdm = None

    def __enter__(self) -> HookProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
