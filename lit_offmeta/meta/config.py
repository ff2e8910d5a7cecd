"""The inner-loop settings MACAW and meta-BC share, as one typed config.

LightningCLI reads it from a YAML block (``model.init_args.inner.steps: 1``); in Python pass an
:class:`InnerLoopConfig` or a plain dict with the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from lit_offmeta.meta.adaptation import MODES
from lit_offmeta.nn.config import TypedConfig


@dataclass(frozen=True)
class InnerLoopConfig(TypedConfig):
    """How a meta-learner adapts: the inner SGD steps and their learned per-tensor learning rates.

    Attributes:
        steps: inner SGD steps per task in meta-training (paper: 1).
        test_steps: adaptation steps of ``adapt``, validation and test when none are given (paper: 1).
        first_order: drop the second-order terms of the meta-gradient (first-order MAML, for large models).
        learn_lrs: meta-learn the per-tensor inner learning rates (and MACAW's lambda) (paper: yes).
        lr_of_lrs: outer Adam learning rate of those learned rates (the authors' code: 1e-3).
        mode: how the inner loop is computed, all three the same function (:mod:`lit_offmeta.meta.adaptation`):
            ``closed_form`` (the fast path, default), ``vmap`` (the readable ``torch.func`` reference) or
            ``loop`` (one task at a time).
    """

    steps: int = 1
    test_steps: int = 1
    first_order: bool = False
    learn_lrs: bool = True
    lr_of_lrs: float = 1e-3
    mode: str = "closed_form"

    block = "inner"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"inner: mode must be one of {MODES}, got {self.mode!r}")
        for name in ("steps", "test_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"inner: {name} must be an integer >= 0, got {value!r}")
        if not self.lr_of_lrs > 0:
            raise ValueError(f"inner: lr_of_lrs must be > 0, got {self.lr_of_lrs}")
