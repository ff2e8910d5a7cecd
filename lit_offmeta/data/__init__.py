"""Offline task data: per-task buffers, on-disk Minari storage, importers and the TaskBatch unit.

A storage layer: it knows task families, never algorithms (see docs/DATASETS.md).
"""

from lit_offmeta.data.batch import TRANSITION_KEYS, TaskBatch
from lit_offmeta.data.buffer import TaskBuffer, ValueTargets
from lit_offmeta.data.storage import (
    MissingDatasetError,
    dataset_path,
    list_task_datasets,
    load_task_buffers,
    write_task_dataset,
)

__all__ = [
    "TRANSITION_KEYS",
    "MissingDatasetError",
    "TaskBatch",
    "TaskBuffer",
    "ValueTargets",
    "dataset_path",
    "list_task_datasets",
    "load_task_buffers",
    "write_task_dataset",
]
