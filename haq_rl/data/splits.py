"""Deterministic, stratified search / reward / test splits and their data loaders.

HAQ searches with accuracy measured on a held-out part of the *training* data (the
reward set), so the test set stays untouched until the final evaluation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from haq_rl.errors import ConfigError, check_integer

from .dataset import ImageDataset
from .normalization import DATASET_STATS, explicit_stats, stats_for_channels

logger = logging.getLogger(__name__)

_CHUNK = 4096  # images per step when computing statistics / normalising (bounds memory)


def _check_fraction(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ConfigError(f"SplitConfig.{name} must be a number in (0, 1) exclusive, got {value!r}")


@dataclass(frozen=True)
class SplitConfig:
    """How to split a dataset.

    Attributes:
        seed: seeds the shuffling inside each class; an integer >= 0.
        reward_fraction: share of the training data held out as HAQ's reward set. Without
            an official test set it is a share of the whole dataset (so with defaults
            70/10/20); with one, a share of the official training part.
        test_fraction: share of the whole dataset used as test set when the dataset has
            no official test set; ignored otherwise.
    """

    seed: int = 0
    reward_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        check_integer("SplitConfig.seed", self.seed, 0)
        _check_fraction("reward_fraction", self.reward_fraction)
        _check_fraction("test_fraction", self.test_fraction)
        total = self.reward_fraction + self.test_fraction
        if total >= 1.0:
            raise ConfigError(
                f"SplitConfig.reward_fraction + test_fraction must be < 1 (leaving data to "
                f"train on), got {self.reward_fraction} + {self.test_fraction} = {total:g}"
            )


@dataclass(frozen=True)
class DataSplits:
    """The three splits of one dataset, normalised as ``normalize`` says (by default with
    the statistics of ``search_train``; see :mod:`haq_rl.data.normalization`).

    ``search_train``, ``reward_val`` and ``test`` are TensorDatasets of float32 images
    ``(N, C, H, W)`` and int64 labels. ``train_indices`` / ``reward_indices`` /
    ``test_indices`` are sorted positions into the source ``ImageDataset``.
    """

    search_train: TensorDataset
    reward_val: TensorDataset
    test: TensorDataset
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    input_shape: tuple[int, int, int]
    dataset_name: str
    config: SplitConfig
    train_indices: np.ndarray = field(repr=False)
    reward_indices: np.ndarray = field(repr=False)
    test_indices: np.ndarray = field(repr=False)
    class_names: tuple[str, ...] = ()
    official_test: bool = False
    normalize: str = DATASET_STATS

    @property
    def sizes(self) -> dict[str, int]:
        """Number of samples per split, for logs and run metadata."""
        return {
            "search_train": len(self.train_indices),
            "reward_val": len(self.reward_indices),
            "test": len(self.test_indices),
        }


def _allocate(counts: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Per-class sizes summing to ``round(counts.sum() * fraction)``, proportional to ``counts``.

    Largest-remainder rounding: rounding each class on its own would give zero-sized
    splits for small classes (4 images x 0.1 -> 0) and totals that drift from the
    requested fraction. Ties are broken by the seeded generator, not by class order.
    """
    ideal = counts * fraction
    sizes = np.floor(ideal).astype(np.int64)
    missing = int(np.floor(counts.sum() * fraction + 0.5)) - int(sizes.sum())
    if missing > 0:
        order = np.lexsort((rng.random(len(counts)), -(ideal - sizes)))
        sizes[order[:missing]] += 1
    return sizes


