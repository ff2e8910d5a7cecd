"""Behaviour-data collection: agents that learn each task from scratch, and the ``lit-offmeta collect`` engine.

``collect(get_preset("point_robot", "small"), "data/")`` writes one dataset per task through
:mod:`lit_offmeta.data.storage`; see :mod:`lit_offmeta.collect.presets` for the presets and agents.
"""

from lit_offmeta.collect.presets import PRESETS, CollectConfig, available_presets, get_preset
from lit_offmeta.collect.runner import CollectSummary, collect

__all__ = ["PRESETS", "CollectConfig", "CollectSummary", "available_presets", "collect", "get_preset"]
