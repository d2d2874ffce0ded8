"""The in-memory dataset record shared by every loader."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Order matters only for help texts: the offline default comes first.
DATASET_NAMES: tuple[str, ...] = ("mnist5k", "digits", "fashion-mnist", "mnist", "cifar10", "imagefolder")


@dataclass(frozen=True)
class ImageDataset:
    """A whole image-classification dataset held in memory.

    Attributes:
        name: the dataset name it was loaded under (one of ``DATASET_NAMES``).
        images: array ``(N, C, H, W)``; ``uint8`` in 0..255, or ``float32`` already in 0..1.
        labels: ``int64`` array ``(N,)`` with values in ``0 .. num_classes - 1``.
        num_classes: number of classes.
        class_names: one human-readable name per class, index = label.
        official_test_mask: ``bool`` array ``(N,)`` marking the dataset's official test
            part (MNIST t10k, CIFAR test_batch, an imagefolder ``val``/``test`` folder), or
            None when the dataset has no predefined test set. ``make_splits`` uses it as
            the ``test`` split so reported accuracies are comparable with the literature.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = field(default=())
    official_test_mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Loaders are internal, so these are programming errors rather than user errors.
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {self.images.shape}")
        if self.images.dtype not in (np.uint8, np.float32):
            raise ValueError(f"images must be uint8 or float32, got {self.images.dtype}")
        if self.labels.shape != (len(self.images),) or self.labels.dtype != np.int64:
            raise ValueError(
                f"labels must be int64 of shape ({len(self.images)},), "
                f"got {self.labels.dtype} {self.labels.shape}"
            )
        if self.official_test_mask is not None and self.official_test_mask.shape != self.labels.shape:
            raise ValueError("official_test_mask must have one entry per image")
        if not self.class_names:
            object.__setattr__(self, "class_names", tuple(str(i) for i in range(self.num_classes)))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        _, c, h, w = self.images.shape
        return (int(c), int(h), int(w))

    @property
    def has_official_test(self) -> bool:
        """True when the dataset ships its own test part."""
        return self.official_test_mask is not None and bool(self.official_test_mask.any())
