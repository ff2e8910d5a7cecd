"""LightningDataModules over offline task datasets (see docs/DATASETS.md)."""

from lit_offmeta.datamodules.offline_meta import (
    AdaptationBatch,
    OfflineMetaDataModule,
    ReturnRange,
    TaskBatchDataset,
)

__all__ = ["AdaptationBatch", "OfflineMetaDataModule", "ReturnRange", "TaskBatchDataset"]
