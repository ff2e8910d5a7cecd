"""LightningDataModules over offline task datasets (see docs/DATASETS.md)."""

from lit_offmeta.datamodules.offline_meta import OfflineMetaDataModule, ReturnRange, TaskBatchDataset

__all__ = ["OfflineMetaDataModule", "ReturnRange", "TaskBatchDataset"]
