"""Pretraining float models, their checkpoints, and the pretrained-model cache.

A checkpoint is a plain dict ``{"format_version": 1, "state_dict": ..., "meta": ...}``
that loads with ``torch.load(weights_only=True)``; ``meta`` holds everything needed to
rebuild the model (name, classes, channels, input size, width) plus how it was trained
and its accuracies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from haq_rl import __version__
from haq_rl.cache import cache_dir, cache_lock
from haq_rl.checkpoint_io import atomic_torch_save, read_torch_file
from haq_rl.data.normalization import DATASET_STATS, explicit_stats
from haq_rl.errors import CheckpointError, ConfigError, UnknownNameError, check_integer, check_seed
from haq_rl.fileio import check_writable_folder
from haq_rl.models import MODEL_NAMES, build_model, check_model_name, is_import_path
from haq_rl.models.recipes import default_augment, default_epochs, default_lr
from haq_rl.seeding import seed_everything
from haq_rl.shipped_models import shipped_checkpoint, weights_sha256

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1
REQUIRED_META = ("model", "num_classes", "in_channels", "input_size", "width_mult")

def _dataset_names() -> tuple[str, ...]:
    from haq_rl.data import DATASET_NAMES

    return DATASET_NAMES


@dataclass(frozen=True)
class PretrainConfig:
    """How to pretrain one float model; validated on construction (raises ConfigError).

    ``epochs`` and ``lr`` default to the per-model recipe (:func:`default_epochs`,
    :func:`default_lr`) and are filled in, so a config always holds concrete values.
    ``seed`` drives initialisation and batch order; ``split_seed`` picks the
    search/reward/test split and must match the one the search uses, so the pretrained
    model never sees the reward or test images. ``input_size`` resizes the images
    (None: the dataset's own size). ``device`` does not change the result's identity.
    """

    model: str = "mobilenetv2"
    dataset: str = "mnist5k"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int = 64
    seed: int = 0
    split_seed: int = 0
    data_root: str | None = None
    width_mult: float = 1.0
    input_size: int | None = None
    augment_shift: int | None = None
    augment_flip: bool | None = None
    #: The pixels the model is trained on (haq_rl.data.normalization): the task's ``normalize``.
    normalize: str = "dataset"
    device: str = field(default="auto", compare=False)

    def __post_init__(self) -> None:
        check_model_name(self.model)
        if self.dataset not in _dataset_names():
            raise UnknownNameError("dataset", self.dataset, _dataset_names())
        if self.epochs is None:
            object.__setattr__(self, "epochs", default_epochs(self.model, self.dataset))
        shift, flip = default_augment(self.dataset)
        if self.augment_shift is None:
            object.__setattr__(self, "augment_shift", shift)
        if self.augment_flip is None:
            object.__setattr__(self, "augment_flip", flip)
        if isinstance(self.augment_shift, bool) or not isinstance(self.augment_shift, int) \
                or not 0 <= self.augment_shift <= 8:
            raise ConfigError(f"PretrainConfig.augment_shift must be an integer in 0..8 (pixels), "
                              f"got {self.augment_shift!r}")
        if not isinstance(self.augment_flip, bool):
            raise ConfigError(f"PretrainConfig.augment_flip must be true or false, got {self.augment_flip!r}")
        explicit_stats(self.normalize)
        if self.lr is None:
            object.__setattr__(self, "lr", default_lr(self.model))
        if self.data_root is not None:
            object.__setattr__(self, "data_root", str(self.data_root))
        for name in ("epochs", "batch_size"):
            check_integer(f"PretrainConfig.{name}", getattr(self, name), 1)
        for name in ("seed", "split_seed"):
            check_seed(f"PretrainConfig.{name}", getattr(self, name))
        if not isinstance(self.lr, int | float) or not self.lr > 0 or not self.lr < float("inf"):
            raise ConfigError(f"PretrainConfig.lr must be a finite number > 0, got {self.lr!r}")
        if not isinstance(self.width_mult, int | float) or not self.width_mult > 0:
            raise ConfigError(f"PretrainConfig.width_mult must be > 0, got {self.width_mult!r}")
        if self.input_size is not None:
            check_integer("PretrainConfig.input_size", self.input_size, 1, "or None: the dataset's")

    def identity(self) -> dict[str, Any]:
        """The fields that determine the trained weights (everything except the device)."""
        ident = asdict(self)
        ident.pop("device")
        # Augmentation came after the first shipped models: off, it stays out of the
        # identity so their hashes (and cache names) keep their meaning.
        if not ident["augment_shift"] and not ident["augment_flip"]:
            del ident["augment_shift"], ident["augment_flip"]
        # Likewise the default normalisation: every existing model was trained with it.
        if ident["normalize"] == DATASET_STATS:
            del ident["normalize"]
        return ident

    def short_hash(self) -> str:
        """10 hex digits identifying the trained result (cache file names)."""
        text = json.dumps({**self.identity(), "format_version": CHECKPOINT_FORMAT_VERSION},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def cached_checkpoint_path(config: PretrainConfig) -> Path:
    """Where :func:`get_pretrained` keeps the checkpoint of ``config``."""
    model = re.sub(r"[^A-Za-z0-9_.-]+", "_", config.model)
    return cache_dir("pretrained") / f"{model}-{config.dataset}-{config.short_hash()}.pt"


def pretrain(config: PretrainConfig | None = None, out: str | Path | None = None,
             progress: bool = True, replaces_shipped: bool = False) -> Path:
    """Train ``config.model`` on the ``search_train`` split and save a checkpoint.

    Accuracy is measured on ``reward_val`` and ``test`` and stored in the checkpoint's
    meta. ``out`` defaults to the cache path (:func:`cached_checkpoint_path`), so a later
    :func:`get_pretrained` with the same config reuses the result. ``replaces_shipped``
    marks a result that get_pretrained prefers to a shipped model of the same config
    (``haq-rl pretrain --force``). Returns the path.
    """
    from haq_rl.data import SplitConfig, load_dataset, make_loader, make_splits
    from haq_rl.training import resolve_device, train_epochs

    config = PretrainConfig() if config is None else config
    path = Path(out) if out is not None else cached_checkpoint_path(config)
    if path.is_dir():
        raise ConfigError(f"checkpoint path {path} is a folder; give a file name (e.g. {path / 'model.pt'})")
    check_writable_folder(path.parent, "checkpoint folder")  # before training, not after
    device = resolve_device(config.device)
    start = time.perf_counter()
    seed_everything(config.seed)
    dataset = load_dataset(config.dataset, config.data_root, image_size=config.input_size)
    splits = make_splits(dataset, SplitConfig(seed=config.split_seed), normalize=config.normalize)
    channels, height, _ = splits.input_shape
    model = build_model(config.model, num_classes=splits.num_classes, in_channels=channels,
                        input_size=height, width_mult=config.width_mult)
    # Re-seed after data and model construction so the batch order depends only on seed.
    seed_everything(config.seed)
    loader = make_loader(splits.search_train, batch_size=config.batch_size, shuffle=True,
                         seed=config.seed)
    logger.info("pretraining %s on %s (%d images) for %d epochs at lr %g on %s",
                config.model, config.dataset, len(splits.search_train), config.epochs,
                config.lr, device)
    # PretrainConfig.__post_init__ fills epochs/lr with the per-model defaults.
    epochs, lr = cast(int, config.epochs), cast(float, config.lr)
    train_epochs(model, loader, epochs=epochs, lr=lr, device=device, seed=config.seed,
                 augment_shift=int(config.augment_shift or 0), augment_flip=bool(config.augment_flip),
                 progress=progress, desc=f"pretrain {config.model}")
    reward_acc, test_acc = _split_accuracies(model, splits)
    wall = time.perf_counter() - start
    meta = {
        "model": config.model,
        "dataset": config.dataset,
        "num_classes": int(splits.num_classes),
        "in_channels": int(channels),
        "input_size": int(height),
        "input_shape": [int(v) for v in splits.input_shape],
        "width_mult": float(config.width_mult),
        "split_seed": int(config.split_seed),
        "seed": int(config.seed),
        "data_root": config.data_root,
        "image_size": config.input_size,
        "mean": [float(v) for v in splits.mean],
        "std": [float(v) for v in splits.std],
        "epochs": int(epochs),
        "lr": float(lr),
        "batch_size": int(config.batch_size),
        "augment_shift": int(config.augment_shift or 0),
        "augment_flip": bool(config.augment_flip),
        "test_accuracy": float(test_acc),
        "reward_accuracy": float(reward_acc),
        "wall_time_s": float(wall),
        "device": str(device),
        "config_hash": config.short_hash(),
        "haq_rl_version": __version__,
        # Written by `haq-rl pretrain --force`: this machine's own training of a model that
        # also ships, which get_pretrained then prefers to the shipped one.
        "replaces_shipped": bool(replaces_shipped),
    }
    if config.normalize != DATASET_STATS:  # absent: the default, as in every earlier checkpoint
        meta["normalize"] = config.normalize
    state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_torch_save({"format_version": CHECKPOINT_FORMAT_VERSION, "state_dict": state_dict,
                  "meta": meta}, path)
    logger.info("pretrained %s: test %.2f %%, reward %.2f %% in %.1f s -> %s",
                config.model, test_acc, reward_acc, wall, path)
    return path


def measure_accuracies(model: nn.Module, meta: dict[str, Any]) -> tuple[float, float]:
    """``(reward_val, test)`` top-1 of ``model`` on the splits its checkpoint ``meta`` names."""
    from haq_rl.data import SplitConfig, load_dataset, make_splits

    dataset = load_dataset(meta["dataset"], meta.get("data_root"), image_size=meta.get("image_size"))
    splits = make_splits(dataset, SplitConfig(seed=int(meta["split_seed"])),
                         normalize=str(meta.get("normalize", DATASET_STATS)))
    return _split_accuracies(model, splits)


def _split_accuracies(model: nn.Module, splits: Any) -> tuple[float, float]:
    """``(reward_val, test)`` top-1 of ``model``: what a checkpoint's meta records."""
    from haq_rl.data import make_loader
    from haq_rl.training import evaluate_accuracy

    return (evaluate_accuracy(model, make_loader(splits.reward_val, batch_size=256)),
            evaluate_accuracy(model, make_loader(splits.test, batch_size=256)))


def _read_checkpoint(path: str | Path) -> dict[str, Any]:
    payload = read_torch_file(path, {"state_dict", "meta"}, "haq-rl checkpoint")
    version = payload.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format_version {version!r}, "
                              f"this haq-rl reads {CHECKPOINT_FORMAT_VERSION}")
    meta = payload["meta"]
    missing = [key for key in REQUIRED_META if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise CheckpointError(f"checkpoint {path} meta lacks {', '.join(missing)}")
    return payload


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The ``meta`` dict of a checkpoint without building the model."""
    return dict(_read_checkpoint(path)["meta"])


def load_checkpoint(path: str | Path, model: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint and load its weights (cpu, eval mode).

    The model its meta names is built only when it is a zoo name or ``model``, the import
    path the caller was given (the cache entry of a user model): nothing read from a file
    is imported.

    Raises:
        MissingPathError: ``path`` does not exist.
        CheckpointError: unreadable or corrupt file, missing keys, or weights that do
            not fit the model named in its meta.
    """
    payload = _read_checkpoint(path)
    meta = dict(payload["meta"])
    if not isinstance(meta["model"], str) or (is_import_path(meta["model"]) and meta["model"] != model):
        raise CheckpointError(f"checkpoint {path} names the model {meta['model']!r}, not "
                              f"{model or 'a zoo model'}: haq-rl never imports code named in a file")
    try:
        built = build_model(meta["model"], num_classes=int(meta["num_classes"]),
                            in_channels=int(meta["in_channels"]),
                            input_size=int(meta["input_size"]),
                            width_mult=float(meta["width_mult"]))
    except (ConfigError, UnknownNameError, ValueError, TypeError, OverflowError) as error:  # meta of the wrong kind too
        raise CheckpointError(f"checkpoint {path}: cannot rebuild its model: {error}") from None
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(
            not isinstance(v, torch.Tensor) or not v.is_floating_point() or bool(torch.isfinite(v).all())
            for v in state.values()):
        raise CheckpointError(f"checkpoint {path} holds non-finite weights (NaN or inf)")
    try:
        built.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not fit model {meta['model']!r}: "
                              f"{first_line}") from error
    built.eval()
    meta["weights_sha256"] = weights_sha256(built)
    return built, meta


