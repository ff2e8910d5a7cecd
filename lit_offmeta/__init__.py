"""lit-offmeta: offline meta-reinforcement learning as PyTorch Lightning modules.

``import lit_offmeta`` registers the task families' gymnasium ids (``gym.make("lit_offmeta/PointRobot-v0")``,
see :mod:`lit_offmeta.tasks`); it imports gymnasium and the task families, not torch or Lightning.
"""

from lit_offmeta import tasks as _tasks  # noqa: F401 (registers the gymnasium ids)

__version__ = "0.1.0"
