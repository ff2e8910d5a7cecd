r"""Online fine-tuning after offline adaptation (MACAW paper, Appendix C.2).

The "fully offline meta-RL with online fine-tuning" setting (Mitchell et al. 2021, arXiv:2008.06043, Sec. 3 and
App. C.2): after the offline adaptation step on a small batch of the test task's offline data, alternate

1. one rollout of the current policy in the test task (the paper: one 200-step trajectory), and
2. ``K`` gradient steps (the paper: 100) of the MACAW adaptation losses on minibatches from the aggregate
   buffer: the initial offline batch plus all online data so far,

and report the policy's return after given numbers of environment steps (the paper: 20k and 200k).

Offline PEARL+FT (the paper's comparison in Table 1) brings its own fine-tuner,
:class:`~lit_offmeta.algorithms.pearl.PearlFineTuner` (``module.fine_tuner(offline_batch)``): the task posterior
from the offline batch, then SAC steps of its critics and actor on the same aggregate buffer.

How MACAW's gradient steps are taken: by :class:`~lit_offmeta.algorithms.finetuning.GradientFineTuner`, the same
steps ``MACAW.adapt(context, steps)`` takes (Algorithm 2's learned-rate steps for the meta-trained ones, then Adam
at ``extra_step_lr``), so the first step on the offline batch is exactly ``module.adapt(batch, steps=1)`` (a test
proves it) and every further step continues from the fine-tuned parameters. The discount of the online data's
Monte-Carlo returns must be the one the offline batch's were computed with (the datamodule's ``gamma``).

Where we differ from the paper: the paper does not say whether the online rollouts act with the policy's mean
or sample from it; we sample (Gaussian noise with the policy's fixed std 0.2 by default, ``explore_std``) so
that online data has the action diversity AWR needs, and evaluate with the deterministic mean action.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import Tensor, nn

from lit_offmeta.algorithms.finetuning import GradientFineTuner
from lit_offmeta.callbacks.distributed import gather_objects, merge_task_results, shard_tasks
from lit_offmeta.callbacks.report import write_metrics_json
from lit_offmeta.data.batch import TRANSITION_KEYS
from lit_offmeta.data.buffer import TaskBuffer
from lit_offmeta.rollout import ModulePolicy, rollout


def episodes_to_transitions(
    episodes: Sequence[dict[str, np.ndarray]], task: dict, family_name: str, discount: float
) -> dict[str, Tensor]:
    """Online episodes (Minari layout) -> ``TRANSITION_KEYS`` tensors ``[N, ...]`` with Monte-Carlo targets.

    Uses :class:`~lit_offmeta.data.buffer.TaskBuffer`'s value targets (bootstrap where an episode was cut by
    the time limit, none where it terminated), the same as the offline data's.
    """
    buffer = TaskBuffer.from_episodes(list(episodes), task, -1, family_name)
    targets = buffer.value_targets(discount)
    arrays = {
        "obs": buffer.obs, "actions": buffer.actions, "rewards": buffer.rewards, "next_obs": buffer.next_obs,
        "terminals": buffer.terminals.astype(np.float32), "mc_returns": targets.mc_returns,
        "bootstrap_obs": buffer.next_obs[targets.bootstrap_index],
        "bootstrap_discounts": targets.bootstrap_discounts,
    }
    return {k: torch.as_tensor(np.asarray(v)) for k, v in arrays.items()}


@dataclass
class FineTuneResult:
    """Returns of one task's fine-tuning run.

    Attributes:
        env_steps: environment steps of online data used so far at each evaluation (0 = offline adaptation only).
        returns: deterministic evaluation return at each of those points (mean over ``eval_episodes``).
        gradient_steps: gradient steps taken so far at each point (the offline step included).
    """

    env_steps: list[int] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    gradient_steps: list[int] = field(default_factory=list)


def online_finetune(
    module: nn.Module,
    family: Any,
    task: dict,
    offline_batch: dict[str, Tensor],
    report_env_steps: Sequence[int],
    gradient_steps_per_rollout: int = 100,
    batch_size: int = 256,
    discount: float = 0.99,
    explore_std: float = 0.2,
    eval_episodes: int = 1,
    seed: int = 0,
) -> FineTuneResult:
    """Offline adaptation step, then alternate one rollout with ``K`` gradient steps (paper App. C.2).

    Args:
        module: the meta-trained module (copied, not modified): MACAW-like (its gradient steps), or one with
            ``fine_tuner(offline_batch)`` (offline PEARL+FT: SAC steps with the inferred task fixed).
        family: the task family.
        task: the test task.
        offline_batch: the initial offline adaptation batch, ``TRANSITION_KEYS`` -> ``[B, ...]``.
        report_env_steps: evaluate once the online data reaches each of these numbers of environment steps
            (e.g. ``[20_000, 200_000]``); fine-tuning stops at the largest.
        gradient_steps_per_rollout: ``K`` (the paper: 100).
        batch_size: minibatch size of each gradient step, drawn uniformly from the aggregate buffer.
        discount: discount of the online data's Monte-Carlo returns (use the offline data's).
        explore_std: std of the Gaussian action noise of the online rollouts (0: mean actions).
        eval_episodes: deterministic evaluation episodes at each report point.
        seed: seeds the minibatch sampler, exploration noise and environments.

    Returns:
        A :class:`FineTuneResult`; its first point (0 env steps) is the offline-only adapted policy.
    """
    targets = sorted({int(s) for s in report_env_steps})
    if not targets or targets[0] < 1:
        raise ValueError(f"online_finetune: report_env_steps must be positive integers, got {list(report_env_steps)}")
    if gradient_steps_per_rollout < 1 or batch_size < 1:
        raise ValueError("online_finetune: gradient_steps_per_rollout and batch_size must be >= 1")
    with torch.inference_mode(False):  # callers may sit in Lightning's inference-mode test loop
        return _online_finetune(module, family, task, offline_batch, targets, gradient_steps_per_rollout,
                                batch_size, discount, explore_std, eval_episodes, seed)


def _online_finetune(module, family, task, offline_batch, targets, gradient_steps_per_rollout, batch_size,
                     discount, explore_std, eval_episodes, seed) -> FineTuneResult:
    space = family.action_space
    offline = {k: torch.as_tensor(offline_batch[k]).detach().cpu().float() for k in TRANSITION_KEYS}
    if hasattr(module, "fine_tuner"):  # the module's own (offline PEARL+FT): built by its offline adaptation
        tuner = module.fine_tuner(offline)
    else:
        tuner = GradientFineTuner(module)
        tuner.step(offline)  # the offline adaptation step (Alg. 2 with one step)
    result = FineTuneResult()

    def evaluate(env_steps: int) -> None:
        ret = rollout(tuner.policy(), family, [task], episodes=eval_episodes, seed=seed + 10_000).task_returns()[0]
        result.env_steps.append(env_steps)
        result.returns.append(float(ret))
        result.gradient_steps.append(tuner.num_steps)

    evaluate(0)
    rng = np.random.default_rng(seed)
    online_episodes: list[dict[str, np.ndarray]] = []
    env_steps, rollout_index, next_target = 0, 0, 0
    while next_target < len(targets):
        explorer = ModulePolicy(tuner.policy(), space, noise_std=explore_std, seed=seed + rollout_index)
        collected = rollout(explorer, family, [task], episodes=1, seed=seed + 1 + rollout_index, record=True)
        online_episodes.extend(collected.episodes[0])
        env_steps += collected.num_env_steps
        rollout_index += 1
        online = episodes_to_transitions(online_episodes, task, family.name, discount)
        aggregate = {k: torch.cat([offline[k], online[k].to(offline[k].dtype)]) for k in TRANSITION_KEYS}
        n = len(aggregate["obs"])
        for _ in range(gradient_steps_per_rollout):
            idx = torch.as_tensor(rng.choice(n, size=min(batch_size, n), replace=False))
            tuner.step({k: v[idx] for k, v in aggregate.items()})
        while next_target < len(targets) and env_steps >= targets[next_target]:
            evaluate(env_steps)
            next_target += 1
    return result


class OnlineFineTuning(Callback):
    """At the end of ``test``: online fine-tuning on each held-out task (paper App. C.2); logs and writes results.

    Logs ``finetune/return_steps_{n}`` (mean over tasks of the return after ``n`` online environment steps;
    ``n = 0`` is the offline adaptation alone) and writes ``finetune.json`` into the log directory. Tasks are
    split across DDP ranks like the :class:`~lit_offmeta.callbacks.AdaptationEvaluator`'s.

    Args:
        report_env_steps: online environment steps at which to evaluate (the paper: 20000 and 200000).
        gradient_steps_per_rollout: gradient steps after each rollout (the paper: 100).
        adaptation_batch_size: size of the initial offline batch (the paper: 256).
        batch_size: minibatch size of the fine-tuning gradient steps.
        window: quality window of the offline batch (``None``: whole buffer).
        explore_std: Gaussian action noise of the online rollouts.
        eval_episodes: deterministic evaluation episodes per report point.
        discount: discount for the online data's Monte-Carlo returns; ``None``: the datamodule's ``gamma``
            (the offline batch's returns use it, so the two must agree).
        tasks: ``"test"``, ``"train"`` or explicit task ids.
        seed: base seed (per task: ``seed + task_id``).
    """

    def __init__(
        self,
        report_env_steps: list[int] = [20_000, 200_000],  # noqa: B006 (shown by jsonargparse)
        gradient_steps_per_rollout: int = 100,
        adaptation_batch_size: int = 256,
        batch_size: int = 256,
        window: str | None = None,
        explore_std: float = 0.2,
        eval_episodes: int = 1,
        discount: float | None = None,
        tasks: str | list[int] = "test",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not report_env_steps or any(int(s) < 1 for s in report_env_steps):
            raise ValueError(f"OnlineFineTuning: report_env_steps must be positive, got {report_env_steps!r}")
        for name, value in [("gradient_steps_per_rollout", gradient_steps_per_rollout),
                            ("adaptation_batch_size", adaptation_batch_size), ("batch_size", batch_size),
                            ("eval_episodes", eval_episodes)]:
            if int(value) < 1:
                raise ValueError(f"OnlineFineTuning: {name} must be >= 1, got {value!r}")
        if explore_std < 0:
            raise ValueError(f"OnlineFineTuning: explore_std must be >= 0, got {explore_std}")
        if discount is not None and not 0.0 <= discount <= 1.0:
            raise ValueError(f"OnlineFineTuning: discount must be in [0, 1] or None, got {discount}")
        if isinstance(tasks, str) and tasks not in ("test", "train"):
            raise ValueError(f"OnlineFineTuning: tasks must be 'test', 'train' or a list of ids, got {tasks!r}")
        self.report_env_steps = sorted(int(s) for s in report_env_steps)
        self.gradient_steps_per_rollout = gradient_steps_per_rollout
        self.adaptation_batch_size = adaptation_batch_size
        self.batch_size = batch_size
        self.window = window
        self.explore_std = explore_std
        self.eval_episodes = eval_episodes
        self.discount = discount
        self.tasks = tasks
        self.seed = seed
        self.results: dict[int, FineTuneResult] = {}

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run:
            return
        dm = trainer.datamodule
        if self.tasks == "test":
            task_ids = [int(t) for t in dm.test_task_ids]
        elif self.tasks == "train":
            task_ids = [int(t) for t in dm.train_task_ids]
        else:
            task_ids = [int(t) for t in self.tasks]
        discount = self.discount if self.discount is not None else float(getattr(dm, "gamma", 0.99))
        local = {}
        for tid in shard_tasks(task_ids, trainer.global_rank, trainer.world_size):
            with torch.inference_mode(False):
                batch = dm.adaptation_batch(tid, size=self.adaptation_batch_size, window=self.window,
                                            seed=self.seed + tid)
            local[tid] = online_finetune(
                pl_module, dm.family, dm.task(tid), batch, self.report_env_steps, self.gradient_steps_per_rollout,
                self.batch_size, discount, self.explore_std, self.eval_episodes, self.seed + tid,
            )
        self.results = merge_task_results(gather_objects(local, trainer.world_size), task_ids)
        points = [0, *self.report_env_steps]
        for i, n in enumerate(points):
            mean = float(np.mean([r.returns[i] for r in self.results.values()]))
            pl_module.log(f"finetune/return_steps_{n}", mean, batch_size=1, sync_dist=False)
        log_dir = trainer.log_dir or trainer.default_root_dir
        if trainer.is_global_zero:
            write_metrics_json(f"{log_dir}/finetune.json", {
                "report_env_steps": points,
                "mean_return": {str(n): float(np.mean([r.returns[i] for r in self.results.values()]))
                                for i, n in enumerate(points)},
                "tasks": {str(t): {"task": dm.task(t), "env_steps": r.env_steps, "returns": r.returns,
                                   "gradient_steps": r.gradient_steps} for t, r in self.results.items()},
                "settings": {"gradient_steps_per_rollout": self.gradient_steps_per_rollout,
                             "adaptation_batch_size": self.adaptation_batch_size, "batch_size": self.batch_size,
                             "explore_std": self.explore_std, "discount": discount, "seed": self.seed},
            })
