"""``lit-offmeta benchmark``: methods x families x settings x seeds from one suite file, resumable, with a report.

    lit-offmeta benchmark --suite configs/benchmarks/point_robot.yaml --out runs/point_robot --workers 2

A suite (YAML) names:

* ``methods``: name -> a ``lit-offmeta fit`` config (model and data blocks); ``{family}`` in the path is replaced
  by the family's name, so one entry serves every family. Or name -> ``{config: PATH, data: {...}}``, where
  ``data`` replaces datamodule arguments for that method only (e.g. PEARL's 16 tasks per batch on a split with 13
  training tasks); a setting's arguments replace them in turn;
* ``families``: name -> ``{data: DIR}``, the data root written by ``lit-offmeta collect``;
* ``settings``: name -> datamodule arguments that replace the config's (``split``, ``window``,
  ``window_trajectories``, ``train_ids``/``test_ids``, ...); ``{}`` keeps the config's own;
* ``seeds``; ``meta_updates`` (training batches per run); ``curve_at`` (meta-update counts at which the held-out
  tasks are also evaluated: the learning curve);
* ``evaluation``: ``episodes`` per held-out task, ``batch_size`` of the adaptation data, ``steps`` (null: each
  method's own test-time default) and ``adaptation_steps`` (the adaptation curve: held-out return after each
  number of test-time steps); optionally ``step_size_grid`` (test-time step sizes to validate, below) and
  ``validation_tasks`` (how many training tasks validate them, default 5).

Every cell (method, family, setting, seed) trains the method from its config for ``meta_updates`` batches on the
family's data and evaluates it with the project's :class:`~lit_offmeta.callbacks.AdaptationEvaluator`; its result
is one JSON file under ``OUT/cells/``. With ``step_size_grid``, a method that names its test-time step sizes
(``TEST_TIME_STEP_SIZES``: MACAW's Adam steps after the learned one, multi-task AWR's fine-tuning rates) first adapts
to ``validation_tasks`` TRAINING tasks with each size for the curve's largest number of steps, and keeps the size of
the best return there (:func:`select_step_size`): a step size validated on the training tasks, never on the held-out
ones. The JSON, written atomically, so a rerun skips finished cells (a killed run resumes).
Cells run in ``--workers`` processes (one torch thread each), or as a job array on a cluster through submitit
(``--submitit LOG_DIR [--submitit_set slurm_partition=cpu]``; ``pip install 'lit-offmeta[cluster]'``).
``OUT/report.md`` then tables held-out return and normalised score (0: a uniformly random policy, 1: the best
trajectory in the task's data), mean +- standard error over seeds, and ``OUT/<family>_<setting>_learning.png`` /
``_adaptation.png`` plot the curves.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from lit_offmeta.callbacks import AdaptationEvaluator, normalised_score
from lit_offmeta.data.storage import write_json_atomic
from lit_offmeta.figures import plt, save_figure

SUITE_KEYS = {"name", "description", "methods", "families", "settings", "seeds", "meta_updates", "curve_at",
              "evaluation"}
EVALUATION_KEYS = {"episodes", "batch_size", "steps", "adaptation_steps", "step_size_grid", "validation_tasks"}


@dataclass(frozen=True)
class Cell:
    """One run of a suite: a method trained on one family's data under one setting, with one seed."""

    method: str
    family: str
    setting: str
    seed: int

    @property
    def path(self) -> Path:
        """Where its result goes, relative to the output folder."""
        return Path("cells") / self.family / self.setting / _slug(self.method) / f"seed_{self.seed}.json"