def shipped_checkpoint_for(config: PretrainConfig) -> Path | None:
    """The checkpoint of ``config`` shipped inside haq-rl (checksum verified), or None."""
    return shipped_checkpoint(config.short_hash())


def get_pretrained(config: PretrainConfig | None = None,
                   progress: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """The float model of ``config``: shipped with haq-rl, or trained once and cached.

    Order: a cached model trained here by ``haq-rl pretrain --force``; else the shipped
    model of the same config (identical on every machine); else the cache, training it the
    first time under a lock (a second process waits, saying for whom). ``meta["source"]``
    says which ("shipped" or "cache") and ``meta["weights_sha256"]`` identifies the weights.
    A corrupt cache file is logged and replaced by a fresh training run.
    """
    config = PretrainConfig() if config is None else config
    path = cached_checkpoint_path(config)
    shipped = shipped_checkpoint_for(config)
    if shipped is not None:
        if _forced_here(path):
            try:
                model, meta = load_checkpoint(path, config.model)
                return model, {**meta, "source": "cache"}
            except CheckpointError as error:  # never a local retraining while a shipped model is there
                logger.warning("ignoring the unusable local replacement of the shipped model (%s); using the "
                               "shipped one", error)
        model, meta = load_checkpoint(shipped)
        return model, {**meta, "source": "shipped"}
    if is_import_path(config.model) and not path.exists():
        # A user model that cannot work fails now: no "training ... once" line, no lock file.
        _check_user_model(config)
    with cache_lock(path.with_name(path.name + ".lock"), f"training {config.model} on {config.dataset}"):
        if path.exists():
            try:
                model, meta = load_checkpoint(path, config.model)
                return model, {**meta, "source": "cache"}
            except CheckpointError as error:
                logger.warning("discarding unusable cached checkpoint: %s", error)
        if not os.access(path.parent, os.W_OK | os.X_OK):  # fail before training, not after
            raise ConfigError(f"the pretrained cache {path.parent} is read-only and has no {config.model} "
                              "checkpoint; set HAQ_RL_CACHE to a writable folder")
        logger.warning("training the float %s on %s once (cached in %s)", config.model, config.dataset, path)
        pretrain(config, out=path, progress=progress)
        model, meta = load_checkpoint(path, config.model)
        return model, {**meta, "source": "cache"}


def _check_user_model(config: PretrainConfig) -> None:
    """Build the user model of ``config`` once for its dataset's shape (build_model checks
    its forward, outputs and parameters); raises ConfigError in one line."""
    from haq_rl.data import load_dataset

    dataset = load_dataset(config.dataset, config.data_root, image_size=config.input_size)
    channels, height = int(dataset.images.shape[1]), int(dataset.images.shape[2])
    build_model(config.model, num_classes=int(dataset.num_classes), in_channels=channels, input_size=height,
                width_mult=config.width_mult)


def _forced_here(path: Path) -> bool:
    """Whether the cached checkpoint at ``path`` was trained here by ``pretrain --force``,
    which then wins over the shipped model (read from its meta: nothing is built)."""
    if not path.exists():
        return False
    try:
        return bool(read_checkpoint_meta(path).get("replaces_shipped"))
    except CheckpointError as error:
        logger.warning("ignoring unusable cached checkpoint: %s", error)
        return False


__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "MODEL_NAMES",
    "PretrainConfig",
    "cached_checkpoint_path",
    "default_epochs",
    "default_lr",
    "get_pretrained",
    "shipped_checkpoint_for",
    "load_checkpoint",
    "measure_accuracies",
    "pretrain",
    "read_checkpoint_meta",
]
