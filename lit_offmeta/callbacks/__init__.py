"""Evaluation of adapted policies: batched rollouts, the AdaptationEvaluator callback, plots and reports;
AdaptedPolicyWriter, which writes what ``Trainer.predict`` adapts."""

from lit_offmeta.algorithms.finetuning import GradientFineTuner
from lit_offmeta.callbacks.evaluator import AdaptationEvaluator, adapt_and_rollout, random_policy_returns
from lit_offmeta.callbacks.finetune import OnlineFineTuning, online_finetune
from lit_offmeta.callbacks.plots import plot_adaptation_curve
from lit_offmeta.callbacks.predictions import AdaptedPolicyWriter
from lit_offmeta.callbacks.report import write_report
from lit_offmeta.callbacks.scoring import normalised_score
from lit_offmeta.rollout import (
    ModulePolicy,
    PerTaskPolicy,
    RandomPolicy,
    RolloutResult,
    as_rollout_policy,
    rollout,
)

__all__ = [
    "AdaptationEvaluator",
    "AdaptedPolicyWriter",
    "GradientFineTuner",
    "OnlineFineTuning",
    "ModulePolicy",
    "PerTaskPolicy",
    "RandomPolicy",
    "RolloutResult",
    "adapt_and_rollout",
    "as_rollout_policy",
    "normalised_score",
    "online_finetune",
    "plot_adaptation_curve",
    "random_policy_returns",
    "rollout",
    "write_report",
]