@dataclass
class Suite:
    """A parsed, checked suite file (see the module docstring)."""

    name: str
    methods: dict[str, str]
    families: dict[str, dict[str, Any]]
    settings: dict[str, dict[str, Any]]
    seeds: list[int]
    meta_updates: int
    curve_at: list[int] = field(default_factory=list)
    evaluation: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    root: Path = Path(".")
    method_data: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cells(self) -> list[Cell]:
        return [Cell(m, f, s, seed) for f in self.families for s in self.settings for m in self.methods
                for seed in self.seeds]

    def config_path(self, method: str, family: str) -> Path:
        path = Path(self.methods[method].format(family=family))
        return path if path.is_absolute() else self.root / path

    def data_arguments(self, cell: Cell) -> dict[str, Any]:
        """The datamodule arguments that replace the config's for ``cell``: the method's, then the setting's, then
        the family's data folder, the meta-update budget and the seed."""
        return {**self.method_data.get(cell.method, {}), **self.settings[cell.setting],
                "data_dir": str(self.families[cell.family]["data"]), "batches_per_epoch": self.meta_updates,
                "seed": cell.seed}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def load_suite(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Suite:
    """Read and check a suite file; relative config paths resolve against ``root`` (default: the working folder).

    Raises:
        ValueError: naming the file and the key that is missing, unknown or of the wrong kind, or a method config
            that does not exist for a family.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--suite: {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"--suite: {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"--suite: {path} must hold a mapping with keys {sorted(SUITE_KEYS)}")
    unknown = sorted(set(raw) - SUITE_KEYS)
    if unknown:
        raise ValueError(f"--suite: {path} has unknown key(s) {unknown}; allowed: {sorted(SUITE_KEYS)}")
    for key, kind in (("methods", dict), ("families", dict), ("seeds", list), ("meta_updates", int)):
        if not isinstance(raw.get(key), kind) or not raw[key]:
            raise ValueError(f"--suite: {path}: {key!r} is required and must be a non-empty {kind.__name__}")
    evaluation = raw.get("evaluation") or {}
    bad = sorted(set(evaluation) - EVALUATION_KEYS)
    if bad:
        raise ValueError(f"--suite: {path}: unknown evaluation key(s) {bad}; allowed: {sorted(EVALUATION_KEYS)}")
    families = {}
    for family, spec in raw["families"].items():
        if not isinstance(spec, dict) or "data" not in spec:
            raise ValueError(f"--suite: {path}: family {family!r} needs {{data: DIR}}")
        families[family] = spec
    methods, method_data = {}, {}
    for name, spec in raw["methods"].items():
        if isinstance(spec, dict):
            if set(spec) - {"config", "data"} or not isinstance(spec.get("config"), str) or not isinstance(
                    spec.get("data", {}), dict):
                raise ValueError(f"--suite: {path}: method {name!r} must be a config path or {{config: PATH, data: "
                                 f"{{ARGUMENT: VALUE}}}}, got {spec!r}")
            methods[str(name)], method_data[str(name)] = spec["config"], dict(spec.get("data") or {})
        else:
            methods[str(name)] = str(spec)
    suite = Suite(name=str(raw.get("name", path.stem)), methods=methods,
                  families=families, settings=raw.get("settings") or {"default": {}},
                  seeds=[int(s) for s in raw["seeds"]], meta_updates=int(raw["meta_updates"]),
                  curve_at=sorted(int(c) for c in raw.get("curve_at") or []), evaluation=evaluation,
                  description=str(raw.get("description", "")), root=Path(root or "."), method_data=method_data)
    for method in suite.methods:
        for family in suite.families:
            if not suite.config_path(method, family).is_file():
                raise ValueError(f"--suite: {path}: method {method!r} has no config "
                                 f"{suite.config_path(method, family)} for family {family!r}")
            config = yaml.safe_load(suite.config_path(method, family).read_text())
            for setting in suite.settings:
                # the datamodule checks its split, ids and batch sizes on construction, without reading data: a
                # cell that cannot run stops the suite now, not hours into it
                try:
                    instantiate(config["data"], **suite.data_arguments(Cell(method, family, setting, suite.seeds[0])))
                except (ValueError, TypeError) as err:
                    raise ValueError(f"--suite: {path}: method {method!r} on family {family!r} in setting "
                                     f"{setting!r}: {err}") from None
    return suite


def only_methods(suite: Suite, names: list[str]) -> Suite:
    """The suite restricted to the methods ``names`` (refusing a name the suite does not have)."""
    unknown = [name for name in names if name not in suite.methods]
    if unknown:
        raise ValueError(f"--methods: {unknown} not in the suite's methods {sorted(suite.methods)}")
    return dataclasses.replace(suite, methods={name: suite.methods[name] for name in names})


def instantiate(spec: dict[str, Any], **overrides: Any) -> Any:
    """The object a config block ``{class_path, init_args}`` describes, with ``overrides`` replacing init args."""
    module_name, _, class_name = spec["class_path"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**{**spec.get("init_args", {}), **overrides})


def evaluate(model: Any, datamodule: Any, evaluation: dict[str, Any], curve: bool) -> dict[str, Any]:
    """Held-out mean return and normalised score after adaptation (and, with ``curve``, after each number of
    ``evaluation["adaptation_steps"]``), through the project's :class:`AdaptationEvaluator`."""
    steps = evaluation.get("adaptation_steps") or []
    evaluator = AdaptationEvaluator(batch_size=int(evaluation.get("batch_size", 256)), steps=evaluation.get("steps"),
                                    episodes=int(evaluation.get("episodes", 3)), seed=0, random_episodes=10,
                                    curve_steps=[int(s) for s in steps] if curve else [], plot=False, report=False)
    was_training = model.training
    model.eval()
    task_ids = list(datamodule.test_task_ids)
    rows = evaluator.evaluate_tasks(model, datamodule, task_ids, with_curve=curve and bool(steps))
    model.train(was_training)
    out = {"return": float(np.mean([rows[t]["return"] for t in task_ids])),
           "score": float(np.mean([rows[t]["score"] for t in task_ids])),
           "per_task_return": {str(t): rows[t]["return"] for t in task_ids}}
    if all(rows[t]["success"] is not None for t in task_ids):  # families that define success (Meta-World's)
        out["per_task_success"] = {str(t): rows[t]["success"] for t in task_ids}
        out["success"] = float(np.mean(list(out["per_task_success"].values())))
    if curve and steps:
        random = np.array([rows[t]["random_return"] for t in task_ids])
        best = np.array([rows[t]["best_behaviour_return"] for t in task_ids])
        out["adaptation"] = {}
        for k in steps:
            returns = np.array([rows[t]["curve"][int(k)] for t in task_ids])
            out["adaptation"][str(int(k))] = {"return": float(np.mean(returns)),
                                              "score": float(np.mean(normalised_score(returns, random, best)))}
    return out


def select_step_size(model: Any, datamodule: Any, evaluation: dict[str, Any]) -> dict[str, Any] | None:
    """Set ``model``'s test-time step sizes (the hyperparameters named in ``TEST_TIME_STEP_SIZES``) to the value of
    ``evaluation["step_size_grid"]`` whose adaptation, for the largest number of ``adaptation_steps``, returns most on
    the first ``validation_tasks`` training tasks. ``None`` (nothing changed) without a grid or for a method with no
    test-time step sizes (a context-based method); else the grid, each size's validation return and the choice."""
    grid = [float(v) for v in evaluation.get("step_size_grid") or []]
    names = getattr(model, "TEST_TIME_STEP_SIZES", ())
    if not grid or not names:
        return None
    steps = max(int(k) for k in evaluation.get("adaptation_steps") or [1])
    tasks = list(datamodule.train_task_ids)[: int(evaluation.get("validation_tasks", 5))]
    evaluator = AdaptationEvaluator(batch_size=int(evaluation.get("batch_size", 256)), steps=steps,
                                    episodes=int(evaluation.get("episodes", 3)), seed=0, random_episodes=1,
                                    curve_steps=[], plot=False, report=False)
    was_training = model.training
    model.eval()
    returns = {}
    for size in grid:
        for name in names:
            model.hparams[name] = size
        rows = evaluator.evaluate_tasks(model, datamodule, tasks, with_curve=False)
        returns[size] = float(np.mean([rows[t]["return"] for t in tasks]))
    model.train(was_training)
    chosen = max(grid, key=lambda size: returns[size])  # the first of equals: the grid's order breaks ties
    for name in names:
        model.hparams[name] = chosen
    return {"names": list(names), "grid": grid, "steps": steps, "tasks": tasks,
            "validation_return": {str(k): v for k, v in returns.items()}, "chosen": chosen}


def run_cell(suite: Suite, cell: Cell) -> dict[str, Any]:
    """Train and evaluate one cell; the result dict that :func:`write_result` stores."""
    torch.set_num_threads(1)
    config = yaml.safe_load(suite.config_path(cell.method, cell.family).read_text())
    pl.seed_everything(cell.seed, verbose=False)
    model = instantiate(config["model"])
    datamodule = instantiate(config["data"], **suite.data_arguments(cell))
    learning: dict[str, dict[str, float]] = {}
    eval_seconds = [0.0]

    class LearningCurve(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx + 1 in suite.curve_at and batch_idx + 1 < suite.meta_updates:
                started = time.perf_counter()
                result = evaluate(pl_module, trainer.datamodule, suite.evaluation, curve=False)
                learning[str(batch_idx + 1)] = {k: result[k] for k in ("return", "score")}
                eval_seconds[0] += time.perf_counter() - started

    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu",
                         devices=1, callbacks=[LearningCurve()])
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    train_seconds = time.perf_counter() - started - eval_seconds[0]
    step_size = select_step_size(model, datamodule, suite.evaluation)
    final = evaluate(model, datamodule, suite.evaluation, curve=True)
    learning[str(suite.meta_updates)] = {k: final[k] for k in ("return", "score")}
    return {"method": cell.method, "family": cell.family, "setting": cell.setting, "seed": cell.seed,
            "meta_updates": suite.meta_updates, "train_seconds": train_seconds, **final, "learning": learning,
            **({"step_size": step_size} if step_size else {})}


def write_result(out: Path, cell: Cell, result: dict[str, Any]) -> Path:
    """Write ``result`` to the cell's file atomically (temporary name, then rename)."""
    return write_json_atomic(out / cell.path, result, indent=1)


def _run_and_write(suite: Suite, cell: Cell, out: Path) -> Cell:
    write_result(out, cell, run_cell(suite, cell))
    return cell


def submitit_executor(folder: str | os.PathLike, cluster: str | None, parameters: dict[str, Any]) -> Any:
    """A submitit executor (``cluster``: ``"slurm"``, ``"local"``, or ``None`` to pick slurm where it exists) with
    ``parameters`` (e.g. ``slurm_partition``, ``timeout_min``, ``cpus_per_task``) applied."""
    try:
        import submitit
    except ImportError as err:
        raise ValueError("--submitit needs the submitit package: pip install 'lit-offmeta[cluster]'") from err
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    executor.update_parameters(**{"timeout_min": 24 * 60, "cpus_per_task": 1, **parameters})
    return executor


def run_suite(suite: Suite, out: str | os.PathLike, workers: int = 1, progress: bool = True,
              executor: Any = None) -> list[dict[str, Any]]:
    """Run every cell whose result is not yet in ``out``, then write the report.

    Args:
        suite: the suite.
        out: the output folder (cells already there are not run again).
        workers: local processes when no ``executor`` is given.
        progress: a progress bar over cells.
        executor: a submitit executor (:func:`submitit_executor`): the cells go out as one job array and this
            call waits for them; each job writes its cell's file itself.

    Returns:
        The results of all cells (finished before or now).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [c for c in suite.cells() if not (out / c.path).is_file()]
    bar = tqdm(total=len(suite.cells()), initial=len(suite.cells()) - len(todo), desc=f"benchmark {suite.name}",
               unit="cell", disable=not progress)
    try:
        if executor is not None and todo:
            with executor.batch():
                jobs = [executor.submit(_run_and_write, suite, cell, out.resolve()) for cell in todo]
            for job in jobs:
                job.result()  # raises the job's own error, with its log's path
                bar.update(1)
        elif workers <= 1:
            for cell in todo:
                _run_and_write(suite, cell, out)
                bar.update(1)
        else:
            # spawn: each worker starts clean (no forked torch thread pools or open environments)
            with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                for future in as_completed([pool.submit(_run_and_write, suite, cell, out) for cell in todo]):
                    future.result()
                    bar.update(1)
    finally:
        bar.close()
    results = finished_results(suite, out)
    write_report(suite, results, out)
    return results


def finished_results(suite: Suite, out: str | os.PathLike) -> list[dict[str, Any]]:
    """The results of the suite's cells already written under ``out`` (a running or stopped suite's so far)."""
    out = Path(out)
    return [json.loads((out / c.path).read_text()) for c in suite.cells() if (out / c.path).is_file()]


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (``nan`` for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else float("nan")
    return float(values.mean()), se


def summary_table(suite: Suite, results: list[dict[str, Any]], family: str, setting: str) -> str:
    """Markdown: one row per method, held-out return and normalised score (and success rate, where the family
    defines success), mean +- s.e. over seeds."""
    selected = {method: [r for r in results if (r["method"], r["family"], r["setting"]) == (method, family, setting)]
                for method in suite.methods}
    with_success = any("success" in r for rows in selected.values() for r in rows)
    lines = ["| method | held-out return | normalised score |" + (" success rate |" if with_success else "")
             + " seeds | train s / seed |", "|---|---|---|---|---|" + ("---|" if with_success else "")]

    def text(values: list[float], digits: int) -> str:
        mean, se = mean_se(values)
        return f"{mean:.{digits}f} ± {se:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"  # 1 seed: no s.e.

    for method, rows in selected.items():
        if not rows:  # not run yet (a partial report)
            continue
        # cells written before success was recorded have none: the rate is over the seeds that have it
        measured = [r["success"] for r in rows if "success" in r]
        success = (f" {text(measured, 3)} |" if measured else " – |") if with_success else ""
        lines.append(f"| {method} | {text([r['return'] for r in rows], 2)} | {text([r['score'] for r in rows], 3)} |"
                     f"{success} {len(rows)} | {np.mean([r['train_seconds'] for r in rows]):.0f} |")
    return "\n".join(lines)


def _plot_curves(suite: Suite, results: list[dict[str, Any]], family: str, setting: str, key: str,
                 xlabel: str, path: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    drawn = False
    for method in suite.methods:
        rows = [r for r in results if (r["method"], r["family"], r["setting"]) == (method, family, setting)
                and r.get(key)]
        if not rows:
            continue
        xs = sorted({int(x) for r in rows for x in r[key]})
        stats = [mean_se([r[key][str(x)]["return"] for r in rows if str(x) in r[key]]) for x in xs]
        mean = np.array([m for m, _ in stats])
        se = np.nan_to_num(np.array([s for _, s in stats]))
        ax.plot(xs, mean, marker="o", label=method)
        ax.fill_between(xs, mean - se, mean + se, alpha=0.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("held-out return (mean ± s.e. over seeds)")
    ax.set_title(f"{family}, {setting}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def write_report(suite: Suite, results: list[dict[str, Any]], out: Path) -> Path:
    """``OUT/report.md`` with a table per (family, setting) and the learning and adaptation curve plots."""
    lines = [f"# Benchmark `{suite.name}`", "", suite.description.strip(), "",
             f"{len(suite.methods)} methods x {len(suite.families)} families x {len(suite.settings)} settings x "
             f"{len(suite.seeds)} seeds (seeds {suite.seeds}), {suite.meta_updates} meta-updates per run; held-out "
             "return and normalised score (0: uniformly random policy, 1: best trajectory in the task's data), "
             "mean ± standard error over seeds.", ""]
    for family in suite.families:
        for setting in suite.settings:
            lines += [f"## {family}, {setting}", "", summary_table(suite, results, family, setting), ""]
            for key, xlabel, suffix in (("learning", "meta-updates", "learning"),
                                        ("adaptation", "test-time adaptation steps", "adaptation")):
                png = _plot_curves(suite, results, family, setting, key, xlabel,
                                   out / f"{family}_{setting}_{suffix}.png")
                if png is not None:
                    lines += [f"![{suffix} curves]({png.name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="lit-offmeta benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", required=True, help="a suite YAML file (configs/benchmarks/)")
    parser.add_argument("--out", required=True, help="output folder: cells/, report.md and plots; reused to resume")
    parser.add_argument("--workers", type=int, default=1, help="cells run in this many processes")
    parser.add_argument("--methods", nargs="+", metavar="NAME",
                        help="run (and report) only these of the suite's methods; a later run without it adds the rest")
    parser.add_argument("--report_only", action="store_true",
                        help="run nothing: write report.md and the plots from the cells already in --out")
    parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--submitit", metavar="LOG_DIR", help="send the cells to a cluster through submitit (one "
                        "job array; logs in LOG_DIR) instead of local processes")
    parser.add_argument("--submitit_cluster", choices=["slurm", "local"], default=None,
                        help="submitit's backend (default: slurm where it exists, else local)")
    parser.add_argument("--submitit_set", action="append", default=[], metavar="KEY=VALUE",
                        help="a submitit parameter (repeatable), e.g. slurm_partition=cpu, timeout_min=120")
    args = parser.parse_args(argv)
    try:
        suite = load_suite(args.suite)
        if args.methods:
            suite = only_methods(suite, args.methods)
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        executor = None
        if args.submitit:
            parameters = {}
            for item in args.submitit_set:
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise ValueError(f"--submitit_set expects KEY=VALUE, got {item!r}")
                parameters[key] = yaml.safe_load(value)
            executor = submitit_executor(args.submitit, args.submitit_cluster, parameters)
    except ValueError as err:
        parser.error(str(err))
    if args.report_only:
        results = finished_results(suite, args.out)
        if not results:
            parser.error(f"--report_only: no finished cell of suite {suite.name!r} under {args.out}")
        write_report(suite, results, Path(args.out))
    else:
        run_suite(suite, args.out, workers=args.workers, progress=not args.no_progress, executor=executor)
    print(f"report: {Path(args.out) / 'report.md'}")