def split_indices(
    labels: np.ndarray,
    config: SplitConfig,
    official_test_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified ``(train, reward, test)`` index arrays (sorted, disjoint, covering all).

    Every class is shuffled with one generator seeded by ``config.seed`` and cut into
    parts proportional to the fractions, so each split keeps the class balance.
    """
    rng = np.random.default_rng(config.seed)
    has_official = official_test_mask is not None and bool(official_test_mask.any())
    all_idx = np.arange(len(labels))
    if has_official and official_test_mask is not None:  # `is not None` already in has_official
        test_parts = [all_idx[official_test_mask]]
        pool = all_idx[~official_test_mask]
    else:
        test_parts = []
        pool = all_idx
    train_parts: list[np.ndarray] = []
    reward_parts: list[np.ndarray] = []
    pool_labels = labels[pool]
    classes, counts = np.unique(pool_labels, return_counts=True)
    n_tests = np.zeros_like(counts) if has_official else _allocate(counts, config.test_fraction, rng)
    n_rewards = _allocate(counts, config.reward_fraction, rng)
    for cls, n, n_test, n_reward in zip(classes, counts, n_tests, n_rewards, strict=True):
        members = rng.permutation(pool[pool_labels == cls])
        # Keep at least one training example per class (matters only for tiny classes).
        overflow = n_test + n_reward - (n - 1)
        if overflow > 0:
            n_reward = max(0, n_reward - overflow)
            n_test = max(0, min(n_test, n - 1 - n_reward))
        reward_parts.append(members[:n_reward])
        test_parts.append(members[n_reward : n_reward + n_test])
        train_parts.append(members[n_reward + n_test :])
    return tuple(  # type: ignore[return-value]
        np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)
        for parts in (train_parts, reward_parts, test_parts)
    )


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of images scaled to 0..1 (uint8 is divided by 255)."""
    channels = images.shape[1]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    for start in range(0, len(images), _CHUNK):
        chunk = images[start : start + _CHUNK].astype(np.float64)
        total += chunk.sum(axis=(0, 2, 3))
        total_sq += np.square(chunk).sum(axis=(0, 2, 3))
    count = len(images) * images.shape[2] * images.shape[3]
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0)
    std = np.sqrt(var)
    # A constant channel would divide by zero; leave it unscaled instead.
    std = np.where(std > 1e-12, std, scale)
    return tuple(float(m / scale) for m in mean), tuple(float(s / scale) for s in std)


def normalize_images(
    images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """Return float32 ``(images / 255 - mean) / std`` per channel (no /255 for float input)."""
    out = torch.empty(images.shape, dtype=torch.float32)
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    for start in range(0, len(images), _CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + _CHUNK]))
        out[start : start + len(chunk)] = (chunk.float() / scale - m) / s
    return out


def make_splits(dataset: ImageDataset, config: SplitConfig | None = None,
                normalize: str = DATASET_STATS) -> DataSplits:
    """Split ``dataset`` into normalised ``search_train`` / ``reward_val`` / ``test`` sets.

    Deterministic for a given ``config.seed``. The official test set is used as ``test``
    when the dataset has one. With ``normalize="dataset"`` mean/std come from
    ``search_train`` only, so nothing about the reward or test images leaks into training;
    ``none`` and ``MEAN/STD`` fix them (:func:`haq_rl.data.normalization.explicit_stats`).

    Raises:
        ConfigError: the dataset is too small for the fractions (a split would be empty).
    """
    config = SplitConfig() if config is None else config
    train_idx, reward_idx, test_idx = split_indices(
        dataset.labels, config, dataset.official_test_mask
    )
    for split, idx in (("search_train", train_idx), ("reward_val", reward_idx), ("test", test_idx)):
        if len(idx) == 0:
            raise ConfigError(
                f"dataset {dataset.name!r} ({len(dataset)} images) is too small for "
                f"reward_fraction={config.reward_fraction}, test_fraction={config.test_fraction}: "
                f"split {split!r} would be empty"
            )
    fixed = explicit_stats(normalize)
    if fixed is None:
        mean, std = channel_stats(dataset.images[train_idx])
    else:
        mean, std = stats_for_channels(fixed, int(dataset.images.shape[1]), normalize)

    def tensors(idx: np.ndarray) -> TensorDataset:
        images = normalize_images(dataset.images[idx], mean, std)
        return TensorDataset(images, torch.from_numpy(dataset.labels[idx].copy()))

    splits = DataSplits(
        search_train=tensors(train_idx),
        reward_val=tensors(reward_idx),
        test=tensors(test_idx),
        mean=mean,
        std=std,
        num_classes=dataset.num_classes,
        input_shape=dataset.input_shape,
        dataset_name=dataset.name,
        config=config,
        train_indices=train_idx,
        reward_indices=reward_idx,
        test_indices=test_idx,
        class_names=dataset.class_names,
        official_test=dataset.has_official_test,
        normalize=normalize,
    )
    logger.info("splits of %s (seed %d): %s", dataset.name, config.seed, splits.sizes)
    return splits


def make_loader(
    dataset: Dataset, batch_size: int = 256, shuffle: bool = False, seed: int = 0
) -> DataLoader:
    """A single-process DataLoader; shuffling uses its own generator seeded with ``seed``.

    A private generator keeps the batch order reproducible without touching torch's
    global RNG (which the agent and model init also draw from).
    """
    check_integer("batch_size", batch_size, 1)
    generator = torch.Generator().manual_seed(int(seed)) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      num_workers=0)  # fmt: skip
