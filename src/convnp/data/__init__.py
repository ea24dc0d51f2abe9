"""Datasets, batching and augmentation: everything between files on disk and (N, C, H, W) batches."""
from convnp.data.array_dataset import ArrayDataset
from convnp.data.datasets import (
    DATASET_NAMES,
    DatasetStatus,
    available_datasets,
    cifar10,
    digits,
    fashion_mnist,
    image_folder,
    load_dataset,
    mnist,
)

# The function ``download`` stays in its module so that ``convnp.data.download`` names the module
# (tests monkeypatch ``convnp.data.download.MIRRORS``); call it as ``convnp.data.download.download``.
from convnp.data.download import DownloadError, data_dir, fetch
from convnp.data.idx import CorruptDataError, read_idx, write_idx
from convnp.data.loader import DataLoader
from convnp.data.synthetic import geometric_digits, oriented_lines, oriented_lines_patterns
from convnp.data.transforms import (
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomShift,
    crop_windows,
    resize_bilinear,
    shift_images,
)

__all__ = [
    "ArrayDataset", "DATASET_NAMES", "DatasetStatus", "available_datasets", "cifar10", "digits",
    "fashion_mnist", "image_folder", "load_dataset", "mnist",
    "DownloadError", "data_dir", "fetch",
    "CorruptDataError", "read_idx", "write_idx",
    "DataLoader",
    "geometric_digits", "oriented_lines", "oriented_lines_patterns",
    "Compose", "Normalize", "RandomCrop", "RandomHorizontalFlip", "RandomShift",
    "crop_windows", "resize_bilinear", "shift_images",
]
