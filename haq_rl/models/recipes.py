"""The pretraining recipe of each zoo model (epochs, peak learning rate) and each dataset
(augmentation), used by :class:`haq_rl.pretrain.PretrainConfig` when none is given."""

from __future__ import annotations

# Per-model recipes measured on mnist5k (docs/data_and_models.md).
# Other datasets reuse them; pass epochs/lr explicitly to tune.
_DEFAULT_EPOCHS = {"lenet5": 15, "mobilenetv2": 12, "mobilenetv1": 5, "resnet8": 8,
                   "resnet20": 8, "resnet18": 5, "resnet50": 5}
_DEFAULT_LR = {"lenet5": 0.05, "mobilenetv2": 0.05, "mobilenetv1": 0.1, "resnet8": 0.1,
               "resnet20": 0.1, "resnet18": 0.05, "resnet50": 0.05}
_FALLBACK_EPOCHS = 5  # user models
_FALLBACK_LR = 0.05
# Fashion-MNIST (54,000 training images): longer, with shifts and mirrors against
# overfitting (docs/data_and_models.md gives the accuracies these reach).
_DATASET_EPOCHS = {("fashion-mnist", "mobilenetv2"): 10, ("fashion-mnist", "resnet8"): 15}
#: (max shift in pixels, mirror) per dataset; digits must not be mirrored.
_DATASET_AUGMENT = {"fashion-mnist": (2, True)}


def default_epochs(model: str, dataset: str = "mnist5k") -> int:
    """Pretraining epochs used when none are given (user models get a generic value)."""
    return _DATASET_EPOCHS.get((dataset, model), _DEFAULT_EPOCHS.get(model, _FALLBACK_EPOCHS))


def default_augment(dataset: str) -> tuple[int, bool]:
    """``(augment_shift, augment_flip)`` used when none are given: the dataset's recipe."""
    return _DATASET_AUGMENT.get(dataset, (0, False))


def default_lr(model: str) -> float:
    """Peak SGD learning rate used when none is given."""
    return _DEFAULT_LR.get(model, _FALLBACK_LR)
