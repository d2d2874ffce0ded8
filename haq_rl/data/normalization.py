"""What haq-rl does to pixels before the model sees them: the ``normalize`` setting of a task.

Images are stored as uint8 (or floats in 0..1). Every model input is
``(pixels / 255 - mean) / std`` per channel, in the dataset's own channel order, at the
task's ``input_size``. ``normalize`` picks ``mean`` and ``std``:

* ``dataset`` (the default): the per-channel mean and std of the ``search_train`` split,
  what haq-rl's own pretrained models were trained with;
* ``none``: no mean and std (``pixels / 255`` only), the usual way a model is trained
  with ``transforms.ToTensor()`` alone;
* ``MEAN/STD``: explicit values, one number or one per channel, comma separated, e.g.
  ``0.1307/0.3081`` or ``0.485,0.456,0.406/0.229,0.224,0.225``.

A model scored with other pixels than it was trained on scores near chance, so this is
part of the task, recorded in config.json, finetuned.pt and the ONNX metadata
(docs/preprocessing.md).
"""

from __future__ import annotations

import math

from haq_rl.errors import ConfigError

#: The default: the search_train split's own per-channel statistics.
DATASET_STATS = "dataset"
#: pixels / 255 only.
NO_STATS = "none"
NORMALIZE_MODES = (DATASET_STATS, NO_STATS)
_FORMAT = ("normalize must be 'dataset', 'none' or MEAN/STD with one number or one per channel "
           "(e.g. 0.1307/0.3081 or 0.485,0.456,0.406/0.229,0.224,0.225)")

Stats = tuple[tuple[float, ...], tuple[float, ...]]


def explicit_stats(normalize: str) -> Stats | None:
    """The ``(mean, std)`` that ``normalize`` fixes, or None for ``dataset`` (computed per split).

    ``none`` is mean 0, std 1 (one value: it applies to every channel). Raises ConfigError
    for text that is none of the three forms, a std <= 0 or a count mismatch.
    """
    if not isinstance(normalize, str):
        raise ConfigError(f"normalize={normalize!r}: {_FORMAT}")
    text = normalize.strip()
    if text == DATASET_STATS:
        return None
    if text == NO_STATS:
        return (0.0,), (1.0,)
    parts = text.split("/")
    if len(parts) != 2:
        raise ConfigError(f"normalize={normalize!r}: {_FORMAT}")
    try:
        mean, std = (tuple(float(value) for value in part.split(",")) for part in parts)
    except ValueError:
        raise ConfigError(f"normalize={normalize!r}: {_FORMAT}") from None
    if len(mean) != len(std):
        raise ConfigError(f"normalize={normalize!r} gives {len(mean)} mean(s) and {len(std)} std(s); "
                          "give as many of each (one, or one per channel)")
    if not all(math.isfinite(value) for value in mean + std) or min(std) <= 0:
        raise ConfigError(f"normalize={normalize!r}: every mean must be finite and every std > 0")
    return mean, std


def stats_for_channels(stats: Stats, channels: int, normalize: str) -> Stats:
    """``stats`` with one value per channel (a single value applies to all); ConfigError otherwise."""
    mean, std = stats
    if len(mean) == 1:
        return mean * channels, std * channels
    if len(mean) != channels:
        raise ConfigError(f"normalize={normalize!r} gives {len(mean)} values per statistic, the images "
                          f"have {channels} channel(s); give one value or {channels}")
    return mean, std
