"""LightningModules for offline meta-RL and their pure loss functions."""

from lit_offmeta.algorithms.corro import CORRO
from lit_offmeta.algorithms.focal import FOCAL
from lit_offmeta.algorithms.macaw import MACAW
from lit_offmeta.algorithms.meta_bc import MetaBC
from lit_offmeta.algorithms.mt_awr import MultiTaskAWR
from lit_offmeta.algorithms.pearl import OfflinePEARL
from lit_offmeta.algorithms.unicorn import UNICORN

__all__ = ["CORRO", "FOCAL", "MACAW", "UNICORN", "MetaBC", "MultiTaskAWR", "OfflinePEARL"]
