"""Offline-first dataset loaders returning NHWC float32 images in [0, 1]."""

from tfrobust.data._datasets import (
    DATASETS,
    DatasetInfo,
    DatasetNotFoundError,
    as_tf_dataset,
    dataset_info,
    load_dataset,
    load_raw,
)
from tfrobust.data._idx import IDXFormatError, read_idx, write_idx

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetNotFoundError",
    "IDXFormatError",
    "as_tf_dataset",
    "dataset_info",
    "load_dataset",
    "load_raw",
    "read_idx",
    "write_idx",
]
