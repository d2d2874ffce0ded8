"""Datasets and the deterministic search / reward / test splits of haq-rl.

``load_dataset(name, root)`` reads one of ``DATASET_NAMES`` into an ``ImageDataset``;
``make_splits`` turns it into normalised torch datasets; ``make_loader`` batches them.
"""

from .cifar import CIFAR10_CLASSES, CIFAR10_FOLDER, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES
from .dataset import DATASET_NAMES, ImageDataset
from .idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx, write_idx
from .imagefolder import DEFAULT_IMAGE_SIZE, IMAGE_EXTENSIONS
from .loaders import BUILTIN_DATASETS, load_dataset, resize_images
from .mnist import MNIST_FILES
from .splits import (
    DataSplits,
    SplitConfig,
    channel_stats,
    make_loader,
    make_splits,
    normalize_images,
    split_indices,
)

__all__ = [
    "BUILTIN_DATASETS",
    "CIFAR10_CLASSES",
    "CIFAR10_FOLDER",
    "CIFAR10_TEST_FILE",
    "CIFAR10_TRAIN_FILES",
    "DATASET_NAMES",
    "DEFAULT_IMAGE_SIZE",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "IMAGE_EXTENSIONS",
    "MNIST_FILES",
    "DataSplits",
    "ImageDataset",
    "SplitConfig",
    "channel_stats",
    "load_dataset",
    "make_loader",
    "make_splits",
    "normalize_images",
    "read_idx",
    "resize_images",
    "split_indices",
    "write_idx",
]
