"""LightningModules for offline meta-RL and their pure loss functions."""

from lit_offmeta.algorithms.macaw import MACAW

__all__ = ["MACAW"]
