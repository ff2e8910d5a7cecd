"""Run reports: ``metrics.json`` (machine-readable) and ``report.md`` (a markdown table), written atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically: see :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    A reader never sees a half-written file, and a killed writer leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays/scalars and tensors
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


def write_metrics_json(path: str | os.PathLike, metrics: Mapping[str, Any]) -> Path:
    """Write ``metrics`` (numbers, arrays, tensors, nested dicts) as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(_jsonable(metrics), indent=2, sort_keys=True) + "\n")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats with 3 decimals, ``None`` as ``-``."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"markdown_table: row {row!r} has {len(row)} cells for {len(headers)} headers")
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


def render_report(evaluation: Mapping[str, Any], title: str = "Evaluation report", notes: str = "") -> str:
    """The markdown report of one evaluation (the dict built by ``AdaptationEvaluator``).

    Args:
        evaluation: keys ``summary`` (``{metric: value}``), ``tasks`` (list of per-task dicts with
            ``task_id``, ``task``, ``return``, ``random_return``, ``best_behaviour_return``, ``score`` and
            optionally ``success``), optionally ``curve`` (``{steps: {"return": x, "score": y}}``) and
            ``settings`` (``{name: value}``).
        title: the top heading.
        notes: free text placed under the title (e.g. the command that produced the run).
    """
    parts = [f"# {title}", ""]
    if notes:
        parts += [notes.strip(), ""]
    summary = evaluation.get("summary", {})
    if summary:
        parts += ["## Summary", "", markdown_table(["metric", "value"], sorted(summary.items())), ""]
    tasks = evaluation.get("tasks", [])
    if tasks:
        has_success = any(t.get("success") is not None for t in tasks)
        headers = ["task id", "task", "return", "random return", "best behaviour return", "normalised score"]
        headers += ["success rate"] if has_success else []
        rows = []
        for t in tasks:
            row = [t["task_id"], json.dumps(t.get("task", {})), t["return"], t["random_return"],
                   t["best_behaviour_return"], t["score"]]
            rows.append(row + ([t.get("success")] if has_success else []))
        parts += ["## Held-out tasks", "", markdown_table(headers, rows), ""]
    curve = evaluation.get("curve", {})
    if curve:
        rows = [[int(s), v["return"], v["score"]] for s, v in sorted(curve.items(), key=lambda kv: int(kv[0]))]
        parts += ["## Adaptation curve", "", markdown_table(["adaptation steps", "mean return", "mean score"], rows)]
        parts += [""]
    settings = evaluation.get("settings", {})
    if settings:
        parts += ["## Settings", "", markdown_table(["setting", "value"], sorted(settings.items())), ""]
    return "\n".join(parts)


def write_report(
    directory: str | os.PathLike, evaluation: Mapping[str, Any], title: str = "Evaluation report", notes: str = ""
) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``report.md`` for one evaluation into ``directory`` (both atomically).

    Returns:
        The two paths, ``(metrics.json, report.md)``.
    """
    directory = Path(directory)
    metrics = write_metrics_json(directory / "metrics.json", evaluation)
    report = atomic_write_text(directory / "report.md", render_report(evaluation, title=title, notes=notes))
    return metrics, report
