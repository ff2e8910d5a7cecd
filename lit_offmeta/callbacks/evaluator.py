"""AdaptationEvaluator: adapt on held-out tasks' OFFLINE data, roll out in the real environments, log returns.

This is the paper's meta-test protocol (Algorithm 2, Mitchell et al. 2021, arXiv:2008.06043;
docs/REFERENCE.md, "Splits and environments"): for each held-out task, take a batch of that task's offline data
(256 transitions by default, optionally from a quality window), call ``pl_module.adapt(batch, steps)``, and roll
the adapted policy out
deterministically (mean action, clipped) for the family's horizon. Returns are undiscounted and averaged over
episodes and tasks. On top of the paper's protocol it logs a normalised score per task (0 = a uniformly random
policy measured in the environment, 1 = the best episode return in that task's dataset) and an adaptation
curve (returns after 0, 1, 5, 20 steps by default).

The same code drives belief-based methods: if ``adapt`` returns a :class:`~lit_offmeta.policy.RolloutPolicy`
it is stepped online through ``reset``/``act``/``observe``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.model_helpers import is_overridden
from torchmetrics.aggregation import MeanMetric

from lit_offmeta.callbacks.distributed import gather_objects, merge_task_results, shard_tasks
from lit_offmeta.callbacks.plots import adaptation_curve_figure
from lit_offmeta.callbacks.progress import HookProgress
from lit_offmeta.callbacks.report import write_report
from lit_offmeta.callbacks.scoring import normalised_score
from lit_offmeta.figures import save_figure
from lit_offmeta.rollout import (
    NonFiniteActionError,
    PerTaskPolicy,
    RandomPolicy,
    RolloutResult,
    rollout,
)

DEFAULT_CURVE_STEPS = (0, 1, 5, 20)


def best_behaviour_return(datamodule: Any, task_id: int) -> float:
    """The best episode return in a task's offline data, from ``datamodule.behaviour_return_range``.

    Accepts a named tuple or object with a ``max`` (or ``best``) field, such as
    :class:`~lit_offmeta.datamodules.offline_meta.ReturnRange`, a mapping with key ``"max"`` or ``"best"``, or a
    plain number.
    """
    value = datamodule.behaviour_return_range(task_id)
    if isinstance(value, dict):
        key = "max" if "max" in value else "best"
        if key not in value:
            raise ValueError(f"behaviour_return_range({task_id}) returned a dict without 'max'/'best': {value!r}")
        return float(value[key])
    for name in ("max", "best"):
        if hasattr(value, name) and not callable(getattr(value, name)):
            return float(getattr(value, name))
    if isinstance(value, (int, float)):
        return float(value)
    raise ValueError(
        f"behaviour_return_range({task_id}) returned {value!r}; expected a ReturnRange(min, mean, max), a dict "
        "with 'max' or a number"
    )


def random_policy_returns(
    family: Any, tasks: Sequence[dict], episodes: int = 10, seeds: Sequence[int] | None = None
) -> np.ndarray:
    """``[num_tasks]`` mean undiscounted return of a uniformly random policy (the normalised score's 0).

    Each task is rolled out on its own with its own seed (default ``0, 1, ...``), so a task's baseline does
    not depend on which other tasks are evaluated with it (DDP shards get the same numbers).
    """
    seeds = list(range(len(tasks))) if seeds is None else [int(s) for s in seeds]
    if len(seeds) != len(tasks):
        raise ValueError(f"random_policy_returns: got {len(seeds)} seeds for {len(tasks)} tasks")
    out = []
    for task, seed in zip(tasks, seeds):
        policy = RandomPolicy(family.action_space, seed=seed)
        out.append(rollout(policy, family, [task], episodes=episodes, seed=seed).task_returns()[0])
    return np.asarray(out, dtype=np.float64)


@torch.no_grad()
def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v).to(device) for k, v in batch.items()}


def adapt_and_rollout(
    module: Any,
    family: Any,
    tasks: Sequence[dict],
    contexts: Sequence[dict[str, torch.Tensor]],
    steps: int | None,
    episodes: int = 1,
    seed: int | Sequence[int] = 0,
    adapt_kwargs: dict[str, Any] | None = None,
):
    """Adapt ``module`` once per task on its context (``adapt(context, steps=steps, **adapt_kwargs)``), then roll all
    adapted policies out together.

    Adaptation runs with gradients enabled and outside inference mode: Lightning's validation and test loops
    run under ``torch.inference_mode``, in which gradient-based ``adapt`` could not differentiate.

    Returns:
        The :class:`~lit_offmeta.rollout.RolloutResult` (one row per task).
    """
    with torch.inference_mode(False), torch.enable_grad():
        policies = [module.adapt(context, steps=steps, **(adapt_kwargs or {})) for context in contexts]
    return rollout(PerTaskPolicy(policies, family.action_space), family, tasks, episodes=episodes, seed=seed)


def adapt_and_rollout_or_nan(
    module: Any,
    family: Any,
    tasks: Sequence[dict],
    contexts: Sequence[dict[str, torch.Tensor]],
    steps: int | None,
    episodes: int,
    seeds: Sequence[int],
    adapt_kwargs: dict[str, Any] | None = None,
) -> RolloutResult:
    """:func:`adapt_and_rollout`, but a task whose adapted policy emits NaN/inf actions gets NaN returns.

    A diverged adaptation is a result to report (NaN, with a warning), not a reason to abort training.
    """
    try:
        return adapt_and_rollout(module, family, tasks, contexts, steps, episodes, list(seeds), adapt_kwargs)
    except NonFiniteActionError:
        pass
    returns = np.full((len(tasks), episodes), np.nan)
    lengths = np.zeros((len(tasks), episodes), dtype=np.int64)
    success = None
    diverged = []
    for i in range(len(tasks)):
        try:
            one = adapt_and_rollout(module, family, [tasks[i]], [contexts[i]], steps, episodes, [seeds[i]],
                                    adapt_kwargs)
        except NonFiniteActionError:
            diverged.append(i)
            continue
        returns[i], lengths[i] = one.returns[0], one.lengths[0]
        if one.success is not None:
            success = np.zeros((len(tasks), episodes)) if success is None else success
            success[i] = one.success[0]
    if success is not None:
        success[diverged] = np.nan
    rank_zero_warn(
        f"AdaptationEvaluator: adaptation with steps={steps} diverged (non-finite actions) on {len(diverged)} of "
        f"{len(tasks)} task(s); their returns are reported as NaN",
        category=RuntimeWarning,
    )
    return RolloutResult(returns, lengths, success)


class AdaptationEvaluator(Callback):
    """Evaluate fast adaptation on held-out tasks during ``fit`` and at ``validate``/``test``.

    For each evaluated task: an adaptation batch from its OFFLINE data ->
    ``pl_module.adapt(batch, steps)`` -> a batched rollout in one environment per task. Logged (through
    ``pl_module.log``, so every logger and ``trainer.callback_metrics`` see them):

    * ``rollout/return_mean``, ``rollout/score_mean`` (normalised: 0 random, 1 best dataset trajectory),
      ``rollout/success_rate`` where the family defines success;
    * with ``episodes > 1`` (one trial of several episodes), ``rollout/return_ep{e}`` and ``rollout/success_ep{e}``:
      the mean over tasks of the trial's ``e``-th episode, where a belief-based policy should improve;
    * ``rollout/task_{id}/return`` and ``rollout/task_{id}/score`` per task;
    * ``rollout/curve/return_steps_{k}`` and ``rollout/curve/score_steps_{k}`` for each ``k`` in
      ``curve_steps``; the curve is also drawn to ``adaptation.png`` (scores) and ``adaptation_returns.png`` in
      the trainer's log directory, and added to every ``TensorBoardLogger`` as the images
      ``rollout/adaptation_score`` and ``rollout/adaptation_return`` (other loggers get the scalars only);
    * ``hp_metric``: ``rollout/score_mean`` again, the value TensorBoard's HPARAMS tab shows for the run.

    While it rolls out, a progress bar counts the episodes (in the trainer's progress display; none when the
    trainer's progress bar is disabled). At the end of ``test`` it writes ``metrics.json`` and ``report.md`` into
    the log directory; both name the checkpoint evaluated (``trainer.ckpt_path``) and its global step.

    It needs ``trainer.datamodule`` to provide ``family``, ``test_task_ids``/``train_task_ids``,
    ``task(task_id)``, ``adaptation_batch(task_id, size, window, seed)`` and ``behaviour_return_range(task_id)``
    (:class:`~lit_offmeta.datamodules.offline_meta.OfflineMetaDataModule` does).

    Under DDP the tasks are split across ranks (every task on exactly one rank) and the results gathered, so
    every rank logs the same values and no work is duplicated. Sanity checks and ``fast_dev_run`` are skipped.

    Args:
        every_n_epochs: evaluate after every ``n``-th training epoch during ``fit`` (0 disables it in fit).
        hook: when to evaluate during fit: ``"validation"`` (at validation epoch end), ``"train"`` (at train
            epoch end), or ``"auto"`` (validation if the module defines ``validation_step``, else train).
        batch_size: transitions in each task's adaptation batch (the paper: 256).
        window: quality window passed to ``adaptation_batch`` (e.g. ``"last"``); ``None`` = the whole buffer.
        steps: adaptation steps for the headline metrics; ``None`` = the module's own default.
        episodes: evaluation episodes per task (one trial; belief-based policies keep their belief across it).
        tasks: ``"test"`` (held-out tasks), ``"train"``, or explicit task ids.
        curve_steps: adaptation step counts of the curve; empty or ``None`` disables it.
        curve_every_n_evaluations: draw the curve at every ``n``-th evaluation during fit (0: never in fit;
            always at ``validate``/``test``), since it costs one adaptation and rollout per point.
        random_episodes: episodes of the random policy per task for the normalised score's 0.
        seed: seeds adaptation batches (``seed + task_id``), rollouts and the random baseline.
        adapt_kwargs: further keyword arguments of the module's ``adapt`` (e.g. ``{policy: thompson}`` for
            :class:`~lit_offmeta.algorithms.borel.pipeline.OfflineVariBAD`'s posterior-sampling comparison). A
            callback setting, not the module's, so ``test --ckpt_path`` can change it: LightningCLI restores a
            checkpoint's module hyperparameters over the command line.
        plot: draw ``adaptation.png``.
        report: write ``metrics.json`` and ``report.md`` at the end of ``test``.

    Example::

        trainer = Trainer(callbacks=[AdaptationEvaluator(every_n_epochs=5, curve_steps=[0, 1, 5])])
        trainer.fit(MACAW(...), datamodule=OfflineMetaDataModule(...))
        trainer.test(ckpt_path="last", datamodule=dm)  # metrics.json + report.md in trainer.log_dir
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        hook: Literal["auto", "validation", "train"] = "auto",
        batch_size: int = 256,
        window: str | None = None,
        steps: int | None = None,
        episodes: int = 1,
        tasks: Literal["test", "train"] | list[int] = "test",
        curve_steps: list[int] | None = list(DEFAULT_CURVE_STEPS),  # noqa: B006 (jsonargparse shows it)
        curve_every_n_evaluations: int = 1,
        random_episodes: int = 10,
        seed: int = 0,
        adapt_kwargs: dict[str, Any] | None = None,
        plot: bool = True,
        report: bool = True,
    ) -> None:
        super().__init__()
        for name, value, low in [
            ("every_n_epochs", every_n_epochs, 0), ("batch_size", batch_size, 1), ("episodes", episodes, 1),
            ("curve_every_n_evaluations", curve_every_n_evaluations, 0), ("random_episodes", random_episodes, 1),
        ]:
            if not isinstance(value, int) or value < low:
                raise ValueError(f"AdaptationEvaluator: {name} must be an integer >= {low}, got {value!r}")
        if hook not in ("auto", "validation", "train"):
            raise ValueError(f"AdaptationEvaluator: hook must be 'auto', 'validation' or 'train', got {hook!r}")
        if steps is not None and (not isinstance(steps, int) or steps < 0):
            raise ValueError(f"AdaptationEvaluator: steps must be None or an integer >= 0, got {steps!r}")
        if isinstance(tasks, str):
            if tasks not in ("test", "train"):
                raise ValueError(f"AdaptationEvaluator: tasks must be 'test', 'train' or a list of ids, got {tasks!r}")
        elif not tasks or not all(isinstance(t, int) and t >= 0 for t in tasks):
            raise ValueError(f"AdaptationEvaluator: tasks must be a non-empty list of task ids, got {tasks!r}")
        curve_steps = sorted({int(s) for s in (curve_steps or [])})
        if any(s < 0 for s in curve_steps):
            raise ValueError(f"AdaptationEvaluator: curve_steps must be >= 0, got {curve_steps}")
        self.every_n_epochs = every_n_epochs
        self.hook = hook
        self.batch_size = batch_size
        self.window = window
        self.steps = steps
        self.episodes = episodes
        self.tasks = tasks if isinstance(tasks, str) else [int(t) for t in tasks]
        self.curve_steps = curve_steps
        self.curve_every_n_evaluations = curve_every_n_evaluations
        self.random_episodes = random_episodes
        self.seed = seed
        self.adapt_kwargs = dict(adapt_kwargs or {})
        self.plot = plot
        self.report = report
        # resumable state (state_dict)
        self.num_evaluations = 0
        self.random_returns: dict[int, float] = {}
        self.history: list[dict[str, float]] = []
        self.last_evaluation: dict[str, Any] | None = None
        self._fit_hook: str = "validation"
        self._loaded_progress: dict[str, int] | None = None  # global step and epoch of a loaded checkpoint

    # --- Lightning hooks -------------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not callable(getattr(pl_module, "adapt", None)):
            raise ValueError(
                f"AdaptationEvaluator: {type(pl_module).__name__} has no adapt(context, steps) method; "
                "the evaluator needs an algorithm module such as lit_offmeta.algorithms.MACAW"
            )
        if self.hook == "auto":
            self._fit_hook = "validation" if is_overridden("validation_step", pl_module) else "train"
        else:
            self._fit_hook = self.hook
        self._loaded_progress = None  # set again by on_load_checkpoint (Lightning restores after setup)

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # `test --ckpt_path` restores the weights but not the loops: trainer.global_step stays 0 there, so the
        # step the evaluated weights were trained to comes from the checkpoint itself.
        self._loaded_progress = {"global_step": int(checkpoint.get("global_step", 0)),
                                 "epoch": int(checkpoint.get("epoch", 0))}

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._fit_hook == "train" and self._due(trainer):
            self._evaluate(trainer, pl_module, stage="fit")

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        if trainer.state.fn == "validate":
            self._evaluate(trainer, pl_module, stage="validate")
        elif self._fit_hook == "validation" and self._due(trainer):
            self._evaluate(trainer, pl_module, stage="fit")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run:
            return
        self._evaluate(trainer, pl_module, stage="test")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.report or trainer.fast_dev_run or self.last_evaluation is None:
            return
        log_dir = self._log_dir(trainer)  # every rank calls it: log_dir broadcasts
        if trainer.is_global_zero:
            settings = self.last_evaluation["settings"]
            if settings.get("checkpoint"):
                notes = f"Checkpoint `{settings['checkpoint']}`, trained for {settings['global_step']} global steps."
            else:
                notes = f"The module in memory (no checkpoint loaded), after {settings['global_step']} global steps."
            metrics_path, report_path = write_report(
                log_dir, self.last_evaluation, title=f"{type(pl_module).__name__} evaluation report", notes=notes
            )
            rank_zero_info(f"AdaptationEvaluator: wrote {metrics_path} and {report_path}")

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_evaluations": self.num_evaluations,
            "random_returns": dict(self.random_returns),
            "history": list(self.history),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.num_evaluations = int(state_dict["num_evaluations"])
        self.random_returns = {int(k): float(v) for k, v in state_dict["random_returns"].items()}
        self.history = list(state_dict["history"])

    # --- evaluation ----------------------------------------------------------------------------------------------
    def _due(self, trainer: Trainer) -> bool:
        if trainer.sanity_checking or trainer.fast_dev_run or self.every_n_epochs == 0:
            return False
        # a module that ends training itself (trainer.should_stop) is evaluated at its last epoch too
        return (trainer.current_epoch + 1) % self.every_n_epochs == 0 or trainer.should_stop

    def _task_ids(self, datamodule: Any) -> list[int]:
        if self.tasks == "test":
            return [int(t) for t in datamodule.test_task_ids]
        if self.tasks == "train":
            return [int(t) for t in datamodule.train_task_ids]
        return list(self.tasks)

    @staticmethod
    def _datamodule(trainer: Trainer) -> Any:
        dm = getattr(trainer, "datamodule", None)
        needed = ("family", "task", "adaptation_batch", "behaviour_return_range")
        if dm is None or not all(hasattr(dm, name) for name in needed):
            raise ValueError(
                "AdaptationEvaluator needs the trainer's datamodule to provide "
                f"{', '.join(needed)} (e.g. lit_offmeta.datamodules.OfflineMetaDataModule); pass it as "
                "trainer.fit(model, datamodule=dm)"
            )
        return dm

    def _log_dir(self, trainer: Trainer) -> Path:
        return Path(trainer.log_dir or trainer.default_root_dir)

    def episodes_to_run(self, task_ids: Sequence[int], with_curve: bool) -> int:
        """How many episodes :meth:`evaluate_tasks` rolls out for ``task_ids`` (the progress bar's total)."""
        runs = 1 + sum(1 for k in (self.curve_steps if with_curve else []) if not (self.steps is not None
                                                                                 and k == self.steps))
        missing = sum(1 for t in task_ids if t not in self.random_returns)
        return runs * len(task_ids) * self.episodes + missing * self.random_episodes

    def evaluate_tasks(self, pl_module: Any, datamodule: Any, task_ids: Sequence[int], with_curve: bool,
                       progress: HookProgress | None = None) -> dict:
        """Evaluate ``task_ids`` on this process (no logging); ``{task_id: per-task results}``.

        ``progress`` (optional) is advanced by the episodes of each rollout as it finishes."""
        advance = progress.advance if progress is not None else (lambda n: None)
        if not task_ids:
            return {}
        family = datamodule.family
        tasks = [datamodule.task(t) for t in task_ids]
        with torch.inference_mode(False):
            contexts = [
                _to_device(datamodule.adaptation_batch(t, size=self.batch_size, window=self.window, seed=self.seed + t),
                           pl_module.device)
                for t in task_ids
            ]
        missing = [t for t in task_ids if t not in self.random_returns]
        if missing:
            rand = random_policy_returns(family, [datamodule.task(t) for t in missing], self.random_episodes,
                                         seeds=[self.seed + 7919 * (t + 1) for t in missing])
            self.random_returns.update({t: float(r) for t, r in zip(missing, rand)})
            advance(len(missing) * self.random_episodes)
        random = np.array([self.random_returns[t] for t in task_ids])
        best = np.array([best_behaviour_return(datamodule, t) for t in task_ids])
        seeds = [self.seed + t for t in task_ids]  # per task, so DDP shards see the same environments
        main = adapt_and_rollout_or_nan(pl_module, family, tasks, contexts, self.steps, self.episodes, seeds,
                                        self.adapt_kwargs)
        advance(len(tasks) * self.episodes)
        returns = main.task_returns()
        scores = normalised_score(returns, random, best)
        success = main.task_success()
        curve: dict[int, np.ndarray] = {}
        if with_curve:
            for k in self.curve_steps:
                if self.steps is not None and k == self.steps:
                    curve[k] = returns  # the headline run is this curve point
                else:
                    curve[k] = adapt_and_rollout_or_nan(pl_module, family, tasks, contexts, k, self.episodes, seeds,
                                                        self.adapt_kwargs)
                    curve[k] = curve[k].task_returns()
                    advance(len(tasks) * self.episodes)
        out = {}
        for i, t in enumerate(task_ids):
            out[int(t)] = {
                "task_id": int(t),
                "task": tasks[i],
                "return": float(returns[i]),
                "episode_returns": main.returns[i].tolist(),
                "episode_success": None if main.success is None else main.success[i].astype(float).tolist(),
                "random_return": float(random[i]),
                "best_behaviour_return": float(best[i]),
                "score": float(scores[i]),
                "success": None if success is None else float(success[i]),
                "curve": {int(k): float(v[i]) for k, v in curve.items()},
            }
        return out

    def _evaluate(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> dict[str, Any]:
        datamodule = self._datamodule(trainer)
        task_ids = self._task_ids(datamodule)
        with_curve = bool(self.curve_steps) and (
            stage != "fit"
            or (self.curve_every_n_evaluations > 0 and self.num_evaluations % self.curve_every_n_evaluations == 0)
        )
        local = shard_tasks(task_ids, trainer.global_rank, trainer.world_size)
        was_training = pl_module.training
        pl_module.eval()
        try:
            with HookProgress(trainer, self.episodes_to_run(local, with_curve), f"Rollouts ({stage})") as progress:
                shard = self.evaluate_tasks(pl_module, datamodule, local, with_curve, progress)
        finally:
            pl_module.train(was_training)
        per_task = merge_task_results(gather_objects(shard, trainer.world_size), task_ids)
        # the random baselines computed on other ranks, so that a resumed run on any rank reuses them
        self.random_returns.update({t: r["random_return"] for t, r in per_task.items()})
        evaluation = self._summarise(per_task, with_curve)
        # In fit the weights are the ones training; otherwise a loaded checkpoint's (trainer.ckpt_path), whose
        # own step and epoch count (the trainer's stay 0 in `test --ckpt_path`), else the module in memory.
        checkpoint = str(trainer.ckpt_path) if stage != "fit" and trainer.ckpt_path else None
        progress = self._loaded_progress if checkpoint and self._loaded_progress else {
            "global_step": trainer.global_step, "epoch": trainer.current_epoch}
        evaluation["settings"] = {
            "stage": stage, "checkpoint": checkpoint, **progress,
            "adaptation_batch_size": self.batch_size, "window": self.window, "adaptation_steps": self.steps,
            "episodes_per_task": self.episodes, "random_episodes": self.random_episodes, "seed": self.seed,
            "adapt_kwargs": dict(self.adapt_kwargs),
            "num_tasks": len(task_ids),
        }
        self._log(pl_module, evaluation, per_task)
        self.num_evaluations += 1
        self.history.append({"epoch": progress["epoch"], "step": progress["global_step"], **evaluation["summary"]})
        self.last_evaluation = evaluation
        if with_curve and self.plot and evaluation["curve"]:
            log_dir = self._log_dir(trainer)
            if trainer.is_global_zero:
                self._plot(trainer, log_dir / "adaptation.png", per_task, progress["global_step"])
        return evaluation

    def _summarise(self, per_task: dict[int, dict], with_curve: bool) -> dict[str, Any]:
        rows = list(per_task.values())

        def mean(values: Sequence[float]) -> float:
            # values are already gathered from every rank; a diverged task (NaN) makes the mean NaN, not hidden
            metric = MeanMetric(nan_strategy="disable", sync_on_compute=False)
            metric.update(torch.tensor(values, dtype=torch.float64))
            return float(metric.compute())

        summary = {"return_mean": mean([r["return"] for r in rows]), "score_mean": mean([r["score"] for r in rows])}
        if rows[0]["success"] is not None:
            summary["success_rate"] = mean([r["success"] for r in rows])
        episodes = len(rows[0]["episode_returns"])
        if episodes > 1:  # a trial of several episodes: what each episode of it achieves (Bayes-adaptive methods)
            for e in range(episodes):
                summary[f"return_ep{e + 1}"] = mean([r["episode_returns"][e] for r in rows])
                if rows[0]["episode_success"] is not None:
                    summary[f"success_ep{e + 1}"] = mean([r["episode_success"][e] for r in rows])
        curve = {}
        if with_curve:
            for k in self.curve_steps:
                returns = [r["curve"][k] for r in rows]
                scores = normalised_score(returns, [r["random_return"] for r in rows],
                                          [r["best_behaviour_return"] for r in rows])
                curve[k] = {"return": mean(returns), "score": mean(list(scores))}
        return {"summary": summary, "tasks": rows, "curve": curve}

    def _log(self, pl_module: LightningModule, evaluation: dict, per_task: dict[int, dict]) -> None:
        # identical values on every rank (gathered), so no sync_dist reduction is needed; NaN (a diverged
        # adaptation) is logged as NaN rather than dropped
        def log(name: str, value: float | None) -> None:
            if value is not None:
                pl_module.log(name, float(value), batch_size=1, sync_dist=False)

        for key, value in evaluation["summary"].items():
            log(f"rollout/{key}", value)
        # TensorBoardLogger writes hp_metric = -1 at the start; the held-out score replaces it in its HPARAMS tab
        log("hp_metric", evaluation["summary"]["score_mean"])
        for t, r in per_task.items():
            log(f"rollout/task_{t}/return", r["return"])
            log(f"rollout/task_{t}/score", r["score"])
        for k, v in evaluation["curve"].items():
            log(f"rollout/curve/return_steps_{k}", v["return"])
            log(f"rollout/curve/score_steps_{k}", v["score"])

    def _plot(self, trainer: Trainer, path: Path, per_task: dict[int, dict], step: int) -> None:
        rows = list(per_task.values())
        curve = {k: np.array([r["curve"][k] for r in rows]) for k in self.curve_steps}
        scores = {
            k: normalised_score(v, [r["random_return"] for r in rows], [r["best_behaviour_return"] for r in rows])
            for k, v in curve.items()
        }
        # TensorBoard shows the figures beside the scalars; other loggers (CSV, ...) have no image API
        boards = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        for name, file, values, kwargs in (
            ("score", path, scores, {"ylabel": "normalised score (0 random, 1 best behaviour)",
                                     "title": "Held-out normalised score after k adaptation steps",
                                     "reference": {"random policy": 0.0, "best behaviour trajectory": 1.0}}),
            ("return", path.with_name("adaptation_returns.png"), curve, {"ylabel": "return"}),
        ):
            figure = adaptation_curve_figure(values, **kwargs)
            try:
                for board in boards:
                    board.experiment.add_figure(f"rollout/adaptation_{name}", figure, global_step=step, close=False)
            finally:
                save_figure(figure, file)  # closes the figure
