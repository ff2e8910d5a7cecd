"""The functional inner loop: learned per-tensor learning rates and batched (vmapped / closed-form) adaptation."""

from lit_offmeta.meta.adaptation import MODES, adapt
from lit_offmeta.meta.config import InnerLoopConfig
from lit_offmeta.meta.learning_rates import InnerLearningRates, inverse_softplus

__all__ = ["MODES", "InnerLearningRates", "InnerLoopConfig", "adapt", "inverse_softplus"]
